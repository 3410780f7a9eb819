"""Incident: a daemon drives each open incident (engine.py); closing is a request in spec
that the API only accepts with action items, and the daemon performs it. Only the replica
holding the leader Lease acts (leadership.py)."""

from __future__ import annotations

import kopf

from .. import GROUP, VERSION, comms, gitops, intake, leadership, reverts
from .. import incident as inc
from ..engine import Run
from ..kube import Conflict, Missed, NotFound
from ..records import from_dict, to_dict


def _needs_daemon(*, status: kopf.Status, spec: kopf.Spec | None = None, **_: object) -> bool:
    """Open, asked to close, or resolved but still owing people a page or the all-clear: a
    daemon (and its finalizer) only for incidents that have work left. Closing is the
    daemon's too: it is the one writer of the status, so nothing writes over a close."""
    phase = (status or {}).get("phase")
    if phase in inc.OPEN_PHASES:
        return True
    if phase and phase != inc.CLOSED and (spec or {}).get("close"):
        return True
    if phase not in (inc.RESOLVED, inc.CLOSED):
        return False
    try:
        typed = from_dict(inc.IncidentStatus, dict(status))
        # Undoing its steps is owed in either phase; pages and the all-clear once resolved,
        # and the watch on a suspended GitOps owner's source revision.
        return reverts.owed(typed) or (phase == inc.RESOLVED and (comms.owed(typed)
                                                                  or gitops.holding(typed)))
    except (AttributeError, TypeError, ValueError, KeyError):   # unreadable: owes nothing known
        return False


# A graceful period first (the backoff), so a resolving incident finishes its round:
# the all-clear and the PagerDuty resolves go out before the daemon ends.
@kopf.daemon(GROUP, VERSION, "incidents", id="drive", when=_needs_daemon,
             cancellation_backoff=20, cancellation_timeout=10)
async def drive_incident(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                         **_: object) -> None:
    # An outage that delayed the first read, or cost us the Lease, is still told, once.
    missed, seen_at = Missed(), None
    while True:   # each turn: one tenure of this replica as leader
        fresh = await leadership.standby(
            memo, stopped, "Incident", body,
            missed=lambda exc, m=missed: m.add(memo.engine.clock(), exc))
        if fresh is None:
            return
        run, tenure = Run(memo.engine, fresh), memo.leadership.tenure(stopped)
        # What this replica saw carries over a lease lost and taken back (an outage): the
        # hole in its watching is from its own last look, whoever led meanwhile.
        run.missed, run.seen_at = missed, seen_at
        await run.drive(tenure, lambda run=run: {**_plain(body), "status": to_dict(run.status)})
        if not tenure.lost:
            return
        missed, seen_at = run.missed, run.seen_at


def _declared(body: kopf.Body, status: kopf.Status, **_: object) -> bool:
    return not (status or {}).get("phase") and not intake.opened_by_policy(dict(body))


@kopf.on.resume(GROUP, VERSION, "incidents", when=_declared)
@kopf.on.create(GROUP, VERSION, "incidents", when=_declared)
async def take_in(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """A hand-made incident: accepted (the drive daemon then runs it) or rejected, once."""
    facts = await intake.read_facts(memo.kube, _plain(body))
    verdict = intake.judge(facts)
    status = intake.first_status(facts, verdict, memo.engine.clock())
    try:
        # Conditional on the version read: whoever wrote a status first, wins.
        await memo.kube.call(
            memo.kube.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
            body.metadata.namespace, "incidents", body.metadata.name,
            {"metadata": {"resourceVersion": body.metadata.get("resourceVersion")},
             "status": to_dict(status)})
    except (NotFound, Conflict):
        return
    kopf.event(body, type="Normal" if verdict.accepted else "Warning", reason=verdict.reason,
               message=verdict.message)


def _plain(body: kopf.Body) -> dict:
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
            "metadata": dict(body.metadata), "spec": dict(body.spec),
            "status": dict(body.get("status") or {})}
