"""Incident and policy state as Prometheus sees it: gauges computed at each scrape from what the
operator already watches (kopf indexes of Incidents and IncidentPolicies, see
handlers/state.py), so no value is older than the watch and no series outlives its object.

`incident_facts` and `policy_facts` keep of each object only what the gauges need (an Incident's
status can be large); `families` turns them into metric families at a moment `now`, purely;
`StateCollector` is the prometheus_client adapter that reads the indexes on the operator's
event loop (the only thread that changes them) and exports them from the leader alone, so one
replica speaks for the cluster and a `sum` over replicas counts each incident once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import conditions, timeutil
from . import incident as inc
from .records import from_dict

log = logging.getLogger("missioncontrol.metrics")

FREEZE_SCOPES = ("Deployment", "Namespace")
READ_TIMEOUT = 2.0   # a scrape waits this long for the event loop, then exports no state


@dataclass(frozen=True)
class IncidentFacts:
    namespace: str
    name: str
    runbook: str
    severity: str
    phase: str
    mode: str
    target: str
    owner: str
    detected_at: float | None
    slo: inc.Slo
    resolved_at: float | None
    escalated: bool
    update_overdue: bool
    freeze_scope: str | None   # the scope of an active freeze, else None
    awaiting_approval: str | None = None   # the step waiting for a person's approval

    @property
    def open(self) -> bool:
        return self.phase in inc.OPEN_PHASES

    def slo_breached(self, now: float) -> bool:
        """As of `now`, not as of the engine's last round (incident.slo_status decides)."""
        slo, _ = inc.slo_status(_slo_view(self), now)
        return slo.breached


@dataclass(frozen=True)
class PolicyFacts:
    namespace: str
    name: str
    mode: str
    ready: str          # the Ready condition's status: True, False, or Unknown before any
    reason: str
    last_tick: float | None


def tracked(status: Mapping[str, Any] | None) -> bool:
    """Which Incidents the index keeps: the open ones, and any still holding a freeze."""
    status = status or {}
    return status.get("phase") in inc.OPEN_PHASES or bool((status.get("freeze") or {})
                                                          .get("active"))


_READ = ("phase", "mode", "severity", "detectedAt", "resolvedAt", "escalated", "slo",
         "conditions", "freeze", "awaitingApproval")


def incident_facts(body: Mapping[str, Any]) -> IncidentFacts:
    meta, spec = body["metadata"], body.get("spec") or {}
    raw = body.get("status") or {}
    # Only the fields read here are parsed: the timeline, pages and updates are most of a
    # status, and this runs at every change of every tracked incident.
    status = from_dict(inc.IncidentStatus, {k: raw[k] for k in _READ if k in raw})
    overdue = status.condition("UpdateOverdue")
    target = spec.get("target") or {}
    return IncidentFacts(
        namespace=meta["namespace"], name=meta["name"],
        runbook=(spec.get("runbook") or {}).get("id", ""),
        severity=status.severity or spec.get("severity") or "",
        phase=status.phase, mode=spec.get("mode") or status.mode,
        target=f"{target.get('namespace', meta['namespace'])}/{target.get('name', '')}",
        owner=spec.get("owner") or "", detected_at=status.detected_at, slo=status.slo,
        resolved_at=status.resolved_at, escalated=status.escalated,
        update_overdue=overdue is not None and overdue.status == "True",
        freeze_scope=(status.freeze.scope or "Deployment")
        if status.freeze and status.freeze.active else None,
        awaiting_approval=status.awaiting_approval)


def policy_facts(body: Mapping[str, Any]) -> PolicyFacts:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    found = tuple(from_dict(conditions.Condition, c) for c in status.get("conditions") or [])
    ready = conditions.get(found, "Ready")
    return PolicyFacts(namespace=meta["namespace"], name=meta["name"],
                       mode=spec.get("mode") or "dryRun",
                       ready=ready.status if ready else "Unknown",
                       reason=ready.reason if ready else "Pending",
                       last_tick=timeutil.parse(status.get("lastTick")))


def _slo_view(facts: IncidentFacts) -> inc.IncidentStatus:
    return inc.IncidentStatus(phase=facts.phase, slo=facts.slo, resolved_at=facts.resolved_at)


PER_INCIDENT = ("namespace", "incident", "runbook")


