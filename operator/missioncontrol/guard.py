"""Guarding the Deployments of one IncidentPolicy: one pass ("tick") of the policy's daemon.

Read the policy's references, read every target's signals (one list per namespace, one
PromQL query per condition), fold them into each target's detector state, open an
Incident where a condition fires, and write it all back into the policy's status."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from . import incident as inc
from . import metrics, owners, references, templates
from .detect.outcome import Check
from .detect.release import Readings, TargetState, armed, evaluate, next_due, observe
from .kube import ApiException, Kube
from .model import (
    Ownership,
    Policy,
    ReplaySample,
    RisesSharply,
    Runbook,
    SelectorError,
    Threshold,
    effective_runbook,
)
from .parse import ModelError
from .records import from_dict, to_dict
from .signals.kubernetes import Target, read_targets
from .signals.prometheus import Prometheus
from .timeutil import Clock

log = logging.getLogger(__name__)
LABEL_POLICY = "missioncontrol.dev/policy"
LABEL_TARGET = "missioncontrol.dev/target"
LABEL_RUNBOOK = "missioncontrol.dev/runbook"
# The policy may live in another namespace than the incident (a namespaceSelector policy).
POLICY_NAMESPACE = "missioncontrol.dev/policy-namespace"
LAST_HEALTHY = "missioncontrol.dev/last-healthy-revision"


@dataclass
class Context:
    kube: Kube
    prometheus: Prometheus | None
    clock: Clock
    force_dry_run: bool = False


@dataclass
class Readiness:
    """The policy's Ready condition: are its references sound?"""
    ok: bool
    reason: str
    message: str


@dataclass
class Resolved:
    policy: Policy
    runbook: Runbook
    ownership: Ownership | None


@dataclass
class TickResult:
    ready: Readiness
    status: dict = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    wait: float = 10.0


async def resolve(ctx: Context, body: dict) -> Resolved | Readiness:
    """Parse the policy and follow its references; say precisely what is wrong if any.
    A policy that is not Ready guards nothing: nothing is ever done on a guess."""
    try:
        policy = Policy.parse(body)
    except SelectorError as exc:
        return Readiness(False, "InvalidSelector", f"{exc}: the API server cannot select with "
                                                   f"it, so nothing is guarded; fix the selector")
    except ModelError as exc:
        return Readiness(False, "InvalidSpec", str(exc))
    runbook_body = await ctx.kube.get("Runbook", policy.namespace, policy.runbook)
    if runbook_body is None:
        return Readiness(False, "RunbookNotFound",
                         f"Runbook {policy.namespace}/{policy.runbook} does not exist: "
                         f"apply it, or fix spec.runbookRef.name")
    try:
        runbook = effective_runbook(Runbook.parse(runbook_body), policy)
    except ModelError as exc:
        return Readiness(False, "RunbookInvalid", f"{policy.runbook}: {exc}")
    problem = templates.first_problem(runbook.templated())
    if problem:
        return Readiness(False, "RunbookInvalid", f"{policy.runbook}: {problem}")
    if _reported(runbook_body, "DuplicateId"):
        return Readiness(False, "RunbookAmbiguous",
                         f"Runbook {policy.runbook} shares its id {runbook.id} with another "
                         f"Runbook (see its Ready condition): give one of them another id")
    dangling = await _dangling(ctx, policy, runbook)
    if dangling is not None:
        return dangling
    ownership = None
    if policy.ownership:
        own_body = await ctx.kube.get("ServiceOwnership", policy.namespace, policy.ownership)
        if own_body is None:
            return Readiness(False, "OwnershipNotFound",
                             f"ServiceOwnership {policy.namespace}/{policy.ownership} does not "
                             f"exist: apply it, or fix spec.ownershipRef.name")
        try:
            ownership = Ownership.parse(own_body)
        except ModelError as exc:
            return Readiness(False, "OwnershipInvalid", f"{policy.ownership}: {exc}")
        if _reported(own_body, "DuplicateService"):
            return Readiness(False, "OwnershipAmbiguous",
                             f"ServiceOwnership {ownership.name} is one of several maps of "
                             f"service {ownership.service} (see its Ready condition): keep one")
        _, missing = owners.recipients(ownership, owners.roles_named(runbook))
        if missing:
            return Readiness(False, "RolesUnresolved",
                             f"runbook {runbook.id} pages {', '.join(missing)}, but "
                             f"ServiceOwnership {ownership.name} names nobody for "
                             f"{'it' if len(missing) == 1 else 'them'}")
    return Resolved(policy, runbook, ownership)


