"""Pause non-critical consumers: scale the matching Deployments to zero, recording each
one's replicas so recovery can scale them back; a Deployment a KEDA ScaledObject scales is
paused by the ScaledObject's annotation instead (keda.py), and recovery removes it."""

from __future__ import annotations

from ..incident import Change, StepRecord
from ..kube import Kube, NotFound
from ..model import PauseConsumers, Step
from . import keda
from .base import Action, StepContext, StepResult, changed_by, reversed_changes, undone


async def pause_consumers(ctx: StepContext, step: Step) -> StepResult:
    params: PauseConsumers = step.params
    namespace, _ = ctx.target
    listing = await ctx.kube.json(ctx.kube.apps.list_namespaced_deployment, namespace,
                                  label_selector=params.selector.to_query())
    if not listing["items"]:
        return StepResult.ok(f"no Deployment matches {params.selector.to_query()}")
    scaled_by = await keda.scalers(ctx.kube, namespace)
    changes: list[Change] = []
    for d in listing["items"]:
        scaler = scaled_by.get(d["metadata"]["name"])
        if scaler is not None:
            if keda.paused_value(scaler) != "true":
                changes.append(Change("ScaledObject", scaler["metadata"]["name"], keda.FIELD,
                                      keda.paused_value(scaler), "true", namespace))
        elif int(d["spec"].get("replicas", 1)) > 0:
            changes.append(Change("Deployment", d["metadata"]["name"], "spec.replicas",
                                  str(d["spec"].get("replicas", 1)), "0", namespace))
    if not changes:
        return StepResult.ok("every matching consumer is already paused")
    names = ", ".join(_said(c) for c in changes)
    if ctx.dry_run:
        return StepResult.planned(f"would pause {names}", changes=tuple(changes))
    for change in changes:
        if change.kind == "ScaledObject":
            await keda.annotate(ctx.kube, namespace, change.name, "true")
        else:
            await ctx.kube.call(ctx.kube.apps.patch_namespaced_deployment_scale, change.name,
                                namespace, {"spec": {"replicas": 0}})
    return StepResult.ok(f"paused {names}", changes=tuple(changes))


def _said(change: Change) -> str:
    if change.kind == "ScaledObject":
        return f"{change.name} (KEDA ScaledObject, by {keda.PAUSED})"
    return f"{change.name} (scaled to 0 from {change.from_})"


async def _resume_scaler(kube: Kube, change: Change) -> tuple[str, str | None, Change | None]:
    """("done" | "skipped", what to say, the change made)."""
    live = await keda.read(kube, change.namespace, change.name)
    what = f"ScaledObject {change.name}"
    if live is None:
        return "skipped", f"Skipped: {what} is gone", None
    value = keda.paused_value(live)
    if value == change.from_:
        return "done", f"{what} (already unpaused)", None
    if value != change.to:
        who = changed_by(live, keda.MANAGED_PATH)
        return "skipped", (f"Skipped: changed by {who} since: {what} has {keda.PAUSED}="
                           f"{value!r}, not {change.to!r} as we set it; left as it is"), None
    await keda.annotate(kube, change.namespace, change.name, change.from_)
    return "done", f"{what} unpaused ({keda.PAUSED} " + (
        "removed)" if change.from_ is None else f"back to {change.from_!r})"), Change(
        "ScaledObject", change.name, keda.FIELD, value, change.from_, change.namespace)


async def resume_consumers(kube: Kube, record: StepRecord, dry_run: bool) -> StepResult:
    """Each paused consumer back to its replicas, unless someone scaled it since."""
    if dry_run:
        return undone([f"unpause ScaledObject {c.name}" if c.kind == "ScaledObject"
                       else f"{c.name} to {c.from_} replicas" for c in record.changes], [],
                      reversed_changes(record.changes), dry_run)
    done: list[str] = []
    skipped: list[str] = []
    changes: list[Change] = []
    for change in record.changes:
        if change.kind == "ScaledObject":
            verdict, said, made = await _resume_scaler(kube, change)
            (done if verdict == "done" else skipped).append(said)
            if made is not None:
                changes.append(made)
            continue
        try:
            live = await kube.json(kube.apps.read_namespaced_deployment, change.name,
                                   change.namespace)
        except NotFound:
            skipped.append(f"Skipped: Deployment {change.name} is gone")
            continue
        replicas = str(live["spec"].get("replicas", 1))
        if replicas == change.from_:
            done.append(f"{change.name} (already at {replicas})")
            continue
        if replicas != change.to:
            who = changed_by(live, ("f:spec", "f:replicas"))
            skipped.append(f"Skipped: changed by {who} since: {change.name} runs {replicas} "
                           f"replicas, not {change.to} as we set it; left as it is")
            continue
        changes.append(Change("Deployment", change.name, "spec.replicas", replicas,
                              change.from_, change.namespace))
        done.append(f"{change.name} to {change.from_} replicas")
        await kube.call(kube.apps.patch_namespaced_deployment_scale, change.name,
                        change.namespace, {"spec": {"replicas": int(change.from_ or 1)}})
    return undone(done, skipped, tuple(changes), dry_run)


class PauseConsumersAction(Action):
    """Paused consumers run again when the incident resolves, at their earlier replicas."""
    name = "pauseConsumers"
    undoable = True
    revert_on = ("Resolved",)

    async def undo(self, *, kube: Kube, record: StepRecord, dry_run: bool) -> StepResult:
        return await resume_consumers(kube, record, dry_run)

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await pause_consumers(ctx, step)

    def describe(self, params: PauseConsumers) -> list[str]:
        return [f"Pause the consumers selected by "
                f"`{params.selector.to_query() or '(everything)'}`."]


ACTION = PauseConsumersAction()