def families(incidents: Iterable[IncidentFacts], policies: Iterable[PolicyFacts], *,
             now: float) -> list[Metric]:
    """Every state gauge at `now`. Per-incident series exist only for open incidents."""
    incidents, policies = list(incidents), list(policies)
    opened = [i for i in incidents if i.open]
    by_kind = GaugeMetricFamily(
        "missioncontrol_incidents_open", "Open incidents, by runbook, severity, phase and mode.",
        labels=("runbook", "severity", "phase", "mode"))
    for key, count in _count((i.runbook, i.severity, i.phase, i.mode) for i in opened):
        by_kind.add_metric(key, count)
    info = GaugeMetricFamily(
        "missioncontrol_incident_info",
        "1 per open incident, its descriptive labels (for tables and joins).",
        labels=(*PER_INCIDENT, "severity", "phase", "mode", "target", "owner"))
    detected = _per_incident("missioncontrol_incident_detected_timestamp_seconds",
                             "When the open incident was detected (Unix time).")
    remaining = _per_incident(
        "missioncontrol_incident_slo_remaining_seconds",
        "Seconds left until the open incident's recovery SLO deadline; negative once breached.")
    breached = _per_incident("missioncontrol_incident_slo_breached",
                             "1 while the open incident is past its recovery SLO deadline.")
    escalated = _per_incident("missioncontrol_incident_escalated",
                              "1 once the open incident has been escalated.")
    overdue = _per_incident("missioncontrol_incident_update_overdue",
                            "1 while the open incident's stakeholder update is overdue.")
    awaiting = _per_incident(
        "missioncontrol_incident_awaiting_approval",
        "1 while a step of the open incident waits for a person's approval (kubectl mc approve).")
    for i in opened:
        key = (i.namespace, i.name, i.runbook)
        info.add_metric((*key, i.severity, i.phase, i.mode, i.target, i.owner), 1)
        if i.detected_at is not None:
            detected.add_metric(key, i.detected_at)
        if i.slo.deadline is not None:
            remaining.add_metric(key, i.slo.deadline - now)
        breached.add_metric(key, 1 if i.slo_breached(now) else 0)
        escalated.add_metric(key, 1 if i.escalated else 0)
        overdue.add_metric(key, 1 if i.update_overdue else 0)
        awaiting.add_metric(key, 1 if i.awaiting_approval else 0)
    freezes = GaugeMetricFamily(
        "missioncontrol_freezes_active",
        "Deploy freezes incidents hold now, by scope (Deployment or Namespace).",
        labels=("scope",))
    held = dict(_count((i.freeze_scope,) for i in incidents if i.freeze_scope))
    for scope in FREEZE_SCOPES:
        freezes.add_metric((scope,), held.get((scope,), 0))
    by_ready = GaugeMetricFamily(
        "missioncontrol_policies", "IncidentPolicies, by Ready status, its reason, and mode.",
        labels=("ready", "reason", "mode"))
    for key, count in _count((p.ready, p.reason, p.mode) for p in policies):
        by_ready.add_metric(key, count)
    ticked = GaugeMetricFamily(
        "missioncontrol_policy_last_tick_timestamp_seconds",
        "When the guard last checked a Ready policy's targets successfully (Unix time).",
        labels=("namespace", "policy"))
    for p in policies:
        if p.ready == "True" and p.last_tick is not None:
            ticked.add_metric((p.namespace, p.name), p.last_tick)
    return [by_kind, info, detected, remaining, breached, escalated, overdue, awaiting, freezes,
            by_ready, ticked]


def _per_incident(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=PER_INCIDENT)


def _count(keys: Iterable[tuple[str, ...]]) -> list[tuple[tuple[str, ...], int]]:
    counts: dict[tuple[str, ...], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items())


Snapshot = tuple[list[IncidentFacts], list[PolicyFacts]]


@dataclass
class Source:
    loop: asyncio.AbstractEventLoop
    read: Callable[[], Snapshot]        # runs on `loop`
    leading: Callable[[], bool]


class StateCollector(Collector):
    """Exports nothing until a source is attached (the operator has started), nothing from a
    standby, and nothing when the event loop does not answer in time: no data, never a guess."""

    def __init__(self, clock: Callable[[], float] = timeutil.wall) -> None:
        self.source: Source | None = None
        self.clock = clock

    def attach(self, source: Source | None) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return
        future = None
        try:
            future = asyncio.run_coroutine_threadsafe(_on_loop(source), source.loop)
            snapshot = future.result(READ_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a scrape never fails over it
            if future is not None:
                future.cancel()   # a busy loop must not run a pile of late reads
            log.warning("incident state not exported in this scrape: %s",
                        type(exc).__name__ if not str(exc) else exc)
            return
        if snapshot is None:
            return
        yield from families(*snapshot, now=self.clock())


async def _on_loop(source: Source) -> Snapshot | None:
    return source.read() if source.leading() else None


STATE = StateCollector()
REGISTRY.register(STATE)
