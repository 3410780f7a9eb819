"""Roll back: put the last healthy ReplicaSet's pod template back into the Deployment, as
`kubectl rollout undo --to-revision` does, within the policy's limits."""

from __future__ import annotations

from .. import labels, podtemplate, timeutil
from ..durations import format as dur
from ..incident import SUCCEEDED, Change, IncidentStatus, StepRecord
from ..kube import Conflict, Invalid, Kube, NotFound
from ..model import Policy, Rollback, Runbook, Step
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
        if (dep["metadata"].get("annotations") or {}).get(CAUSE) == cause(ctx.name):
            # Ours: restored when the trigger fired (restore_at_trigger), or by this step
            # before a restart cut its record short.
            return StepResult.ok(
                f"rolled {name} back from revision {plan.from_revision} to revision "
                f"{plan.to_revision} ({plan.to_replica_set}) when the trigger fired",
                changes=(change,))
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
            CAUSE: cause(ctx.name)}},
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
    return limit_reason(policy, await kube.list("Incident", namespace,
                                                label_selector=f"{labels.TARGET}={name}"),
                        name=name, incident=incident, now=now)


def limit_reason(policy: Policy, incidents: list[dict], *, name: str, incident: str,
                 now: float) -> str | None:
    """over_limits, over the target's Incidents already read (pure)."""
    times = []
    for body in incidents:
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


def cause(incident: str) -> str:
    """The change-cause our rollback leaves on the Deployment (`kubectl rollout history`)."""
    return f"missioncontrol: rollback by incident {incident}"


def restores_at_trigger(runbook: Runbook) -> bool:
    """Whether the incident's steps would roll back at once, by themselves: automatic
    rollback is on, and neither the first rollback step nor any step before it waits for a
    person's approval. Then the guard restores the template the moment the trigger fires
    (restore_at_trigger), and the step finds it done and records it."""
    if not runbook.automation.automatic_rollback:
        return False
    for step in runbook.steps:
        if step.approval is not None:
            return False
        if step.action == "rollback":
            return True
    return False


async def healthy_template(kube: Kube, namespace: str, replica_set: str) -> dict | None:
    """The pod template of the ReplicaSet to roll back to, as a Deployment's (None: gone)."""
    try:
        rs = await kube.json(kube.apps.read_namespaced_replica_set, replica_set, namespace)
    except NotFound:
        return None
    return podtemplate.strip(rs["spec"]["template"])


async def restore_at_trigger(kube: Kube, *, incident: str, deployment: dict,
                             template: dict) -> bool:
    """Put the healthy template back the moment the trigger fires, as the incident's rollback
    step would: one JSON patch that applies only to the generation the guard decided on (its
    `test`), so a release or an edit made since leaves the Deployment alone and the step
    decides as always. The caller has checked the policy's limits (limit_reason). False when
    not done: the step then decides, and says why."""
    meta = deployment["metadata"]
    try:
        await kube.call(kube.apps.patch_namespaced_deployment, meta["name"], meta["namespace"], [
            {"op": "test", "path": "/metadata/generation", "value": meta.get("generation")},
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/metadata/annotations/" + CAUSE.replace("/", "~1"),
             "value": cause(incident)},
        ])
    except (NotFound, Conflict, Invalid):   # gone, or changed since: the step decides
        return False
    return True


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