async def _dangling(ctx: Context, policy: Policy, runbook: Runbook) -> Readiness | None:
    """References that must exist before an incident relies on them: the namespace a
    replay runs in, the Secrets of the policy's own routes (and that they hold a URL where
    the route posts to one)."""
    for step in runbook.steps:
        if isinstance(step.params, ReplaySample):
            problem = await references.namespace_problem(ctx.kube, step.params.namespace)
            if problem:
                return Readiness(False, "NamespaceNotFound",
                                 f"step {step.id} of {runbook.id} replays into {problem}: "
                                 f"create it, or fix the runbook")
    for field_path, route in (("spec.stakeholderUpdates.route", policy.updates_route),
                              ("spec.channel.route", policy.channel_route)):
        if route is None:
            continue
        value, problem = await references.secret_value(ctx.kube, policy.namespace, route.secret)
        if problem:
            return Readiness(False, "SecretMissing", f"{field_path}: {problem}")
        problem = references.value_problem(route, value or "")
        if problem:
            return Readiness(False, "RouteInvalid", f"{field_path}: {problem}")
    return None


def _reported(body: dict, reason: str) -> bool:
    """Whether the catalogue reported this problem on the object, for its current spec
    (conflicts between objects are judged there, once, not on every tick)."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return ready.get("status") == "False" and ready.get("reason") == reason \
        and status.get("observedGeneration") == meta.get("generation")


async def tick(ctx: Context, body: dict) -> TickResult:
    resolved = await resolve(ctx, body)
    if isinstance(resolved, Readiness):
        return TickResult(resolved, wait=10.0)
    policy, runbook = resolved.policy, resolved.runbook
    now = ctx.clock()
    states = {(t["namespace"], t["name"]): from_dict(TargetState, t)
              for t in (body.get("status") or {}).get("targets") or []}
    targets = await read_targets(ctx.kube, policy)
    readings = await _prometheus_readings(ctx, runbook, targets, states, now)
    new_states: list[TargetState] = []
    opened: list[str] = []
    for target in targets:
        state = states.get(target.key) or TargetState(*target.key)
        state = await _follow_incident(ctx, state)
        state = observe(state, target.reading, stable_for=runbook.recovery.stable_for, now=now)
        was_armed = armed(runbook, state, now)
        state, made, fired = evaluate(runbook, state, readings.get(target.key, Readings()), now)
        if fired and was_armed:
            state = state.distrust_current()
            name = await open_incident(ctx, policy, runbook, target, state, made, fired, now)
            state = replace(state, incident=name)
            opened.append(name)
        await _mark_last_healthy(ctx, target, state)
        new_states.append(state)
    wait = min((next_due(runbook, s, ctx.clock()) for s in new_states), default=10.0)
    mode = "dryRun" if policy.dry_run or ctx.force_dry_run else "enforce"
    message = (f"guarding {len(new_states)} Deployment(s) with {runbook.id} in {mode} mode")
    status = {"targetCount": len(new_states),
              "targets": [to_dict(s) for s in sorted(new_states, key=lambda s: s.key)]}
    return TickResult(Readiness(True, "Guarding", message), status, opened,
                      wait=max(0.2, min(wait, 10.0)))


async def _follow_incident(ctx: Context, state: TargetState) -> TargetState:
    """Forget the target's incident once it is over, so the trigger can arm again."""
    if state.incident is None:
        return state
    body = await ctx.kube.get("Incident", state.namespace, state.incident)
    phase = ((body or {}).get("status") or {}).get("phase")
    if body is None or phase in (inc.RESOLVED, inc.CLOSED):
        return replace(state, incident=None)
    return state


async def _prometheus_readings(ctx: Context, runbook: Runbook, targets: list[Target],
                               states: dict, now: float) -> dict[tuple[str, str], Readings]:
    out: dict[tuple[str, str], Readings] = {
        t.key: Readings(release=t.release) for t in targets}
    keys = [t.key for t in targets]
    for condition in runbook.trigger.conditions:
        detector = condition.detector
        if not isinstance(detector, Threshold | RisesSharply):
            continue
        due = [k for k in keys if (states.get(k) is None or states[k].checks.get(
            condition.name) is None or states[k].checks[condition.name].due(
            condition.interval, now))]
        if not due:
            continue
        if ctx.prometheus is None:
            for k in due:
                out[k].errors[condition.name] = "no Prometheus configured"
            continue
        answer = await ctx.prometheus.by_target(detector.query, due)
        baseline = None
        if isinstance(detector, RisesSharply):
            lowest = (f"min_over_time(({detector.query})"
                      f"[{int(detector.window)}s:{max(1, int(detector.interval))}s])")
            baseline = await ctx.prometheus.by_target(lowest, due)
        for k in due:
            value = answer.get(k)
            out[k].values[condition.name] = value
            if baseline is not None:
                out[k].baselines[condition.name] = baseline.get(k)
            if value is None:
                out[k].errors[condition.name] = answer.error or "no data for this Deployment"
    return out


