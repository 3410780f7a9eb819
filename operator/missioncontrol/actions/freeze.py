"""Freeze deployments: label the frozen scope so the admission webhook (handlers/freeze.py)
rejects pod-template changes there; lift the freeze when the incident no longer needs it.

The label selects which requests the API server sends to the webhook at all, so an operator
outage can only ever block changes inside a frozen scope, never the rest of the cluster."""

from __future__ import annotations

from dataclasses import replace

from .. import labels, podtemplate, tenancy
from ..durations import format as dur
from ..incident import Change, Freeze, IncidentStatus
from ..kube import Kube, NotFound
from ..model import FreezeDeployments, Step
from .base import Action, StepContext, StepResult

FROZEN = labels.FROZEN
FROZEN_BY = labels.FROZEN_BY


def scope_objects(scope: str, namespace: str, name: str) -> tuple[str, ...]:
    return (f"Namespace/{namespace}",) if scope == "Namespace" else (
        f"Deployment/{namespace}/{name}",)


async def freeze_deployments(ctx: StepContext, step: Step) -> StepResult:
    params: FreezeDeployments = step.params
    namespace, name = ctx.target
    objects = scope_objects(params.scope, namespace, name)
    allowed = await healthy_fingerprint(ctx.kube, namespace, ctx.status.rollback and
                                        ctx.status.rollback.to_replica_set)
    freeze = Freeze(active=True, scope=params.scope, since=ctx.clock(),
                    reason=f"incident {ctx.name}", objects=objects,
                    allowed_template_hash=allowed)
    changes = tuple(Change(o.split("/")[0], o.split("/")[-1], f"metadata.labels[{FROZEN}]",
                           None, "true", namespace) for o in objects)
    if ctx.dry_run:
        return StepResult.planned(f"would freeze {', '.join(objects)}", changes=changes)
    for obj in objects:
        await _label(ctx.kube, obj, {FROZEN: "true"}, {FROZEN_BY: ctx.name})
    return StepResult.ok(
        f"froze pod-template changes of {', '.join(objects)}"
        + ("; the last healthy release may still be rolled back to" if allowed else ""),
        changes=changes, updates={"freeze": freeze})


async def healthy_fingerprint(kube: Kube, namespace: str, replica_set: str | None) -> str | None:
    if not replica_set:
        return None
    try:
        rs = await kube.json(kube.apps.read_namespaced_replica_set, replica_set, namespace)
    except NotFound:
        return None
    return podtemplate.fingerprint(rs["spec"]["template"])


async def lift(kube: Kube, *, incident: str, namespace: str, freeze: Freeze,
               now: float, reason: str) -> Freeze:
    """Remove the freeze labels this incident set, unless another open incident still
    freezes the same object."""
    if not freeze.active:
        return freeze
    still = await _frozen_by_others(kube, namespace, incident)
    for obj in freeze.objects:
        if obj not in still:
            await _label(kube, obj, {FROZEN: None}, {FROZEN_BY: None})
    return replace(freeze, active=False, lifted_at=now, reason=reason)


async def _frozen_by_others(kube: Kube, namespace: str, incident: str) -> set[str]:
    objects: set[str] = set()
    for body in await kube.list("Incident", namespace):
        status = body.get("status") or {}
        freeze = status.get("freeze") or {}
        if body["metadata"]["name"] != incident and freeze.get("active"):
            objects.update(freeze.get("objects") or [])
    return objects


async def _label(kube: Kube, obj: str, labels: dict, annotations: dict) -> None:
    kind, *rest = obj.split("/")
    # Labelling kube-system frozen would block the cluster's own rollouts: never, not even
    # to lift (a protected object never got the label from us).
    tenancy.refuse_protected(rest[0], what=f"label {obj}")
    patch = {"metadata": {"labels": labels, "annotations": annotations}}
    try:
        if kind == "Namespace":
            await kube.call(kube.core.patch_namespace, rest[0], patch)
        else:
            await kube.call(kube.apps.patch_namespaced_deployment, rest[1], rest[0], patch)
    except NotFound:
        pass   # a deleted object is frozen enough


class FreezeAction(Action):
    """Holds the freeze in place; the incident lifts it (resolved, closed, by hand, or at
    maxDuration): never "undone" step by step."""
    name = "freezeDeployments"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await freeze_deployments(ctx, step)

    def describe(self, params: FreezeDeployments) -> list[str]:
        what = ("every Deployment in the namespace" if params.scope == "Namespace"
                else "the affected Deployment")
        return [f"Freeze rollouts of {what} while the incident needs it "
                f"(at most {dur(params.max_duration)})."]

    def expired(self, *, step: Step, status: IncidentStatus, now: float) -> str | None:
        freeze = status.freeze
        if freeze is not None and freeze.since and now - freeze.since > \
                step.params.max_duration:
            return f"maxDuration {step.params.max_duration / 60:g}m reached"
        return None


ACTION = FreezeAction()
