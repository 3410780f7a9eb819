"""Guarding the Deployments of one IncidentPolicy: one pass ("tick") of the policy's daemon.

Read the policy's references, read every target's signals (one list per namespace, one
PromQL query per condition), fold them into each target's detector state, open an
Incident where a condition fires, and write it all back into the policy's status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import incident as inc
from . import labels, metrics, owners, pause, references, silences, templates, tenancy
from .actions import rollback
from .alerts import AlertStore
from .detect.outcome import Check, Outcome
from .detect.release import Readings, TargetState, armed, evaluate, next_due, observe
from .kube import PLURALS, ApiException, Conflict, Kube, Unavailable
from .model import (
    Alert,
    Condition,
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
from .signals.kubernetes import Target, read_targets, target_namespaces
from .signals.prometheus import Answer, InFlight, Prometheus
from .timeutil import Clock
from .watchcache import WatchCache

log = logging.getLogger(__name__)
LABEL_POLICY = labels.POLICY
LABEL_TARGET = labels.TARGET
LABEL_RUNBOOK = labels.RUNBOOK
POLICY_NAMESPACE = labels.POLICY_NAMESPACE
PARSED_KEPT = 1024       # parsed versions kept (policies, and runbooks as each policy runs them)
LAST_HEALTHY = labels.LAST_HEALTHY


@dataclass
class Context:
    kube: Kube
    prometheus: Prometheus | None
    clock: Clock
    force_dry_run: bool = False
    # PromQL queries running beside the ticks, per (policy, condition): see tick().
    queries: InFlight = field(default_factory=InFlight)
    # What Alertmanager sent (alertreceiver.py), for `alert` conditions; None: no receiver,
    # every alert condition unknown.
    alerts: AlertStore | None = None
    alertmanager_url: str | None = None    # --alertmanager-url: for policies' silences
    # What the guard reads of the cluster, kept from watches (None: read it live each pass).
    cache: WatchCache | None = None
    # Policies and runbooks as parsed, by version (parsed()): a pass parses what changed.
    parsed: dict[tuple, object] = field(default_factory=dict)


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
    # Paused: the targets whose incident the pause holds back (pause.held).
    held: list[str] = field(default_factory=list)


async def resolve(ctx: Context, body: dict) -> Resolved | Readiness:
    """Parse the policy and follow its references; say precisely what is wrong if any.
    A policy that is not Ready guards nothing: nothing is ever done on a guess."""
    try:
        policy = parsed(ctx, _version("IncidentPolicy", body, "generation"),
                        lambda: Policy.parse(body))
    except SelectorError as exc:
        return Readiness(False, "InvalidSelector", f"{exc}: the API server cannot select with "
                                                   f"it, so nothing is guarded; fix the selector")
    except ModelError as exc:
        return Readiness(False, "InvalidSpec", str(exc))
    runbook_body = await read(ctx, "Runbook", policy.namespace, policy.runbook)
    if runbook_body is None:
        return Readiness(False, "RunbookNotFound",
                         f"Runbook {policy.namespace}/{policy.runbook} does not exist: "
                         f"apply it, or fix spec.runbookRef.name")
    try:
        runbook = parsed(ctx, _version("Runbook", runbook_body, "resourceVersion", policy=body),
                         lambda: effective_runbook(Runbook.parse(runbook_body), policy))
    except ModelError as exc:
        return Readiness(False, "RunbookInvalid", f"{policy.runbook}: {exc}")
    problem = templates.first_problem(runbook.templated())
    if problem:
        return Readiness(False, "RunbookInvalid", f"{policy.runbook}: {problem}")
    if _reported(runbook_body, "DuplicateId"):
        return Readiness(False, "RunbookAmbiguous",
                         f"Runbook {policy.runbook} shares its id {runbook.id} with another "
                         f"Runbook (see its Ready condition): give one of them another id")
    refused = _not_ready(runbook_body)
    if refused:
        return Readiness(False, "RunbookInvalid", f"{policy.runbook}: {refused}")
    # Tenancy first: nothing of another namespace is read for a policy that may not reach it.
    refused = reach(policy, runbook)
    if refused is not None:
        return refused
    dangling = await _dangling(ctx, policy, runbook)
    if dangling is not None:
        return dangling
    ownership = None
    if policy.ownership:
        own_body = await read(ctx, "ServiceOwnership", policy.namespace, policy.ownership)
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


def parsed(ctx: Context, key: tuple | None, parse: Callable[[], object]) -> object:
    """What `parse` makes of an object, made once per version of it (`key`; None: parse each
    time). A parse that raises is not kept: the same error comes back next pass."""
    if key is None:
        return parse()
    found = ctx.parsed.get(key)
    if found is None:
        if len(ctx.parsed) >= PARSED_KEPT:
            ctx.parsed.clear()   # versions long gone: start again
        found = ctx.parsed[key] = parse()
    return found


def _version(kind: str, body: dict, field_name: str, *, policy: dict | None = None
             ) -> tuple | None:
    """A version key: the object's uid and `field_name` (a policy's generation moves with its
    spec; a Runbook's resourceVersion with anything), and the policy's for a runbook as the
    policy runs it."""
    meta = body.get("metadata") or {}
    if not meta.get("uid") or meta.get(field_name) is None:
        return None
    under = None if policy is None else _version("IncidentPolicy", policy, "generation")
    if policy is not None and under is None:
        return None
    return (kind, meta["uid"], meta[field_name], under)


async def read(ctx: Context, kind: str, namespace: str, name: str) -> dict | None:
    """One of our objects the guard follows (Runbook, ServiceOwnership): from the watch cache
    when it keeps that kind, so a pass costs no request for it; else read live."""
    if ctx.cache is not None and ctx.cache.has(PLURALS[kind]):
        return ctx.cache.store(PLURALS[kind]).get(namespace, name)
    return await ctx.kube.get(kind, namespace, name)


def _not_ready(body: dict) -> str:
    """The Runbook's own verdict (its handler parses its PromQL with Prometheus's parser):
    the message of a Ready=False condition for its current generation, else ""."""
    generation = body.get("metadata", {}).get("generation")
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "False" \
                and condition.get("observedGeneration") in (None, generation):
            return f"{condition.get('reason')}: {condition.get('message')}"
    return ""


def reach(policy: Policy, runbook: Runbook) -> Readiness | None:
    """Ready=False when the policy reaches beyond its namespace (tenancy's rules)."""
    violations = tenancy.reference_violations(policy, runbook)
    if not violations:
        return None
    return Readiness(False, "CrossNamespaceReference", "; ".join(violations))


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


def mode_of(ctx: Context, policy: Policy) -> str:
    """The mode the policy acts in: the operator's --dry-run overrides an enforcing policy."""
    return "dryRun" if policy.dry_run or ctx.force_dry_run else "enforce"


async def tick(ctx: Context, body: dict) -> TickResult:
    """One pass over the policy's targets. Readiness is judged first, from the cluster's
    answer alone; the PromQL conditions then take the answers Prometheus gave within the time
    this tick can spare before the next readiness check is due. A query still running stays
    running (its own deadline ends it: see signals.prometheus), and its conditions wait."""
    resolved = await resolve(ctx, body)
    if isinstance(resolved, Readiness):
        return TickResult(resolved, wait=10.0)
    policy, runbook = resolved.policy, resolved.runbook
    paused = pause.in_force(policy, ctx.clock())
    metrics.guarding(runbook=runbook.id, mode=mode_of(ctx, policy))
    stored = {(t["namespace"], t["name"]): from_dict(TargetState, t)
              for t in (body.get("status") or {}).get("targets") or []}
    namespaces, protected = tenancy.split(await target_namespaces(ctx.kube, policy,
                                                                  cache=ctx.cache))
    if protected and not namespaces:
        return TickResult(Readiness(False, "ProtectedNamespace", _not_guarding(protected)),
                          {"targetCount": 0, "targets": []}, wait=10.0)
    targets = await read_targets(ctx.kube, policy, namespaces, cache=ctx.cache)
    owner = (policy.namespace, policy.name)
    asked = _ask_prometheus(ctx, owner, runbook, targets, stored, ctx.clock())
    cluster = _only(runbook, lambda c: not _reads_prometheus(c))
    states: dict[tuple[str, str], TargetState] = {}
    judging = _Round(ctx, resolved, ctx.clock(), paused=paused)
    for target in targets:
        state = stored.get(target.key) or TargetState(*target.key)
        state = await _follow_incident(ctx, state)
        state = observe(state, target.reading, stable_for=runbook.recovery.stable_for,
                        now=judging.now)
        reports, unknown = _alert_reports(ctx, runbook, target.key)
        states[target.key] = await judging.judge(cluster, target, state, Readings(
            release=target.release, alerts=reports, errors=unknown))
    spare = min((next_due(cluster, s, ctx.clock()) for s in states.values()), default=0.0)
    await ctx.queries.settle(asked, within=min(spare, 10.0))
    answers = _prometheus_readings(ctx, owner, runbook, targets)
    judging = _Round(ctx, resolved, ctx.clock(), judging.opened, paused=paused)
    for target in targets:
        readings = answers.get(target.key)
        if readings is None:
            continue
        part = _only(runbook, lambda c, r=readings: c.name in r.values)
        states[target.key] = await judging.judge(part, target, states[target.key], readings)
    opened = judging.opened
    for target in targets:
        await _mark_last_healthy(ctx, target, states[target.key])
    # A condition whose query is still running is not due again: its answer is awaited by
    # the next tick's settle. The time this tick spent waiting for answers is the time until
    # the next readiness check, so that check starts on time.
    idle = _only(runbook, lambda c: not ctx.queries.running((owner, c.name)))
    wait = min((next_due(idle, s, ctx.clock()) for s in states.values()), default=10.0)
    mode = mode_of(ctx, policy)
    message = (f"guarding {len(states)} Deployment(s) with {runbook.id} in {mode} mode")
    if protected:
        message += f"; {_not_guarding(protected)}"
    status = {"targetCount": len(states),
              "targets": [to_dict(s) for s in sorted(states.values(), key=lambda s: s.key)]}
    reason, held = "GuardingExceptProtected" if protected else "Guarding", []
    if paused is not None:
        held = pause.held(runbook, states.values(), ctx.clock())
        reason, message = pause.REASON, pause.message(paused, guarding=message, holding=held)
        # The window ends by itself: the pass after it is on time.
        wait = min(wait, max(0.0, paused.until - ctx.clock()))
    return TickResult(Readiness(True, reason, message), status, opened,
                      wait=max(0.05, min(wait, 10.0)), held=held)


@dataclass
class _Round:
    """What the judgements of one pass over the targets share."""
    ctx: Context
    resolved: Resolved
    now: float
    opened: list[str] = field(default_factory=list)
    paused: pause.Pause | None = None

    async def judge(self, part: Runbook, target: Target, state: TargetState,
                    readings: Readings) -> TargetState:
        """Check the conditions of `part` that are due; open the incident if one fires while
        the trigger is armed."""
        runbook = self.resolved.runbook
        was_armed = armed(runbook, state, self.now)
        state, made, fired = evaluate(part, state, readings, self.now)
        # Paused: the checks go on and keep failing, so the incident opens at the first
        # check after the window (pause.held says which targets wait for it).
        if fired and was_armed and self.paused is None:
            state = state.distrust_current()
            # The healthy template is read beside the incident's opening (restore below).
            template = self.healthy_template(target, state)
            try:
                opened = await open_incident(self.ctx, self.resolved, target, state,
                                             (_evidence(state, made), fired), now=self.now)
            except BaseException:
                if template is not None:
                    template.cancel()
                raise
            state = replace(state, incident=opened.name)
            self.opened.append(opened.name)
            if template is not None:
                await self.restore(target, opened, template)
        return state

    def healthy_template(self, target: Target,
                         state: TargetState) -> asyncio.Task[dict | None] | None:
        """Where the incident about to open would roll back at once, the healthy ReplicaSet's
        template, read in a task of its own."""
        _, to_replica_set = state.rollback_target()
        if to_replica_set is None or mode_of(self.ctx, self.resolved.policy) != "enforce" \
                or not rollback.restores_at_trigger(self.resolved.runbook):
            return None
        return asyncio.create_task(rollback.healthy_template(
            self.ctx.kube, target.key[0], to_replica_set), name=f"template of {to_replica_set}")

    async def restore(self, target: Target, opened: Opened,
                      template: asyncio.Task[dict | None]) -> None:
        """The healthy template back the moment the incident exists, before its steps (freeze,
        pages) run, within the policy's limits: the rollback step then finds it done and
        records it. Not done here (not this pass's incident, a limit, a change since, an
        error), it is that step's."""
        plan = opened.plan
        try:
            wanted = await template
            if not opened.restores or wanted is None or plan is None \
                    or plan.to_replica_set is None or rollback.limit_reason(
                        self.resolved.policy, opened.incidents, name=target.key[1],
                        incident=opened.name, now=self.now):
                return
            done = await rollback.restore_at_trigger(
                self.ctx.kube, incident=opened.name, deployment=target.body, template=wanted)
        except (Unavailable, ApiException) as exc:
            log.warning("restoring %s/%s at the trigger failed (%s): its incident's rollback "
                        "step decides", *target.key, exc)
            return
        if done:
            log.info("restored %s/%s to %s at the trigger (incident %s)", *target.key,
                     plan.to_replica_set, opened.name)


def _evidence(state: TargetState, made: list[Check]) -> list[Check]:
    """The checks just made, and the last check of every other condition."""
    fresh = {c.condition for c in made}
    earlier = [Check(name, Outcome(c.last_outcome), c.last_check, c.last_value, c.last_message)
               for name, c in state.checks.items()
               if name not in fresh and c.last_outcome and c.last_check is not None]
    return [*made, *earlier]


def _alert_reports(ctx: Context, runbook: Runbook,
                   key: tuple[str, str]) -> tuple[dict[str, tuple], dict[str, str]]:
    """Per `alert` condition, what Alertmanager reported of this target; without a receiver,
    why each is unknown."""
    conditions = [c for c in runbook.trigger.conditions if isinstance(c.detector, Alert)]
    if ctx.alerts is None:
        return {}, {c.name: "the operator runs no Alertmanager receiver (--alertmanager-port)"
                    for c in conditions}
    return {c.name: ctx.alerts.reports(c.detector, key) for c in conditions}, {}


def _reads_prometheus(condition: Condition) -> bool:
    return isinstance(condition.detector, Threshold | RisesSharply)


def _only(runbook: Runbook, keep: Callable[[Condition], bool]) -> Runbook:
    conditions = tuple(c for c in runbook.trigger.conditions if keep(c))
    return replace(runbook, trigger=replace(runbook.trigger, conditions=conditions))


def _not_guarding(protected: list[str]) -> str:
    # A large cluster has many: name a few, protected ones first, and count the rest (a
    # condition message is bounded).
    protected = sorted(protected, key=lambda n: n not in tenancy.RULES.protected)
    names = ", ".join(protected[:10]) + (f" and {len(protected) - 10} more"
                                         if len(protected) > 10 else "")
    return (f"not guarding the namespace(s) {names} it selects: protected or not watched "
            f"(the operator never acts there)")


async def _follow_incident(ctx: Context, state: TargetState) -> TargetState:
    """Forget the target's incident once it is over, so the trigger can arm again."""
    if state.incident is None:
        return state
    body = await ctx.kube.get("Incident", state.namespace, state.incident)
    phase = ((body or {}).get("status") or {}).get("phase")
    if body is None or phase in (inc.RESOLVED, inc.CLOSED):
        return replace(state, incident=None)
    return state


@dataclass(frozen=True)
class _Asked:
    """One condition's query (and a risesSharply baseline) for the targets due when asked."""
    targets: tuple[tuple[str, str], ...]
    answer: Answer
    baseline: Answer | None = None


def _ask_prometheus(ctx: Context, owner: tuple[str, str], runbook: Runbook,
                    targets: list[Target], states: dict, now: float) -> list[tuple]:
    """Start the PromQL queries that are due (one per condition, for all its due targets),
    unless one is still running; return the keys of the queries to wait for."""
    keys = []
    for condition in runbook.trigger.conditions:
        if not _reads_prometheus(condition) or ctx.prometheus is None:
            continue
        key = (owner, condition.name)
        keys.append(key)
        if key in ctx.queries.tasks:
            continue
        due = tuple(t.key for t in targets if _due(states.get(t.key), condition, now))
        if due:
            ctx.queries.start(key, _query(ctx.prometheus, condition, due))
    return keys


def _due(state: TargetState | None, condition: Condition, now: float) -> bool:
    checks = state.checks.get(condition.name) if state is not None else None
    return checks is None or checks.due(condition.interval, now)


async def _query(prometheus: Prometheus, condition: Condition,
                 due: tuple[tuple[str, str], ...]) -> _Asked:
    detector = condition.detector
    if not isinstance(detector, RisesSharply):
        return _Asked(due, await prometheus.by_target(detector.query, list(due)))
    # One query for the value now and the window's lowest (signals.prometheus): both read at
    # one instant, and one query per condition per policy, as for a threshold.
    answer, baseline = await prometheus.now_and_lowest(
        detector.query, list(due), window=detector.window, step=detector.interval)
    return _Asked(due, answer, baseline)


def _prometheus_readings(ctx: Context, owner: tuple[str, str], runbook: Runbook,
                         targets: list[Target]) -> dict[tuple[str, str], Readings]:
    """The PromQL answers that have come, per target; a condition without one is left out
    (it is checked when its answer comes)."""
    out: dict[tuple[str, str], Readings] = {}
    present = {t.key for t in targets}
    for condition in runbook.trigger.conditions:
        if not _reads_prometheus(condition):
            continue
        if ctx.prometheus is None:
            asked = _Asked(tuple(present), Answer(error="no Prometheus configured"))
        else:
            asked = ctx.queries.take((owner, condition.name))
            if asked is None:
                continue
        for key in asked.targets:
            if key not in present:
                continue
            readings = out.setdefault(key, Readings())
            value = asked.answer.get(key)
            readings.values[condition.name] = value
            baseline = asked.baseline.get(key) if asked.baseline is not None else None
            if asked.baseline is not None:
                readings.baselines[condition.name] = baseline
            if value is None:
                readings.errors[condition.name] = (asked.answer.error
                                                   or "no data for this Deployment")
            elif asked.baseline is not None and baseline is None:
                # Half a reading is no reading: unknown, with the half that is missing.
                readings.errors[condition.name] = (
                    f"no baseline (lowest value over the last {condition.detector.window:g}s) "
                    f"for this Deployment")
    return out


async def open_incident(ctx: Context, resolved: Resolved, target: Target, state: TargetState,
                        checks: tuple[list[Check], list[Check]], *, now: float) -> Opened:
    """Open one Incident for this failure. The name is derived from the release, so a retry
    (or a second operator) finds the same Incident instead of opening another. `checks`:
    the evidence (the checks just made and the last of every other condition), and those of
    them that fired."""
    policy, runbook = resolved.policy, resolved.runbook
    made, fired = checks
    namespace, deployment = target.key
    everyone = await target_incidents(ctx, namespace, deployment)
    name = f"{runbook.id.lower()}-{deployment}"[:52] + f"-r{state.revision}"
    for body in everyone:
        if (body["metadata"].get("labels") or {}).get(LABEL_POLICY) != policy.name:
            continue
        phase = (body.get("status") or {}).get("phase")
        if phase is None and body["metadata"]["name"] == name:
            continue   # created, its status not written (an outage between): write it below
        if (phase or inc.DETECTED) in inc.OPEN_PHASES:
            return Opened(body["metadata"]["name"])
    mode = mode_of(ctx, policy)
    looked = await _silences(ctx, resolved, target, state) if mode == "enforce" else None
    if looked is not None and looked.silence is not None:
        mode = inc.SILENCED
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
        created = True
    except Conflict:
        created = False   # opened already (by a round before a restart): the same incident
    status = inc.opened(
        now=now, mode=mode, slo=runbook.recovery.slo, reason=reason,
        evidence=tuple(inc.Evidence(c.condition, str(c.outcome), c.message[:1000], c.at, c.value)
                       for c in made),
        steps=tuple((s.id, s.action) for s in runbook.steps))
    status = _silence_noted(status, looked, now)
    to_revision, to_replica_set = state.rollback_target()
    status = replace(status, rollback=inc.RollbackRecord(
        from_revision=state.revision, from_replica_set=state.replica_set,
        to_revision=to_revision, to_replica_set=to_replica_set))
    if state.released_at is not None:
        metrics.TIME_TO_DETECT.labels(runbook=runbook.id).observe(max(0.0, now - state.released_at))
    wrote = created or not ((await ctx.kube.get("Incident", namespace, name)) or {}).get(
        "status")
    if wrote:
        await ctx.kube.patch_status("Incident", namespace, name, to_dict(status))
    log.info("opened incident %s/%s: %s", namespace, name, reason)
    return Opened(name, plan=status.rollback, incidents=everyone,
                  restores=wrote and mode == "enforce" and rollback.restores_at_trigger(runbook))


async def target_incidents(ctx: Context, namespace: str, deployment: str) -> list[dict]:
    """The target's Incidents under every policy (this policy's open one, and the rollbacks
    its limits count): from the watch cache when there is one (compact copies)."""
    if ctx.cache is None or not ctx.cache.has("incidents"):
        return await ctx.kube.list("Incident", namespace,
                                   label_selector=f"{LABEL_TARGET}={deployment}")
    return [b for b in ctx.cache.store("incidents").items(namespace)
            if (b["metadata"].get("labels") or {}).get(LABEL_TARGET) == deployment]


@dataclass(frozen=True)
class Opened:
    """The policy's open Incident of a target. `restores`: this pass opened it (wrote its
    status), in enforce mode, and its steps would roll back at once
    (rollback.restores_at_trigger)."""
    name: str
    plan: inc.RollbackRecord | None = None
    incidents: list[dict] = field(default_factory=list)   # the target's, when it was opened
    restores: bool = False


async def _silences(ctx: Context, resolved: Resolved, target: Target,
                    state: TargetState) -> silences.Lookup | None:
    """Alertmanager's word on the target, for a policy that respects its silences."""
    settings = resolved.policy.alertmanager
    if not settings.respect_silences:
        return None
    url = settings.url or ctx.alertmanager_url
    if not url:
        return silences.Lookup(error="spec.alertmanager.respectSilences is set, but neither "
                                     "spec.alertmanager.url nor --alertmanager-url says where "
                                     "Alertmanager is")
    namespace, deployment = target.key
    base = silences.target_labels(namespace_label=settings.namespace_label,
                                  deployment_label=settings.deployment_label,
                                  namespace=namespace, deployment=deployment,
                                  runbook=resolved.runbook.id)
    label_sets = [base]
    if ctx.alerts is not None:   # the firing alerts that opened it: silencing one covers it
        for condition in resolved.runbook.trigger.conditions:
            if isinstance(condition.detector, Alert):
                label_sets += [{**dict(r.labels), **base}
                               for r in ctx.alerts.reports(condition.detector, target.key)
                               if r.firing]
    looked = await silences.lookup(url, label_sets, now=ctx.clock())
    metrics.SILENCE_LOOKUPS.labels(result="unreachable" if looked.error else "silenced"
                                   if looked.silence else "not_silenced").inc()
    return looked


def _silence_noted(status: inc.IncidentStatus, looked: silences.Lookup | None,
                   now: float) -> inc.IncidentStatus:
    if looked is None:
        return status
    if looked.error:
        return inc.note(status, now, "SilencesUnknown",
                        f"not silenced: {looked.error}; acting as the policy's mode says")
    if looked.silence is None:
        return status
    found = looked.silence
    status = replace(status, silence=inc.SilenceRecord(
        found.id, found.created_by, found.comment[:1000], found.ends_at,
        ", ".join(str(m) for m in found.matchers)[:1000]))
    return inc.note(status, now, "Silenced",
                    f"{silences.describe(found)}: steps are only planned and nobody is paged")


async def _owner(ctx: Context, policy: Policy, target: Target) -> str:
    found = await find_ownership(ctx, policy, target.body)
    if found is None:
        return "unassigned"
    contacts = found.contacts("release-owner") or found.contacts("oncall-backend")
    return contacts[0].name if contacts else "unassigned"


async def find_ownership(ctx: Context, policy: Policy, deployment: dict) -> Ownership | None:
    namespace = deployment["metadata"]["namespace"]
    if policy.ownership:
        body = await read(ctx, "ServiceOwnership", policy.namespace, policy.ownership)
        return Ownership.parse(body) if body else None
    cached = ctx.cache is not None and ctx.cache.has("namespaces")
    try:
        ns = (ctx.cache.store("namespaces").get("", namespace) if cached
              else await ctx.kube.json(ctx.kube.core.read_namespace, namespace))
    except ApiException:
        ns = None
    ns = ns or {"metadata": {}}
    service = owners.service_of(deployment["metadata"].get("labels"),
                                ns["metadata"].get("labels"), deployment["metadata"]["name"])
    candidates = []
    for where in dict.fromkeys([namespace, policy.namespace]):
        bodies = (ctx.cache.store("serviceownerships").items(where) if ctx.cache is not None
                  else await ctx.kube.list("ServiceOwnership", where))
        for body in bodies:
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