async def open_incident(ctx: Context, policy: Policy, runbook: Runbook, target: Target,
                        state: TargetState, made: list[Check], fired: list[Check],
                        now: float) -> str:
    """Open one Incident for this failure. The name is derived from the release, so a retry
    (or a second operator) finds the same Incident instead of opening another."""
    namespace, deployment = target.key
    existing = await ctx.kube.list("Incident", namespace, label_selector=(
        f"{LABEL_TARGET}={deployment},{LABEL_POLICY}={policy.name}"))
    name = f"{runbook.id.lower()}-{deployment}"[:52] + f"-r{state.revision}"
    for body in existing:
        phase = (body.get("status") or {}).get("phase")
        if phase is None and body["metadata"]["name"] == name:
            continue   # created, its status not written (an outage between): write it below
        if (phase or inc.DETECTED) in inc.OPEN_PHASES:
            return body["metadata"]["name"]
    mode = "dryRun" if policy.dry_run or ctx.force_dry_run else "enforce"
    reason = "; ".join(f"{c.condition}: {c.message}" for c in fired)[:1000]
    owner = await _owner(ctx, policy, target)
    spec = {
        "runbook": {"name": runbook.name, "id": runbook.id},
        "policy": policy.name,
        "target": {"kind": "Deployment", "namespace": namespace, "name": deployment},
        "severity": runbook.severity,
        "owner": owner,
        "summary": f"{runbook.id} {runbook.title}: {reason}"[:1000],
        "mode": mode,
    }
    body = {
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
        "metadata": {"name": name, "namespace": namespace, "labels": {
            LABEL_POLICY: policy.name, LABEL_TARGET: deployment,
            LABEL_RUNBOOK: runbook.id.lower()},
            "annotations": {POLICY_NAMESPACE: policy.namespace}},
        "spec": spec,
    }
    try:
        await ctx.kube.create("Incident", namespace, body)
        metrics.INCIDENTS_OPENED.labels(runbook=runbook.id, mode=mode).inc()
    except ApiException as exc:
        if exc.status != 409:
            raise
    status = inc.opened(
        now=now, mode=mode, slo=runbook.recovery.slo, reason=reason,
        evidence=tuple(inc.Evidence(c.condition, str(c.outcome), c.message[:1000], c.at, c.value)
                       for c in made),
        steps=tuple((s.id, s.action) for s in runbook.steps))
    to_revision, to_replica_set = state.rollback_target()
    status = replace(status, rollback=inc.RollbackRecord(
        from_revision=state.revision, from_replica_set=state.replica_set,
        to_revision=to_revision, to_replica_set=to_replica_set))
    if state.released_at is not None:
        metrics.TIME_TO_DETECT.labels(runbook=runbook.id).observe(max(0.0, now - state.released_at))
    current = await ctx.kube.get("Incident", namespace, name)
    if not (current or {}).get("status"):
        await ctx.kube.patch_status("Incident", namespace, name, to_dict(status))
    log.info("opened incident %s/%s: %s", namespace, name, reason)
    return name


async def _owner(ctx: Context, policy: Policy, target: Target) -> str:
    found = await find_ownership(ctx, policy, target.body)
    if found is None:
        return "unassigned"
    contacts = found.contacts("release-owner") or found.contacts("oncall-backend")
    return contacts[0].name if contacts else "unassigned"


async def find_ownership(ctx: Context, policy: Policy, deployment: dict) -> Ownership | None:
    namespace = deployment["metadata"]["namespace"]
    if policy.ownership:
        body = await ctx.kube.get("ServiceOwnership", policy.namespace, policy.ownership)
        return Ownership.parse(body) if body else None
    try:
        ns = await ctx.kube.json(ctx.kube.core.read_namespace, namespace)
    except ApiException:
        ns = {"metadata": {}}
    service = owners.service_of(deployment["metadata"].get("labels"),
                                ns["metadata"].get("labels"), deployment["metadata"]["name"])
    candidates = []
    for where in dict.fromkeys([namespace, policy.namespace]):
        for body in await ctx.kube.list("ServiceOwnership", where):
            try:
                candidates.append(Ownership.parse(body))
            except ModelError:
                continue
    return owners.find(candidates, service)


async def _mark_last_healthy(ctx: Context, target: Target, state: TargetState) -> None:
    """Show the last known healthy revision on the Deployment itself."""
    if state.last_healthy_revision is None:
        return
    value = f"{state.last_healthy_revision} ({state.last_healthy_replica_set})"
    annotations = target.body["metadata"].get("annotations") or {}
    if annotations.get(LAST_HEALTHY) == value:
        return
    try:
        await ctx.kube.call(ctx.kube.apps.patch_namespaced_deployment, target.reading.name,
                            target.reading.namespace,
                            {"metadata": {"annotations": {LAST_HEALTHY: value}}})
    except ApiException as exc:
        log.warning("could not annotate %s/%s: %s", *target.key, exc)
