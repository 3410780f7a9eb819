"""IncidentPolicy: one daemon per policy whose runbook asks for automation runs it
(automation.py: RB-003's contract, RB-002's scheduled checks), and puts back what it published
when the policy is deleted. A policy whose runbook asks for nothing gets no daemon (and no
finalizer): kopf judges `when` again at each change of the policy, which its guard writes
every pass."""

from __future__ import annotations

import logging

import kopf

from .. import GROUP, VERSION, automation, leadership
from ..kube import ApiException, Unavailable


@kopf.index(GROUP, VERSION, "runbooks")
def runbook_automation(body: kopf.Body, **_: object) -> dict:
    """Whether each Runbook asks for automation, for the daemon's `when`."""
    return {(body.metadata.namespace, body.metadata.name): automation.runbook_asks(dict(body))}


def asked(*, spec: kopf.Spec, status: kopf.Status, namespace: str | None,
          runbook_automation: kopf.Index, **_: object) -> bool:
    """The policy's runbook asks for automation, or values it published are still owed back
    (the automation turned off: the daemon puts them back, then goes), or a record of
    scheduled checks is left to clear."""
    if ((status or {}).get("automation") or {}).get("targets") \
            or (status or {}).get("scheduledChecks"):
        return True
    name = ((spec or {}).get("runbookRef") or {}).get("name")
    return any(runbook_automation.get((namespace, name), ()))


@kopf.daemon(GROUP, VERSION, "incidentpolicies", id="automation", cancellation_backoff=5,
             cancellation_timeout=20, when=asked)
async def automate(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                   logger: logging.Logger, **_: object) -> None:
    # Our own last write is the truth: the watch may lag behind it.
    recorded, checks = _records(body)
    while not stopped:
        if not memo.leadership.leading:   # another replica runs it; resume from its record
            fresh = await leadership.standby(memo, stopped, "IncidentPolicy", body)
            recorded, checks = _records(fresh or body)
            continue
        current = {"metadata": dict(body.metadata), "spec": dict(body.spec),
                   "status": dict(body.get("status") or {})}
        try:
            result = await automation.tick(memo.guard, current, recorded, checks)
        except (Unavailable, ApiException) as exc:
            logger.warning("automation pass skipped: %s", exc)
            await stopped.wait(5)
            continue
        except Exception:  # noqa: BLE001 - keep going; the next pass may succeed
            logger.exception("automation pass failed")
            await stopped.wait(10)
            continue
        if await _record(memo, body, (recorded, checks), result, logger):
            recorded, checks = result.status, result.checks
        await stopped.wait(result.wait)
    if stopped.reason and kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason \
            and memo.leadership.leading and recorded.get("targets"):
        # The policy goes: nothing guards the contract any more, so it gets its values back.
        _, events = await automation.restore(memo.kube, recorded, dry_run=False,
                                             why=f"policy {body.metadata.name} deleted")
        for _, reason, message in events:
            logger.info("%s: %s", reason, message)


def _records(body: dict) -> tuple[dict, dict | None]:
    status = body.get("status") or {}
    checks = status.get("scheduledChecks")
    return dict(status.get("automation") or {}), dict(checks) if checks is not None else None


async def _record(memo: kopf.Memo, body: kopf.Body, recorded: tuple[dict, dict | None],
                  result: automation.Result, logger: logging.Logger) -> bool:
    for kind, reason, message in result.events:
        kopf.event(body, type=kind, reason=reason, message=message)
    patch = {}
    if result.status != recorded[0]:
        patch["automation"] = result.status
    if result.checks is not None and result.checks != recorded[1]:
        # A merge patch: the whole record, with nulls for what is gone (its lists replace).
        patch["scheduledChecks"] = result.checks or None
    if not patch:
        return True
    try:
        await memo.kube.patch_status("IncidentPolicy", body.metadata.namespace,
                                     body.metadata.name, patch)
    except (Unavailable, ApiException) as exc:
        logger.warning("cannot record the automation: %s", exc)
        return False
    return True
