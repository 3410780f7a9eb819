"""Approval gates: a runbook step that says `approval: required` runs only once a person says
go (`kubectl mc approve INCIDENT STEP`, recorded in the Incident's spec.approvals), is skipped
when one says no (`kubectl mc reject`), and after its `approvalTimeout` proceeds, is skipped or
escalates (and goes on waiting), as `onApprovalTimeout` says.

While it waits the engine stops before it (the steps after it wait too), the step's record says
AwaitingApproval, the incident carries the AwaitingApproval condition and names the step in
status.awaitingApproval, and the approvers are paged once (the page's `about` is the gate).
All of it is in the Incident: a restarted operator goes on waiting from when the wait began,
pages nobody twice and never runs a step twice. In dryRun the gate is shown, not waited for.

`verdict` decides, purely; `hold` performs it for one round of the engine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from . import durations, timeutil
from . import incident as inc
from .model import Runbook, Step
from .paging import Ask
from .rounds import Loaded, Round

APPROVED, REJECTED = "Approved", "Rejected"
DECISIONS = (APPROVED, REJECTED)
RUN, SKIP, WAIT = "run", "skip", "wait"
CONDITION = inc.AWAITING_APPROVAL
ESCALATION_KEY = "approval"   # approval:<step id>, the escalation of a gate that timed out


@dataclass(frozen=True)
class Decision:
    """One entry of spec.approvals: a person's go or no for one step."""
    step: str
    decision: str
    by: str
    at: float | None = None
    reason: str = ""


def decisions(spec: dict[str, Any]) -> dict[str, Decision]:
    """The first decision per step in spec.approvals. A later one for the same step changes
    nothing: the step may have run (or been skipped) on the first already."""
    found: dict[str, Decision] = {}
    for entry in spec.get("approvals") or []:
        if not isinstance(entry, dict) or entry.get("decision") not in DECISIONS:
            continue
        step = str(entry.get("step") or "")
        if step and step not in found:
            found[step] = Decision(step, entry["decision"], str(entry.get("by") or "someone"),
                                   timeutil.parse(entry.get("at")),
                                   str(entry.get("reason") or ""))
    return found


@dataclass(frozen=True)
class Verdict:
    kind: str                 # RUN, SKIP or WAIT
    why: str = ""             # the gate's outcome in words (the step's record, the timeline)
    reason: str = ""          # the AwaitingApproval condition's reason once it is passed
    ask: bool = False         # the wait begins now
    escalate: bool = False    # timed out with onApprovalTimeout escalate


def approvers(step: Step, runbook: Runbook) -> tuple[str, ...]:
    """Who is asked: the step's approvers, else the roles the runbook pages when it opens."""
    assert step.approval is not None
    return step.approval.approvers or runbook.escalation.page


def describe(step: Step, roles: tuple[str, ...]) -> str:
    """The gate in words: who approves, and what a timeout does."""
    gate = step.approval
    assert gate is not None
    text = f"approval by {', '.join(roles) or 'anyone who may edit the incident'}"
    if gate.timeout is None:
        return text + ", waiting as long as it takes"
    then = {"proceed": "then it runs anyway", "skip": "then it is skipped",
            "escalate": "then it escalates and goes on waiting"}[gate.on_timeout]
    return f"{text}, within {durations.format(gate.timeout)} ({then})"


def verdict(*, step: Step, record: inc.StepRecord, decision: Decision | None, now: float,
            dry_run: bool, roles: tuple[str, ...]) -> Verdict:
    """What the gate of a step not yet done says this round."""
    gate = step.approval
    assert gate is not None
    if dry_run:
        return Verdict(RUN, f"dry run: would wait for {describe(step, roles)}")
    if decision is not None:
        words = f" ({decision.reason})" if decision.reason else ""
        if decision.decision == APPROVED:
            return Verdict(RUN, f"approved by {decision.by}{words}", APPROVED)
        return Verdict(SKIP, f"rejected by {decision.by}{words}", REJECTED)
    asked = record.approval_asked_at
    if asked is None:
        return Verdict(WAIT, ask=True)
    if gate.timeout is not None and now - asked >= gate.timeout:
        waited = f"no approval within {durations.format(gate.timeout)}"
        if gate.on_timeout == "proceed":
            return Verdict(RUN, f"{waited}: proceeding", "TimedOut")
        if gate.on_timeout == "skip":
            return Verdict(SKIP, f"{waited}: skipped", "TimedOut")
        return Verdict(WAIT, f"{waited}: escalated, still waiting", escalate=True)
    return Verdict(WAIT)


