"""IncidentPolicy: one daemon per policy runs its runbook's automation (automation.py), and
puts back what it published when the policy is deleted."""

from __future__ import annotations

import logging

import kopf

from .. import GROUP, VERSION, automation, leadership
from ..kube import ApiException, Unavailable


@kopf.daemon(GROUP, VERSION, "incidentpolicies", id="automation", cancellation_backoff=5,
             cancellation_timeout=20)
async def automate(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                   logger: logging.Logger, **_: object) -> None:
    # Our own last write is the truth: the watch may lag behind it.
    recorded = dict((body.get("status") or {}).get("automation") or {})
    while not stopped:
        if not memo.leadership.leading:   # another replica runs it; resume from its record
            fresh = await leadership.standby(memo, stopped, "IncidentPolicy", body)
            recorded = dict(((fresh or body).get("status") or {}).get("automation") or {})
            continue
        current = {"metadata": dict(body.metadata), "spec": dict(body.spec),
                   "status": dict(body.get("status") or {})}
        try:
            result = await automation.tick(memo.guard, current, recorded)
        except (Unavailable, ApiException) as exc:
            logger.warning("automation pass skipped: %s", exc)
            await stopped.wait(5)
            continue
        except Exception:  # noqa: BLE001 - keep going; the next pass may succeed
            logger.exception("automation pass failed")
            await stopped.wait(10)
            continue
        if await _record(memo, body, recorded, result, logger):
            recorded = result.status
        await stopped.wait(result.wait)
    if stopped.reason and kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason \
            and memo.leadership.leading and recorded.get("targets"):
        # The policy goes: nothing guards the contract any more, so it gets its values back.
        _, events = await automation.restore(memo.kube, recorded, dry_run=False,
                                             why=f"policy {body.metadata.name} deleted")
        for _, reason, message in events:
            logger.info("%s: %s", reason, message)


async def _record(memo: kopf.Memo, body: kopf.Body, recorded: dict,
                  result: automation.Result, logger: logging.Logger) -> bool:
    for kind, reason, message in result.events:
        kopf.event(body, type=kind, reason=reason, message=message)
    if result.status == recorded:
        return True
    try:
        await memo.kube.patch_status("IncidentPolicy", body.metadata.namespace,
                                     body.metadata.name, {"automation": result.status})
    except (Unavailable, ApiException) as exc:
        logger.warning("cannot record the automation: %s", exc)
        return False
    return True
