"""Flags in a ConfigMap the application reads: safe-mode cache, idempotency checks, read
routing to replicas, a retry rate limit (and, where the runbook names an Ingress, the same
limit as ingress-nginx's annotation: ingress.py). Each previous value is recorded for undo."""

from __future__ import annotations

from ..incident import Change, StepRecord
from ..kube import Kube, NotFound
from ..markdown import and_list
from ..model import ConfigValue, RateLimit, SetFlags, Step
from . import ingress
from .base import Action, StepContext, StepResult, changed_by, reversed_changes, undone


async def set_flags(ctx: StepContext, step: Step) -> StepResult:
    params: SetFlags = step.params
    return await _set(ctx, params.config_map, dict(params.flags))


async def route_reads_to_replica(ctx: StepContext, step: Step) -> StepResult:
    params: ConfigValue = step.params
    return await _set(ctx, params.config_map, {params.key: params.value})


async def rate_limit(ctx: StepContext, step: Step) -> StepResult:
    params: RateLimit = step.params
    values = {params.key: params.value}
    if params.ingress is None:
        return await _set(ctx, params.config_map, values)
    namespace, _ = ctx.target
    # Both read before either is written: a missing one changes nothing.
    keys = await _planned(ctx, params.config_map, values)
    if isinstance(keys, StepResult):
        return keys
    body = await ingress.read(ctx.kube, namespace, params.ingress)
    if body is None:
        return StepResult.failed(f"Ingress {namespace}/{params.ingress} does not exist")
    annotation = ingress.change(body, namespace=namespace, value=params.value)
    changes = keys + ((annotation,) if annotation is not None else ())
    said = (f"{_shown_values(values)} in ConfigMap {params.config_map} and "
            f"{ingress.LIMIT_RPS}={params.value} on Ingress {params.ingress}")
    if not changes:
        return StepResult.ok(f"already {said}")
    if ctx.dry_run:
        return StepResult.planned(f"would set {said}", changes=changes)
    if keys:
        await _write(ctx, params.config_map, values)
    if annotation is not None:
        await ingress.annotate(ctx.kube, namespace, params.ingress, params.value)
    return StepResult.ok(f"set {said}", changes=changes)


async def _set(ctx: StepContext, config_map: str, values: dict[str, str]) -> StepResult:
    changes = await _planned(ctx, config_map, values)
    if isinstance(changes, StepResult):
        return changes
    shown = _shown_values(values)
    if not changes:
        return StepResult.ok(f"{config_map} already has {shown}")
    if ctx.dry_run:
        return StepResult.planned(f"would set {shown} in ConfigMap {config_map}", changes=changes)
    await _write(ctx, config_map, values)
    return StepResult.ok(f"set {shown} in ConfigMap {config_map}", changes=changes)


async def _planned(ctx: StepContext, config_map: str,
                   values: dict[str, str]) -> tuple[Change, ...] | StepResult:
    """What setting `values` changes in the ConfigMap (a failed result if it is missing)."""
    namespace, _ = ctx.target
    try:
        current = await ctx.kube.json(ctx.kube.core.read_namespaced_config_map, config_map,
                                      namespace)
        data = current.get("data") or {}
    except NotFound:
        return StepResult.failed(f"ConfigMap {namespace}/{config_map} does not exist")
    return tuple(Change("ConfigMap", config_map, f"data[{k}]", _short(data.get(k)), _short(v),
                        namespace)
                 for k, v in values.items() if data.get(k) != v)


async def _write(ctx: StepContext, config_map: str, values: dict[str, str]) -> None:
    await ctx.kube.call(ctx.kube.core.patch_namespaced_config_map, config_map, ctx.target[0],
                        {"data": values})


def _shown_values(values: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


async def undo_config(kube: Kube, record: StepRecord, dry_run: bool) -> StepResult:
    """Each key (and a rateLimit's Ingress annotation) back to its value before the step
    (removed if it had none), unless the live value is no longer the one the step wrote."""
    if dry_run:
        return undone([f"{c.field} of {c.kind} {c.name} to {_shown(c.from_)}"
                       for c in record.changes], [], reversed_changes(record.changes), dry_run)
    done: list[str] = []
    skipped: list[str] = []
    changes: list[Change] = []
    for change in record.changes:
        if change.kind == "Ingress":
            restored, said, made = await ingress.restore(kube, change)
            (done if restored else skipped).append(said)
            if made is not None:
                changes.append(made)
            continue
        key = change.field[len("data["):-1]
        what = f"{change.field} of ConfigMap {change.name}"
        try:
            live = await kube.json(kube.core.read_namespaced_config_map, change.name,
                                   change.namespace)
        except NotFound:
            skipped.append(f"Skipped: ConfigMap {change.name} is gone")
            continue
        value = (live.get("data") or {}).get(key)
        if value == change.from_:
            done.append(f"{what} (already {_shown(value)})")
            continue
        if value != change.to:
            who = changed_by(live, ("f:data", f"f:{key}"))
            skipped.append(f"Skipped: changed by {who} since: {what} is {_shown(value)}, not "
                           f"{_shown(change.to)} as we set it; left as it is")
            continue
        if _cut(change.from_):
            skipped.append(f"Skipped: {what} was too long to record: restore it by hand")
            continue
        changes.append(Change("ConfigMap", change.name, change.field, value, change.from_,
                              change.namespace))
        done.append(f"{what} to {_shown(change.from_)}")
        await kube.call(kube.core.patch_namespaced_config_map, change.name,
                        change.namespace, {"data": {key: change.from_}})
    return undone(done, skipped, tuple(changes), dry_run)


def _shown(value: str | None) -> str:
    return "unset" if value is None else repr(value)


def _cut(value: str | None) -> bool:
    return value is not None and len(value) > 1000


def _short(value: str | None) -> str | None:
    return value if value is None or len(value) <= 1000 else value[:1000] + "..."


class ConfigAction(Action):
    """A key of a ConfigMap the application reads: put back when the incident resolves."""
    undoable = True
    revert_on = ("Resolved",)

    async def undo(self, *, kube: Kube, record: StepRecord, dry_run: bool) -> StepResult:
        return await undo_config(kube, record, dry_run)


class SetFlagsAction(ConfigAction):
    name = "setFlags"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await set_flags(ctx, step)

    def describe(self, params: SetFlags) -> list[str]:
        flags = and_list([f"`{k}` to `{v}`" for k, v in params.flags])
        return [f"Set {flags} in ConfigMap `{params.config_map}`."]


class RouteReadsAction(ConfigAction):
    name = "routeReadsToReplica"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await route_reads_to_replica(ctx, step)

    def describe(self, params: ConfigValue) -> list[str]:
        return [f"Route these reads to the replica: set `{params.key}` to `{params.value}` in "
                f"ConfigMap `{params.config_map}`."]


class RateLimitAction(ConfigAction):
    name = "rateLimit"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await rate_limit(ctx, step)

    def describe(self, params: RateLimit) -> list[str]:
        said = [f"Limit to {params.value} requests/s: set `{params.key}` to `{params.value}` "
                f"in ConfigMap `{params.config_map}`."]
        if params.ingress:
            said.append(f"Set ingress-nginx's `{ingress.LIMIT_RPS}` to `{params.value}` on "
                        f"Ingress `{params.ingress}` (per client IP).")
        return said


SET_FLAGS, ROUTE_READS, RATE_LIMIT = SetFlagsAction(), RouteReadsAction(), RateLimitAction()
