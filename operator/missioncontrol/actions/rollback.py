"""Roll back: put the last healthy ReplicaSet's pod template back into the Deployment, as
`kubectl rollout undo --to-revision` does, within the policy's limits."""

from __future__ import annotations

from .. import labels, podtemplate, timeutil
from ..durations import format as dur
from ..incident import SUCCEEDED, Change, IncidentStatus, StepRecord
from ..kube import Kube, NotFound
from ..model import Policy, Rollback, Step
from .base import Action, StepContext, StepResult

CAUSE = "kubernetes.io/change-cause"


async def rollback(ctx: StepContext, step: Step) -> StepResult:
    params: Rollback = step.params
    namespace, name = ctx.target
    plan = ctx.status.rollback
    if plan is None or not plan.to_replica_set:
        return StepResult.skipped(
            f"no known healthy release of {name}: nothing to roll back to; people decide",
            escalate="no known healthy release to roll back to")
    if params.to == "PreviousRevision" and plan.to_revision is None:
        return StepResult.skipped("no previous revision", escalate="no previous revision")
    if not ctx.runbook.automation.automatic_rollback:
        return StepResult.skipped(
            f"automatic rollback is off in {ctx.runbook.id}: roll back by hand with "
            f"`kubectl rollout undo deployment/{name} -n {namespace} "
            f"--to-revision={plan.to_revision}`",
            escalate="automatic rollback is off")
    try:
        rs = await ctx.kube.json(ctx.kube.apps.read_namespaced_replica_set,
                                 plan.to_replica_set, namespace)
        dep = await ctx.kube.json(ctx.kube.apps.read_namespaced_deployment, name, namespace)
    except NotFound as exc:
        return StepResult.failed(f"cannot roll back: {exc.reason} ({plan.to_replica_set})",
                                 escalate="the healthy ReplicaSet is gone")
    wanted = podtemplate.strip(rs["spec"]["template"])
    change = Change("Deployment", name, "spec.template",
                    f"revision {plan.from_revision} ({plan.from_replica_set})",
                    f"revision {plan.to_revision} ({plan.to_replica_set})", namespace)
    if podtemplate.fingerprint(dep["spec"]["template"]) == podtemplate.fingerprint(wanted):
        return StepResult.ok(f"{name} already runs the healthy template of "
                             f"{plan.to_replica_set}", changes=(change,))
    blocked = await over_limits(ctx.kube, ctx.policy, namespace, name, ctx.name, ctx.clock())
    if blocked:
        return StepResult.skipped(blocked, escalate=blocked)
    if ctx.dry_run:
        return StepResult.planned(f"would roll {name} back to revision {plan.to_revision} "
                                  f"({plan.to_replica_set})", changes=(change,))
    patch = [
        {"op": "replace", "path": "/spec/template", "value": wanted},
        {"op": "add", "path": "/metadata/annotations", "value": {
            **(dep["metadata"].get("annotations") or {}),
            CAUSE: f"missioncontrol: rollback by incident {ctx.name}"}},
    ]
    await ctx.kube.call(ctx.kube.apps.patch_namespaced_deployment, name, namespace, patch)
    return StepResult.ok(
        f"rolled {name} back from revision {plan.from_revision} to revision "
        f"{plan.to_revision} ({plan.to_replica_set})", changes=(change,))


async def over_limits(kube: Kube, policy: Policy | None, namespace: str, name: str,
                      incident: str, now: float) -> str | None:
    """The policy's brakes on automatic remediation: a cooldown after each rollback of this
    Deployment, and at most N rollbacks per window. Counted from the Incidents themselves,
    so a restart or a new leader counts the same."""
    if policy is None:
        return None
    times = []
    for body in await kube.list("Incident", namespace,
                                label_selector=f"{labels.TARGET}={name}"):
        if body["metadata"]["name"] == incident:
            continue
        for step in (body.get("status") or {}).get("steps") or []:
            if step.get("action") == "rollback" and step.get("state") == SUCCEEDED \
                    and step.get("changes"):
                finished = timeutil.parse(step.get("finishedAt"))
                if finished is not None:
                    times.append(finished)
    recent = [t for t in times if now - t <= policy.limits.window]
    if len(recent) >= policy.limits.max_remediations:
        return (f"rollback limit reached: {len(recent)} automatic rollbacks of {name} in the "
                f"last {policy.limits.window / 60:g}m (maxRemediations "
                f"{policy.limits.max_remediations}); not rolling back again")
    if recent and now - max(recent) < policy.limits.cooldown:
        return (f"cooldown: {name} was rolled back {now - max(recent):.0f}s ago "
                f"(cooldown {policy.limits.cooldown / 60:g}m); not rolling back again")
    return None


class RollbackAction(Action):
    name = "rollback"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await rollback(ctx, step)

    def describe(self, params: Rollback) -> list[str]:
        to = ("the last known healthy release" if params.to == "LastHealthy"
              else "the previous revision")
        return [f"Roll back to {to}; verify it recovers within {dur(params.verify_within)}."]

    def no_effect(self, *, step: Step, record: StepRecord, status: IncidentStatus,
                  now: float) -> str | None:
        if record.state != SUCCEEDED or record.finished_at is None:
            return None
        within = step.verify_within or step.params.verify_within
        if status.mitigated_at is None and now - record.finished_at > within:
            return f"the rollback did not restore service within {within / 60:g}m"
        return None

    def holds(self, *, record: StepRecord, status: IncidentStatus, deployment: dict) -> bool:
        """After our rollback, "healthy" means running the healthy release's template."""
        freeze = status.freeze
        if record.state != SUCCEEDED or not freeze or not freeze.allowed_template_hash:
            return True
        return podtemplate.fingerprint(deployment["spec"]["template"]) \
            == freeze.allowed_template_hash


ACTION = RollbackAction()
