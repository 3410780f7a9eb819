"""IncidentPolicy: one daemon per policy guards its Deployments (see guard.py)."""

from __future__ import annotations

import logging

import kopf

from .. import GROUP, VERSION, conditions, guard, timeutil
from ..kube import ApiException
from ..records import from_dict, to_dict


@kopf.daemon(GROUP, VERSION, "incidentpolicies", id="guard", cancellation_backoff=5,
             cancellation_timeout=10)
async def guard_policy(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                       logger: logging.Logger, **_: object) -> None:
    # Our own last write is the truth about status: the watch may lag behind it.
    status = dict(body.get("status") or {})
    while not stopped:
        current = {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": status}
        try:
            result = await guard.tick(memo.guard, current)
        except ApiException as exc:
            logger.warning("guard tick failed: API %s %s", exc.status, exc.reason)
            await stopped.wait(5)
            continue
        except Exception:  # noqa: BLE001 - keep guarding; the next tick may succeed
            logger.exception("guard tick failed")
            await stopped.wait(10)
            continue
        now = memo.guard.clock()
        before = tuple(from_dict(conditions.Condition, c) for c in status.get("conditions") or [])
        after = conditions.put(before, now, "Ready", result.ready.ok, result.ready.reason,
                               result.ready.message, body.metadata.get("generation"))
        patch = {**result.status, "conditions": [to_dict(c) for c in after],
                 "observedGeneration": body.metadata.get("generation")}
        if after != before:
            kopf.event(body, type="Normal" if result.ready.ok else "Warning",
                       reason=result.ready.reason, message=result.ready.message)
        if result.ready.ok:
            patch["lastTick"] = timeutil.iso_precise(now)
        for name in result.opened:
            kopf.event(body, type="Warning", reason="IncidentOpened",
                       message=f"opened incident {name}")
        try:
            written = await memo.kube.patch_status("IncidentPolicy", body.metadata.namespace,
                                                   body.metadata.name, patch)
            status = written.get("status") or patch
        except ApiException as exc:
            if exc.status == 404:
                return
            logger.warning("cannot write status: API %s %s", exc.status, exc.reason)
        await stopped.wait(result.wait)
