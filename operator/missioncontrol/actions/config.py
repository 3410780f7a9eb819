"""Flags in a ConfigMap the application reads: safe-mode cache, idempotency checks, read
routing to replicas, a retry rate limit. Each key's previous value is recorded for undo."""

from __future__ import annotations

from ..incident import Change
from ..kube import ApiException
from ..markdown import and_list
from ..model import ConfigValue, SetFlags, Step
from .base import Action, StepContext, StepResult


async def set_flags(ctx: StepContext, step: Step) -> StepResult:
    params: SetFlags = step.params
    return await _set(ctx, params.config_map, dict(params.flags))


async def route_reads_to_replica(ctx: StepContext, step: Step) -> StepResult:
    params: ConfigValue = step.params
    return await _set(ctx, params.config_map, {params.key: params.value})


async def rate_limit(ctx: StepContext, step: Step) -> StepResult:
    params: ConfigValue = step.params
    return await _set(ctx, params.config_map, {params.key: params.value})


async def _set(ctx: StepContext, config_map: str, values: dict[str, str]) -> StepResult:
    namespace, _ = ctx.target
    try:
        current = await ctx.kube.json(ctx.kube.core.read_namespaced_config_map, config_map,
                                      namespace)
        data = current.get("data") or {}
    except ApiException as exc:
        if exc.status != 404:
            raise
        return StepResult.failed(f"ConfigMap {namespace}/{config_map} does not exist")
    changes = tuple(Change("ConfigMap", config_map, f"data[{k}]", _short(data.get(k)), _short(v),
                           namespace)
                    for k, v in values.items() if data.get(k) != v)
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    if not changes:
        return StepResult.ok(f"{config_map} already has {shown}")
    if ctx.dry_run:
        return StepResult.planned(f"would set {shown} in ConfigMap {config_map}", changes=changes)
    await ctx.kube.call(ctx.kube.core.patch_namespaced_config_map, config_map, namespace,
                        {"data": values})
    return StepResult.ok(f"set {shown} in ConfigMap {config_map}", changes=changes)


def _short(value: str | None) -> str | None:
    return value if value is None or len(value) <= 1000 else value[:1000] + "..."


class SetFlagsAction(Action):
    name = "setFlags"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await set_flags(ctx, step)

    def describe(self, params: SetFlags) -> list[str]:
        flags = and_list([f"`{k}` to `{v}`" for k, v in params.flags])
        return [f"Set {flags} in ConfigMap `{params.config_map}`."]


class RouteReadsAction(Action):
    name = "routeReadsToReplica"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await route_reads_to_replica(ctx, step)

    def describe(self, params: ConfigValue) -> list[str]:
        return [f"Route these reads to the replica: set `{params.key}` to `{params.value}` in "
                f"ConfigMap `{params.config_map}`."]


class RateLimitAction(Action):
    name = "rateLimit"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await rate_limit(ctx, step)

    def describe(self, params: ConfigValue) -> list[str]:
        return [f"Limit to {params.value} requests/s: set `{params.key}` to `{params.value}` "
                f"in ConfigMap `{params.config_map}`."]


SET_FLAGS, ROUTE_READS, RATE_LIMIT = SetFlagsAction(), RouteReadsAction(), RateLimitAction()
