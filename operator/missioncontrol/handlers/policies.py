"""IncidentPolicy: one daemon per policy guards its Deployments (see guard.py)."""

from __future__ import annotations

import logging

import kopf

from .. import GROUP, VERSION, conditions, guard, leadership, timeutil
from ..kube import ApiException, Backoff, Missed, NotFound, Unavailable
from ..records import from_dict, to_dict
from ..watchcache import NotLive

CACHE_RETRY = 0.5   # seconds between passes while the watch cache is not live


@kopf.daemon(GROUP, VERSION, "incidentpolicies", id="guard", cancellation_backoff=5,
             cancellation_timeout=10)
async def guard_policy(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                       logger: logging.Logger, **_: object) -> None:
    # Our own last write is the truth about status: the watch may lag behind it.
    status = dict(body.get("status") or {})
    # An API server outage is waited out here, never left to kopf's daemon backoff (60 s).
    backoff, missed = Backoff(), Missed()
    while not stopped:
        if not memo.leadership.leading:   # another replica guards; resume from its last write
            fresh = await leadership.standby(memo, stopped, "IncidentPolicy", body)
            status = dict((fresh or body).get("status") or {})
            continue
        current = {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": status}
        try:
            result = await guard.tick(memo.guard, current)
        except NotLive as exc:
            # The watch cache is catching up (an outage ended, or one is going on): look
            # again shortly; its own watches retry every second at most.
            missed.add(memo.guard.clock(), exc)
            await stopped.wait(CACHE_RETRY)
            continue
        except Unavailable as exc:
            missed.add(memo.guard.clock(), exc)
            delay = backoff.next()
            # An outage (a starting API server's 503s included) is logged by kube.Health.
            if exc.answered and not memo.kube.health.down:
                logger.warning("guard pass skipped: %s; retrying in %.1f s", exc, delay)
            if await memo.kube.health.pause(delay, stopped):
                backoff.reset()   # it is back: the next failure is a new story
            continue
        except ApiException as exc:
            logger.warning("guard tick failed: API %s %s", exc.status, exc.reason)
            await stopped.wait(5)
            continue
        except Exception:  # noqa: BLE001 - keep guarding; the next tick may succeed
            logger.exception("guard tick failed")
            await stopped.wait(10)
            continue
        backoff.reset()
        now = memo.guard.clock()
        told = missed.told(now, "guard passes skipped")
        if told:
            kopf.event(body, type="Warning", reason="APIUnavailable", message=told)
        patch = _status_patch(body, status, result, now)
        try:
            written = await memo.kube.patch_status("IncidentPolicy", body.metadata.namespace,
                                                   body.metadata.name, patch)
            status = written.get("status") or patch
        except Unavailable as exc:
            missed.add(now, exc)
            status = {**status, **patch}   # not written yet: the next pass writes it
        except NotFound:
            return   # the policy is gone
        except ApiException as exc:
            logger.warning("cannot write status: API %s %s", exc.status, exc.reason)
        await stopped.wait(result.wait)


def _status_patch(body: kopf.Body, status: dict, result: guard.TickResult,
                  now: float) -> dict:
    """The pass's status, its Ready condition and Events (posted by kopf when it can)."""
    before = tuple(from_dict(conditions.Condition, c) for c in status.get("conditions") or [])
    after = conditions.put(before, conditions.Condition.said(
        "Ready", result.ready.ok, result.ready.reason, result.ready.message,
        generation=body.metadata.get("generation")), now=now)
    patch = {**result.status, "conditions": [to_dict(c) for c in after],
             "observedGeneration": body.metadata.get("generation")}
    if after != before:
        kopf.event(body, type="Normal" if result.ready.ok else "Warning",
                   reason=result.ready.reason, message=result.ready.message)
        if result.held:   # told once per change of what the pause holds back
            kopf.event(body, type="Warning", reason="IncidentHeld",
                       message=f"not opening an incident for {', '.join(result.held)}: "
                               f"the policy is paused (see its Ready condition)")
    if result.ready.ok:
        patch["lastTick"] = timeutil.iso_precise(now)
    for name in result.opened:
        kopf.event(body, type="Warning", reason="IncidentOpened",
                   message=f"opened incident {name}")
    return patch
