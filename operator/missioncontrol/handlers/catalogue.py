"""Runbook and ServiceOwnership: judge them when they change, report a Ready condition that
says what is wrong, and an event when it changes.

Some problems involve two objects (two Runbooks with one catalogue id, two ServiceOwnerships
for one service), so a change judges every object it may affect in the namespace: both
report the conflict, and both are Ready again once it is gone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import kopf

from .. import GROUP, VERSION, conditions, references, templates, tenancy
from ..kube import PLURALS, Conflict, Kube, NotFound
from ..model import Ownership, ReplaySample, Runbook
from ..parse import ModelError
from ..records import from_dict, to_dict
from ..signals import prometheus

if TYPE_CHECKING:
    from ..guard import Context


async def _ready(kube: Kube, body: dict, ok: bool, reason: str, message: str,
                 now: float) -> None:
    """Write the Ready condition if it changed (and post the change as an event)."""
    meta = body["metadata"]
    before = tuple(from_dict(conditions.Condition, c)
                   for c in (body.get("status") or {}).get("conditions") or [])
    after = conditions.put(before, conditions.Condition.said(
        "Ready", ok, reason, message, generation=meta.get("generation")), now=now)
    if after == before:
        return
    try:
        # Conditional on the version judged: a concurrent judgement of the same object (its
        # peer changed at the same moment) must not be overwritten with a staler one.
        await kube.call(kube.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                        meta["namespace"], PLURALS[body["kind"]], meta["name"], {
                            "metadata": {"resourceVersion": meta.get("resourceVersion")},
                            "status": {"conditions": [to_dict(c) for c in after],
                                       "observedGeneration": meta.get("generation")}})
    except NotFound:
        return   # deleted meanwhile: nothing to report on
    except Conflict:
        raise Stale from None
    kopf.event(body, type="Normal" if ok else "Warning", reason=reason, message=message)


class Stale(Exception):  # noqa: N818 - a signal, not an error
    """An object changed after it was judged: judge the namespace again."""


@dataclass(frozen=True)
class Kind:
    """One catalogue kind: what makes two of its objects conflict, and how one is judged."""
    name: str
    key: Callable[[dict], str | None]        # objects with the same key are peers
    judge: Callable[[Context, dict, list[dict]], Awaitable[tuple[bool, str, str]]]


# Problems that go away without the object changing (someone creates the Secret or the
# namespace, or fixes the value): the handler judges again after a while, until they do.
RECHECKED = ("SecretMissing", "NamespaceNotFound", "RouteInvalid")
RECHECK_AFTER = 60.0
# PromQL left unchecked because the configured Prometheus did not answer: ask it again soon.
QUERIES_UNCHECKED = "QueriesUnchecked"
RECHECK_QUERIES_AFTER = 30.0


async def _settle(ctx: Context, kind: Kind, namespace: str, *,
                  keys: set[str | None], name: str | None = None) -> None:
    """Judge object `name` and every object of the namespace whose key is in `keys`, each
    against its peers, until no write meets a newer version of its object."""
    for _ in range(5):
        kube, clock = ctx.kube, ctx.clock
        bodies = await kube.list(kind.name, namespace)
        verdict = None
        try:
            for body in bodies:
                if body["metadata"]["name"] != name and kind.key(body) not in keys:
                    continue
                same = [b for b in bodies if kind.key(b) == kind.key(body)]
                ok, reason, message = await kind.judge(ctx, body, same)
                await _ready(kube, body, ok, reason, message, clock())
                if body["metadata"]["name"] == name:
                    verdict = (reason, message)
        except Stale:
            continue
        if verdict is not None and verdict[0] in RECHECKED:
            raise kopf.TemporaryError(verdict[1], delay=RECHECK_AFTER)
        if verdict is not None and verdict[0] == QUERIES_UNCHECKED and ctx.prometheus:
            raise kopf.TemporaryError(verdict[1], delay=RECHECK_QUERIES_AFTER)
        return
    raise kopf.TemporaryError(f"{kind.name}s of {namespace} kept changing while judged",
                              delay=5)


def _others(bodies: list[dict], body: dict) -> list[str]:
    return sorted(b["metadata"]["name"] for b in bodies
                  if b["metadata"]["name"] != body["metadata"]["name"])


# -- Runbooks ---------------------------------------------------------------------------------
async def judge_runbook(ctx: Context, body: dict, same_id: list[dict]
                        ) -> tuple[bool, str, str]:
    kube = ctx.kube
    try:
        runbook = Runbook.parse(body)
    except ModelError as exc:
        return False, "InvalidSpec", str(exc)
    problem = templates.first_problem(runbook.templated())
    if problem:
        return False, "InvalidTemplate", problem
    for where, ref in runbook.secret_refs():
        problem = await references.secret_problem(kube, runbook.namespace, ref)
        if problem:
            return False, "SecretMissing", f"{where}: {problem}"
    for step in runbook.steps:
        if isinstance(step.params, ReplaySample):
            problem = await references.namespace_problem(kube, step.params.namespace)
            if problem:
                return False, "NamespaceNotFound", f"step {step.id} replays into {problem}"
    # PromQL through Prometheus's own parser (signals.prometheus).
    checked = await prometheus.check_queries(ctx.prometheus, prometheus.queries_of(runbook))
    if checked.invalid:
        return False, "InvalidQuery", checked.invalid
    others = _others(same_id, body)
    if others:
        return False, "DuplicateId", (
            f"{runbook.id} is also the id of Runbook {', '.join(others)} in {runbook.namespace}: "
            f"catalogue ids are unique, so which one an incident runs would be a guess. Give "
            f"one of them another spec.id")
    summary = (f"{runbook.id}: {len(runbook.trigger.conditions)} trigger condition(s), "
               f"{len(runbook.steps)} step(s), recovery SLO {runbook.recovery.slo / 60:g}m")
    if checked.unchecked:
        return True, QUERIES_UNCHECKED, f"{summary}; PromQL not checked: {checked.unchecked}"
    return True, "Valid", summary


def _runbook_id(body: dict | None) -> str | None:
    return ((body or {}).get("spec") or {}).get("id")


RUNBOOKS = Kind("Runbook", _runbook_id, judge_runbook)


@kopf.on.resume(GROUP, VERSION, "runbooks")
@kopf.on.create(GROUP, VERSION, "runbooks")
@kopf.on.update(GROUP, VERSION, "runbooks", field="spec")
async def check_runbook(body: kopf.Body, old: dict | None, memo: kopf.Memo,
                        **_: object) -> None:
    ids = {_runbook_id(dict(body)), (old or {}).get("id")}   # `old` is the old spec
    await _settle(memo.guard, RUNBOOKS, body.metadata.namespace, keys=ids,
                  name=body.metadata.name)


# A raw watch event, not on.delete: that would need a finalizer on every Runbook.
@kopf.on.event(GROUP, VERSION, "runbooks")
async def runbook_gone(type: str, body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """The runbooks it clashed with may be unique now."""
    if type == "DELETED":
        await _settle(memo.guard, RUNBOOKS, body.metadata.namespace,
                      keys={_runbook_id(dict(body))})


# -- ServiceOwnerships ------------------------------------------------------------------------
async def judge_ownership(ctx: Context, body: dict, same_service: list[dict]
                          ) -> tuple[bool, str, str]:
    kube = ctx.kube
    try:
        ownership = Ownership.parse(body)
    except ModelError as exc:
        return False, "InvalidSpec", str(exc)
    if tenancy.is_protected(ownership.namespace):
        # Its route Secrets are never read there, so it cannot page anyone.
        return False, "ProtectedNamespace", (
            f"the operator reads no Secrets in the protected namespace {ownership.namespace}")
    missing, invalid = [], []
    for role, contacts in ownership.roles:
        for contact in contacts:
            value, problem = await references.secret_value(kube, ownership.namespace,
                                                           contact.route.secret)
            if problem:
                missing.append(f"{role}/{contact.name}: {problem}")
                continue
            problem = references.value_problem(contact.route, value or "")
            if problem:
                invalid.append(f"{role}/{contact.name}: {problem}")
    if missing:
        return False, "SecretMissing", "routes without their Secret: " + "; ".join(missing)
    if invalid:
        return False, "RouteInvalid", "routes that cannot deliver: " + "; ".join(invalid)
    others = _others(same_service, body)
    if others:
        return False, "DuplicateService", (
            f"service {ownership.service} is also mapped by ServiceOwnership "
            f"{', '.join(others)} in {ownership.namespace}: who is paged would be a guess. "
            f"Keep one map per service (merge the roles into one)")
    return True, "Resolved", (
        f"service {ownership.service}: {len(ownership.roles)} role(s) with contacts")


def _service(body: dict | None) -> str | None:
    return ((body or {}).get("spec") or {}).get("service")


OWNERSHIPS = Kind("ServiceOwnership", _service, judge_ownership)


@kopf.on.resume(GROUP, VERSION, "serviceownerships")
@kopf.on.create(GROUP, VERSION, "serviceownerships")
@kopf.on.update(GROUP, VERSION, "serviceownerships", field="spec")
async def check_ownership(body: kopf.Body, old: dict | None, memo: kopf.Memo,
                          **_: object) -> None:
    services = {_service(dict(body)), (old or {}).get("service")}
    await _settle(memo.guard, OWNERSHIPS, body.metadata.namespace,
                  keys=services, name=body.metadata.name)


@kopf.on.event(GROUP, VERSION, "serviceownerships")
async def ownership_gone(type: str, body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    if type == "DELETED":
        await _settle(memo.guard, OWNERSHIPS, body.metadata.namespace,
                      keys={_service(dict(body))})
