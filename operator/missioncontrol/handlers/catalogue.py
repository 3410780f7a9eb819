"""Runbook and ServiceOwnership: parse them when they change, report a Ready condition
that says what is wrong, and an event when it changes."""

from __future__ import annotations

import kopf

from .. import GROUP, VERSION, conditions, templates, tenancy
from ..model import Ownership, Runbook
from ..parse import ModelError
from ..records import from_dict, to_dict
from ..signals import prometheus


def _ready(body: kopf.Body, patch: kopf.Patch, ok: bool, reason: str, message: str,
           now: float) -> None:
    before = tuple(from_dict(conditions.Condition, c)
                   for c in (body.get("status") or {}).get("conditions") or [])
    after = conditions.put(before, now, "Ready", ok, reason, message,
                           body.metadata.get("generation"))
    if after != before:
        patch.status["conditions"] = [to_dict(c) for c in after]
        patch.status["observedGeneration"] = body.metadata.get("generation")
        kopf.event(body, type="Normal" if ok else "Warning", reason=reason, message=message)


@kopf.on.resume(GROUP, VERSION, "runbooks")
@kopf.on.create(GROUP, VERSION, "runbooks")
@kopf.on.update(GROUP, VERSION, "runbooks", field="spec")
async def check_runbook(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo,
                        **_: object) -> None:
    try:
        runbook = Runbook.parse(dict(body))
    except ModelError as exc:
        _ready(body, patch, False, "InvalidSpec", str(exc), memo.guard.clock())
        return
    for condition in runbook.trigger.conditions:
        bad = templates.unknown_variables(getattr(condition.detector, "query", ""))
        if bad:
            _ready(body, patch, False, "InvalidTemplate",
                   f"condition {condition.name} uses unknown variables {bad}", memo.guard.clock())
            return
    checked = await prometheus.check_queries(memo.guard.prometheus,
                                             prometheus.queries_of(runbook))
    if checked.invalid:
        _ready(body, patch, False, "InvalidQuery", checked.invalid, memo.guard.clock())
        return
    summary = (f"{runbook.id}: {len(runbook.trigger.conditions)} trigger condition(s), "
               f"{len(runbook.steps)} step(s), recovery SLO {runbook.recovery.slo / 60:g}m")
    if not checked.unchecked:
        _ready(body, patch, True, "Valid", summary, memo.guard.clock())
        return
    _ready(body, patch, True, "QueriesUnchecked",
           f"{summary}; PromQL not checked: {checked.unchecked}", memo.guard.clock())
    if memo.guard.prometheus is not None:   # it may answer later: ask again
        raise kopf.TemporaryError(checked.unchecked, delay=30)


@kopf.on.resume(GROUP, VERSION, "serviceownerships")
@kopf.on.create(GROUP, VERSION, "serviceownerships")
@kopf.on.update(GROUP, VERSION, "serviceownerships", field="spec")
async def check_ownership(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo,
                          **_: object) -> None:
    now = memo.guard.clock()
    try:
        ownership = Ownership.parse(dict(body))
    except ModelError as exc:
        _ready(body, patch, False, "InvalidSpec", str(exc), now)
        return
    if tenancy.is_protected(ownership.namespace):
        # Its route Secrets are never read there, so it cannot page anyone.
        _ready(body, patch, False, "ProtectedNamespace",
               f"the operator reads no Secrets in the protected namespace "
               f"{ownership.namespace}", now)
        return
    missing = []
    for role, contacts in ownership.roles:
        for contact in contacts:
            secret = contact.route.secret
            try:
                data = await memo.kube.json(memo.kube.core.read_namespaced_secret, secret.name,
                                            ownership.namespace)
            except Exception:  # noqa: BLE001 - missing or unreadable: both are "missing"
                data = {}
            if secret.key not in (data.get("data") or {}):
                missing.append(f"{role}/{contact.name}: Secret {secret.name} key {secret.key}")
    if missing:
        _ready(body, patch, False, "SecretMissing",
               "routes without their Secret: " + "; ".join(missing), now)
    else:
        _ready(body, patch, True, "Resolved",
               f"service {ownership.service}: {len(ownership.roles)} role(s) with contacts", now)