def how_to_answer(incident: str, namespace: str, step: str) -> str:
    return (f"kubectl mc approve {incident} {step} -n {namespace} "
            f"(or kubectl mc reject {incident} {step} -n {namespace})")


# -- status changes, pure ---------------------------------------------------------------------
def asking(status: inc.IncidentStatus, now: float, *, step: Step, roles: tuple[str, ...],
           answer: str) -> inc.IncidentStatus:
    """The wait begins: the step's record, the condition and the timeline say so."""
    message = f"step {step.id} ({step.action}) waits for {describe(step, roles)}: {answer}"
    status = inc.update_step(status, step.id, state=inc.AWAITING_APPROVAL,
                             approval_asked_at=now, message=message[:1000])
    status = replace(status, awaiting_approval=step.id)
    status = inc.set_condition(status, now, CONDITION, True, "Waiting", message)
    return inc.note(status, now, CONDITION, message)


def passed(status: inc.IncidentStatus, now: float, *, step: Step,
           verdict: Verdict) -> inc.IncidentStatus:
    """The gate is passed (the step runs next) or shut (the step is skipped), as recorded."""
    waited = status.awaiting_approval == step.id
    if waited:
        status = replace(status, awaiting_approval=None)
        status = inc.set_condition(status, now, CONDITION, False, verdict.reason, verdict.why)
    if verdict.kind == SKIP:
        status = inc.update_step(status, step.id, state=inc.SKIPPED, finished_at=now,
                                 message=verdict.why[:1000], approval=verdict.why[:1000])
        return inc.note(status, now, "StepSkipped", f"{step.id} ({step.action}): "
                                                    f"{verdict.why}")
    status = inc.update_step(status, step.id, approval=verdict.why[:1000])
    kind = "ApprovalPlanned" if not waited and not verdict.reason else (
        "Approved" if verdict.reason == APPROVED else "ApprovalTimedOut")
    return inc.note(status, now, kind, f"{step.id} ({step.action}): {verdict.why}")


def abandon(status: inc.IncidentStatus, now: float, why: str) -> inc.IncidentStatus:
    """The incident ended (resolved, closed) while a step waited: it will not run."""
    waiting = status.awaiting_approval
    if waiting is None:
        return status
    message = f"not run: {why} while it waited for approval"
    status = replace(status, awaiting_approval=None)
    status = inc.update_step(status, waiting, state=inc.SKIPPED, finished_at=now,
                             message=message)
    status = inc.set_condition(status, now, CONDITION, False, "NoLongerNeeded",
                               f"step {waiting}: {message}")
    return inc.note(status, now, "StepSkipped", f"{waiting}: {message}")


# -- one round's effects ----------------------------------------------------------------------
async def hold(run: Round, loaded: Loaded, step: Step) -> str:
    """Pass the gate of `step` (a step not done yet) this round, or not: RUN (run it now),
    SKIP (it was skipped, recorded) or WAIT (the engine stops before it)."""
    now = run.e.clock()
    record = run.status.step(step.id)
    assert record is not None
    roles = approvers(step, loaded.runbook)
    found = verdict(step=step, record=record, decision=decisions(run.body["spec"]).get(step.id),
                    now=now, dry_run=run.dry_run, roles=roles)
    if found.kind != WAIT:
        if record.approval != found.why[:1000]:   # once: a restart does not say it again
            await run.apply(lambda s: passed(s, now, step=step, verdict=found))
        return found.kind
    answer = how_to_answer(run.name, run.body["metadata"]["namespace"], step.id)
    if found.ask:
        await run.apply(lambda s: asking(s, now, step=step, roles=roles, answer=answer))
    # Every round while it waits: a page already tried is not sent again (its key holds the
    # gate), so a crash between the record and the page loses nothing and repeats nothing.
    run.start_background(f"page:{ESCALATION_KEY}:{step.id}", run.page(loaded, roles, Ask(
        "page", f"approval needed: step {step.id} ({step.action}) of {run.name} waits for "
                f"you: {answer}", about=f"{ESCALATION_KEY}:{step.id}"[:64])))
    if found.escalate:
        await run.escalate(loaded, f"{ESCALATION_KEY}:{step.id}", f"step {step.id} "
                           f"({step.action}): {found.why}")
    return WAIT
