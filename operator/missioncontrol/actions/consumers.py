"""Pause non-critical consumers: scale the matching Deployments to zero, recording each
one's replicas so recovery can scale them back."""

from __future__ import annotations

from ..incident import Change
from ..model import PauseConsumers, Step
from .base import Action, StepContext, StepResult


async def pause_consumers(ctx: StepContext, step: Step) -> StepResult:
    params: PauseConsumers = step.params
    namespace, _ = ctx.target
    listing = await ctx.kube.json(ctx.kube.apps.list_namespaced_deployment, namespace,
                                  label_selector=params.selector.to_query())
    running = [d for d in listing["items"] if int(d["spec"].get("replicas", 1)) > 0]
    if not listing["items"]:
        return StepResult.ok(f"no Deployment matches {params.selector.to_query()}")
    changes = tuple(Change("Deployment", d["metadata"]["name"], "spec.replicas",
                           str(d["spec"].get("replicas", 1)), "0", namespace) for d in running)
    if not running:
        return StepResult.ok("every matching consumer is already paused")
    names = ", ".join(c.name for c in changes)
    if ctx.dry_run:
        return StepResult.planned(f"would scale {names} to 0", changes=changes)
    for change in changes:
        await ctx.kube.call(ctx.kube.apps.patch_namespaced_deployment_scale, change.name,
                            namespace, {"spec": {"replicas": 0}})
    return StepResult.ok(f"paused {names}", changes=changes)


class PauseConsumersAction(Action):
    name = "pauseConsumers"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await pause_consumers(ctx, step)

    def describe(self, params: PauseConsumers) -> list[str]:
        return [f"Pause the consumers selected by "
                f"`{params.selector.to_query() or '(everything)'}`."]


ACTION = PauseConsumersAction()
