"""Undo on resolution, as decisions (pure): which steps' changes are put back, and in which
order. A step's record carries `revert_on` (the phases that undo it, from its runbook step or
its action's default); when the incident reaches one of them, each such step that changed
something gets its own record `revert:<step id>`, in reverse step order, and the engine
performs them one by one, each recorded before and after (so a restart neither repeats nor
skips one). What an undo does, and when it leaves a value alone, is the action's
(actions/base.Action.undo)."""

from __future__ import annotations

from dataclasses import replace

from . import incident as inc

PREFIX = "revert:"
PHASES = (inc.RESOLVED, inc.CLOSED)


def is_revert(record: inc.StepRecord) -> bool:
    return record.id.startswith(PREFIX)


def of(step_id: str) -> str:
    """The id of the record that undoes step `step_id`."""
    return PREFIX + step_id


def original(record: inc.StepRecord) -> str:
    """The id of the step a revert record undoes."""
    return record.id[len(PREFIX):]


def plan(status: inc.IncidentStatus, now: float, phase: str) -> inc.IncidentStatus:
    """On reaching `phase`: a pending revert record for each step that changed something and
    is undone in that phase, newest step first; once per step whatever the phase."""
    planned = {r.id for r in status.steps if is_revert(r)}
    due = [r for r in reversed(status.steps) if not is_revert(r) and r.changes
           and r.state in (inc.SUCCEEDED, inc.PLANNED) and phase in r.revert_on
           and of(r.id) not in planned]
    if not due:
        return status
    status = replace(status, steps=(*status.steps,
                                    *(inc.StepRecord(of(r.id), r.action) for r in due)))
    return inc.note(status, now, "Reverting", f"{phase.lower()}: undoing "
                    f"{', '.join(r.id for r in due)}, in that order")


def plan_one(status: inc.IncidentStatus, now: float, step_id: str,
             why: str) -> inc.IncidentStatus:
    """Undo one step now (onNoEffect: revert), once."""
    record = status.step(step_id)
    if record is None or not record.changes or status.step(of(step_id)) is not None:
        return status
    status = replace(status, steps=(*status.steps, inc.StepRecord(of(step_id), record.action)))
    return inc.note(status, now, "Reverting", f"undoing {step_id}: {why}")


def pending(status: inc.IncidentStatus) -> tuple[inc.StepRecord, ...]:
    """The revert records still to perform, in order (one Running after a restart first)."""
    return tuple(r for r in status.steps if is_revert(r) and r.state not in inc.STEP_DONE)


def owed(status: inc.IncidentStatus) -> bool:
    return bool(pending(status))
