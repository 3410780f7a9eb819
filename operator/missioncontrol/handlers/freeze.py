"""The deploy freeze, enforced at admission: while an incident freezes a Deployment (or its
namespace), changes to its pod template are rejected, except a return to the last healthy
release's template (the operator's rollback, or a person's `kubectl rollout undo`).

`decide` is the pure judgement; `review` is the HTTP adapter the webhook server (webhook.py)
routes AdmissionReviews to. A refusal is the webhook doing its job: it is logged at INFO with
the incident named; ERROR is kept for a webhook that could not judge."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import metrics, podtemplate
from ..actions.freeze import FROZEN
from ..freezeindex import Entries, FreezeIndex
from ..webhook import HANDLER_PATH

log = logging.getLogger("missioncontrol.freeze")

INDEX = web.AppKey("freeze-index", FreezeIndex)


@dataclass(frozen=True)
class Denial:
    message: str
    incident: str | None = None   # "namespace/name"; None for a frozen label no incident holds


def decide(*, obj: Mapping[str, Any], old: Mapping[str, Any] | None, operation: str,
           freezes: Entries) -> Denial | None:
    """None when the change may pass; else why not."""
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    template = dict((obj.get("spec") or {}).get("template") or {})
    if operation == "UPDATE" and old is not None and podtemplate.fingerprint(
            dict((old.get("spec") or {}).get("template") or {})) == podtemplate.fingerprint(
                template):
        return None   # scaling, labels, annotations: not a release
    found = [entry for key in (f"Deployment/{namespace}/{name}", f"Namespace/{namespace}")
             for entry in freezes.get(key, [])]
    if not found:
        labels = dict(metadata.get("labels") or {})
        return Denial(
            f"{namespace}/{name} is marked frozen (label {FROZEN} on it or its namespace) but "
            f"no open incident holds the freeze: remove the label to deploy "
            f"(`kubectl label deployment/{name} -n {namespace} {FROZEN}-`"
            + ("" if labels.get(FROZEN) else f" or `kubectl label namespace {namespace} {FROZEN}-`")
            + ")")
    fingerprint = podtemplate.fingerprint(template)
    if any(entry.get("allowed") == fingerprint for entry in found):
        return None   # back to the last healthy release: always allowed
    entry = found[0]
    healthy = (f"revision {entry['toRevision']}" if entry.get("toRevision") is not None
               else "no healthy release is known")
    return Denial(
        f"deployments of {namespace}/{name} are frozen by incident {entry['incident']}: "
        f"only a rollback to the last healthy release ({healthy}) is allowed. The freeze lifts "
        f"when the incident resolves; to lift it now: kubectl patch incident "
        f"{entry['incident']} -n {entry['namespace']} --type=merge "
        f"-p '{{\"spec\":{{\"liftFreeze\":true}}}}'",
        incident=f"{entry['namespace']}/{entry['incident']}")


async def judge(index: FreezeIndex, *, obj: Mapping[str, Any], old: Mapping[str, Any] | None,
                operation: str) -> Denial | None:
    """Judge from the cache; a refusal (or a cache not yet synced) is checked against a live
    read, so a watch that lags behind a new freeze, or the lift of one, never decides alone."""
    denial = decide(obj=obj, old=old, operation=operation, freezes=index.snapshot())
    if denial is None and index.synced:
        return None
    namespace = (obj.get("metadata") or {}).get("namespace")
    live = await index.live(namespace) if namespace else None
    if live is None:
        return denial
    return decide(obj=obj, old=old, operation=operation, freezes=live)


async def review(request: web.Request) -> web.Response:
    """One AdmissionReview (admission.k8s.io/v1) in, its answer out."""
    uid = None
    try:
        payload = await request.json()
        ask = payload["request"]
        uid = ask["uid"]
        obj, old, operation = ask.get("object") or {}, ask.get("oldObject"), ask["operation"]
        denial = await judge(request.app[INDEX], obj=obj, old=old, operation=operation)
    except Exception:  # noqa: BLE001 - answer, and let the failure policy decide
        log.exception("freeze: cannot judge admission request %s", uid)
        metrics.FREEZE_ADMISSIONS.labels("error").inc()
        return _answer(uid, allowed=False, code=500,
                       message="the freeze webhook could not judge this change (see the "
                               "operator's log)")
    meta = obj.get("metadata") or {}
    what = f"{operation} of deployment {meta.get('namespace')}/{meta.get('name')}"
    if denial is None:
        log.debug("freeze: allowed %s", what)
        metrics.FREEZE_ADMISSIONS.labels("allowed").inc()
        return _answer(uid, allowed=True)
    if denial.incident:
        log.info("freeze: refused %s: frozen by incident %s", what, denial.incident)
    else:
        log.info("freeze: refused %s: labelled frozen, but no open incident holds a freeze",
                 what)
    metrics.FREEZE_ADMISSIONS.labels("refused").inc()
    return _answer(uid, allowed=False, code=403, message=denial.message)


def app(index: FreezeIndex) -> web.Application:
    application = web.Application()
    application[INDEX] = index
    application.router.add_post(f"/{HANDLER_PATH}", review)
    return application


def _answer(uid: str | None, *, allowed: bool, code: int = 200, message: str = "") -> web.Response:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "message": message}
    reply = web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "response": response})
    # One request per connection: behind a Service every call picks a replica afresh, and a
    # renewed serving certificate is in use from the next call on.
    reply.force_close()
    return reply
