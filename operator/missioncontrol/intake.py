"""Incidents declared by hand: the on-call applies an Incident (runbook, target, severity,
owner, mode) instead of waiting for a policy's trigger. The operator checks what it names
once, when it first sees it, and then either

- takes it in: a Detected status with the runbook's steps and SLO clock, Ready=True
  (Accepted); from then on the incident daemon runs it like any other (steps, pages,
  channel, stakeholder updates, escalation, recovery), or
- rejects it: phase Rejected, Ready=False with the reason and what to do, an Event, and
  nothing done to the cluster. Rejected is final; what defines an incident cannot change
  (the CRD says so), so the fix is a new Incident.

Incidents opened by a policy (labelled with it) get their status from the guard instead."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from . import incident as inc
from .guard import LABEL_POLICY, LAST_HEALTHY, POLICY_NAMESPACE
from .kube import Kube, NotFound
from .model import Policy, Runbook, effective_runbook
from .parse import ModelError
from .signals.kubernetes import REVISION

# Namespaces of the cluster itself: an incident never acts there.
PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
_HEALTHY = re.compile(r"^(\d+) \(([^)]+)\)$")   # as guard._mark_last_healthy writes it


@dataclass(frozen=True)
class Facts:
    """What the Incident names, as read from the cluster (None: it does not exist)."""
    namespace: str
    spec: dict
    runbook: dict | None
    policy: dict | None
    deployment: dict | None


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    message: str
    runbook: Runbook | None = None


def opened_by_policy(body: dict) -> bool:
    return bool((body.get("metadata", {}).get("labels") or {}).get(LABEL_POLICY))


def judge(facts: Facts) -> Verdict:
    """Whether a hand-made incident can be run, and if not, why and what to do (pure)."""
    spec, namespace = facts.spec, facts.namespace
    target = spec.get("target") or {}
    where = f"{target.get('namespace')}/{target.get('name')}"
    if target.get("namespace") != namespace:
        return Verdict(False, "TargetOutsideNamespace",
                       f"spec.target.namespace is {target.get('namespace')} but this Incident "
                       f"lives in {namespace}: an incident acts only in its own namespace. "
                       f"Declare it in namespace {target.get('namespace')}")
    if namespace in PROTECTED_NAMESPACES:
        return Verdict(False, "ProtectedNamespace",
                       f"{namespace} belongs to the cluster itself: Mission Control does not "
                       f"freeze, roll back or scale anything there")
    ref = spec.get("runbook") or {}
    if facts.runbook is None:
        return Verdict(False, "RunbookNotFound",
                       f"Runbook {ref.get('name')} does not exist in {namespace}: apply it, "
                       f"then declare the incident again (delete this one)")
    try:
        runbook = Runbook.parse(facts.runbook)
        if facts.policy is not None:
            runbook = effective_runbook(runbook, Policy.parse(facts.policy))
    except ModelError as exc:
        return Verdict(False, "RunbookInvalid", f"cannot run runbook {ref.get('name')}: {exc}")
    if ref.get("id") != runbook.id:
        return Verdict(False, "RunbookMismatch",
                       f"spec.runbook.id is {ref.get('id')} but Runbook {ref.get('name')} is "
                       f"{runbook.id}: declare the incident again with matching name and id")
    if not spec.get("policy"):
        return Verdict(False, "PolicyRequired",
                       "spec.policy is not set: name the IncidentPolicy whose ownership map, "
                       "routes and limits this incident uses (who is paged, where the channel "
                       "opens), and declare the incident again")
    if facts.policy is None:
        return Verdict(False, "PolicyNotFound",
                       f"IncidentPolicy {spec['policy']} does not exist in {namespace}: "
                       f"declare the incident again with an existing one")
    if facts.deployment is None:
        return Verdict(False, "TargetNotFound",
                       f"Deployment {where} does not exist: declare the incident again for an "
                       f"existing Deployment")
    mode = spec.get("mode") or "dryRun"
    return Verdict(True, "Accepted",
                   f"declared by hand: {runbook.id} for Deployment {where} in {mode} mode",
                   runbook)


def first_status(facts: Facts, verdict: Verdict, now: float) -> inc.IncidentStatus:
    """The status a hand-made incident starts with (pure)."""
    spec = facts.spec
    mode = spec.get("mode") or "dryRun"
    if not verdict.accepted or verdict.runbook is None:
        status = inc.IncidentStatus(phase=inc.REJECTED, reason=verdict.message, mode=mode)
        status = inc.set_condition(status, now, "Ready", False, verdict.reason, verdict.message)
        return inc.note(status, now, inc.REJECTED, verdict.message)
    runbook = verdict.runbook
    who = spec.get("owner")
    summary = spec.get("summary") or runbook.title
    status = inc.opened(now=now, mode=mode, slo=runbook.recovery.slo,
                        reason=f"declared by hand{f' by {who}' if who else ''}: {summary}"[:1000],
                        evidence=(), steps=tuple((s.id, s.action) for s in runbook.steps))
    status = replace(status, severity=spec.get("severity") or runbook.severity,
                     rollback=_rollback_plan(facts.deployment or {}))
    return inc.set_condition(status, now, "Ready", True, verdict.reason, verdict.message)


def _rollback_plan(deployment: dict) -> inc.RollbackRecord:
    """Where a rollback would go: the last healthy release a policy's guard marked on the
    Deployment. Without that mark the rollback step skips and escalates (people decide)."""
    meta = deployment.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    current = annotations.get(REVISION)
    healthy = _HEALTHY.match(annotations.get(LAST_HEALTHY) or "")
    return inc.RollbackRecord(
        from_revision=int(current) if current and current.isdigit() else None,
        to_revision=int(healthy.group(1)) if healthy else None,
        to_replica_set=healthy.group(2) if healthy else None)


async def read_facts(kube: Kube, body: dict) -> Facts:
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace = meta["namespace"]
    # The runbook and policy live where a policy's incidents look for them (engine.load).
    where = (meta.get("annotations") or {}).get(POLICY_NAMESPACE, namespace)
    runbook = await kube.get("Runbook", where, (spec.get("runbook") or {}).get("name", ""))
    policy = await kube.get("IncidentPolicy", where, spec["policy"]) \
        if spec.get("policy") else None
    target = spec.get("target") or {}
    deployment = None
    if target.get("namespace") == namespace and namespace not in PROTECTED_NAMESPACES:
        try:
            deployment = await kube.json(kube.apps.read_namespaced_deployment,
                                         target.get("name", ""), namespace)
        except NotFound:
            pass
    return Facts(namespace, spec, runbook, policy, deployment)
