"""Recovery on a fake clock (recovery.py): Mitigating -> Mitigated -> Resolved from the
engine's Health readings, relapses, and which escalation rules are due."""

from __future__ import annotations

from dataclasses import replace

import pytest

from missioncontrol import incident as inc
from missioncontrol import recovery
from missioncontrol.model import (
    Escalation,
    EscalationRule,
    Recovery,
    Runbook,
    Trigger,
)
from missioncontrol.recovery import Health

T0 = 1_700_000_000.0
HEALTHY = Health(True, True, True, passing=("readiness",))
SICK = Health(True, True, True, failing=("readiness",))
RULES = (EscalationRule(300.0, ("platform-lead",), "NotMitigated"),
         EscalationRule(600.0, ("incident-commander",), "SLOBreached"),
         EscalationRule(900.0, ("stakeholders",), "NotRecovered"),
         EscalationRule(1800.0, ("integration-owner",), "Always"))


def runbook(stable_for: float = 120.0, rules: tuple[EscalationRule, ...] = RULES) -> Runbook:
    return Runbook(namespace="ops", name="bad-release", id="RB-001", title="Bad release",
                   severity="SEV2", trigger=Trigger(()), steps=(),
                   recovery=Recovery(slo=1200.0, stable_for=stable_for),
                   escalation=Escalation(page=("release-owner",), rules=rules))


def mitigating() -> inc.IncidentStatus:
    status = inc.opened(now=T0, mode="enforce", slo=1200.0, evidence=(), steps=(),
                        reason="readiness failed")
    return inc.move(status, T0 + 5, inc.MITIGATING, "running RB-001 first response")


def progress(status: inc.IncidentStatus, health: Health, at: float) -> inc.IncidentStatus:
    return recovery.progress(status, runbook(), health, T0 + at)


# -- Health -----------------------------------------------------------------------------------
def test_healthy_needs_everything() -> None:
    assert HEALTHY.healthy
    assert Health(True, True, True).healthy   # nothing failing, nothing known
    assert not Health(False, True, True).healthy
    assert not Health(True, False, True).healthy
    assert not Health(True, True, False).healthy
    assert not SICK.healthy


def test_describe() -> None:
    assert Health(True, True, True, passing=("readiness", "p95"), unknown=("errors",)
                  ).describe() == "passing: readiness, p95; no data: errors"
    assert Health(True, True, True).describe() == ""


# -- progress ---------------------------------------------------------------------------------
def test_unhealthy_keeps_the_phase() -> None:
    status = mitigating()
    assert progress(status, SICK, 30) == status
    assert progress(status, Health(False, False, False), 30) == status


def test_healthy_moves_to_mitigated() -> None:
    status = progress(mitigating(), HEALTHY, 60)
    assert status.phase == inc.MITIGATED
    assert status.mitigated_at == T0 + 60 and status.healthy_since == T0 + 60
    assert status.condition("Mitigated").status == "True"
    assert status.timeline[-1].message == "the target is healthy again (passing: readiness)"


def test_healthy_without_condition_readings_says_rolled_out() -> None:
    status = progress(mitigating(), Health(True, True, True), 60)
    assert status.timeline[-1].message == "the target is healthy again (rolled out)"


@pytest.mark.parametrize("phase", [inc.DETECTED, inc.FAILED])
def test_healthy_from_detected_or_failed_moves_to_mitigated(phase: str) -> None:
    status = progress(replace(mitigating(), phase=phase), HEALTHY, 60)
    assert status.phase == inc.MITIGATED


def test_mitigated_until_stable_for_has_passed() -> None:
    status = progress(mitigating(), HEALTHY, 60)
    status = progress(status, HEALTHY, 179)
    assert status.phase == inc.MITIGATED and status.healthy_since == T0 + 60
    status = progress(status, HEALTHY, 180)
    assert status.phase == inc.RESOLVED and status.resolved_at == T0 + 180
    assert not status.open
    assert status.timeline[-1].message == "stable for 2m; passing: readiness"
    assert status.condition("Resolved").status == "True"
    assert status.condition("Active").status == "False"


def test_unknown_only_never_resolves() -> None:
    no_data = Health(True, True, True, unknown=("readiness",))
    status = progress(mitigating(), no_data, 60)
    assert status.phase == inc.MITIGATED
    for at in (180, 600, 3600, 86400):
        status = progress(status, no_data, at)
        assert status.phase == inc.MITIGATED, at


def test_stable_healthy_resolves_once_a_condition_passes() -> None:
    status = progress(mitigating(), Health(True, True, True), 60)
    status = progress(status, Health(True, True, True), 600)
    assert status.phase == inc.MITIGATED
    status = progress(status, HEALTHY, 601)
    assert status.phase == inc.RESOLVED


def test_stable_for_zero_resolves_at_once() -> None:
    status = recovery.progress(mitigating(), runbook(stable_for=0.0), HEALTHY, T0 + 60)
    assert status.phase == inc.RESOLVED
    assert [e.type for e in status.timeline][-2:] == [inc.MITIGATED, inc.RESOLVED]


def test_relapse_returns_to_mitigating_and_resets_healthy_since() -> None:
    status = progress(mitigating(), HEALTHY, 60)
    status = progress(status, SICK, 150)
    assert status.phase == inc.MITIGATING and status.healthy_since is None
    mitigated = status.condition("Mitigated")
    assert (mitigated.status, mitigated.reason) == ("False", "Relapsed")
    assert status.timeline[-1].message == "the target is unhealthy again: back to mitigating"
    # Healthy again: the stable period counts from now, not from the first recovery.
    status = progress(status, HEALTHY, 200)
    assert status.phase == inc.MITIGATED and status.healthy_since == T0 + 200
    assert status.mitigated_at == T0 + 60     # kept from the first time
    assert status.condition("Mitigated").status == "True"
    assert progress(status, HEALTHY, 319).phase == inc.MITIGATED
    assert progress(status, HEALTHY, 320).phase == inc.RESOLVED


def test_closed_and_resolved_do_not_move() -> None:
    status = progress(progress(mitigating(), HEALTHY, 60), HEALTHY, 180)
    assert status.phase == inc.RESOLVED
    assert progress(status, SICK, 200) == status
    closed = inc.move(status, T0 + 900, inc.CLOSED, "closed")
    assert progress(closed, SICK, 1000) == closed


# -- escalation rules -------------------------------------------------------------------------
def due(status: inc.IncidentStatus, at: float,
        rules: tuple[EscalationRule, ...] = RULES) -> list[str]:
    return [r.page[0] for r in recovery.due_rules(status, runbook(rules=rules), T0 + at)]


def fired(status: inc.IncidentStatus, *keys: str) -> inc.IncidentStatus:
    return replace(status, escalations=tuple(inc.EscalationRecord(k, "x") for k in keys))


def test_a_rule_fires_at_its_after_not_before() -> None:
    assert due(mitigating(), 299) == []
    assert due(mitigating(), 300) == ["platform-lead"]


def test_a_rule_fires_once() -> None:
    assert due(fired(mitigating(), "5m"), 400) == []


def test_not_mitigated_stops_at_mitigated() -> None:
    mitigated = progress(mitigating(), HEALTHY, 60)
    assert due(mitigated, 300) == []
    assert due(replace(mitigating(), phase=inc.FAILED), 300) == ["platform-lead"]


def test_not_recovered_holds_while_mitigated() -> None:
    mitigated = progress(mitigating(), HEALTHY, 60)
    assert due(fired(mitigated, "5m", "10m"), 900) == ["stakeholders"]


def test_slo_breached_only_when_breached() -> None:
    status = fired(mitigating(), "5m")
    assert due(status, 600) == []
    breached = replace(status, slo=inc.Slo(deadline=T0 + 1200, breached=True,
                                           status="breached"))
    assert due(breached, 600) == ["incident-commander"]


def test_a_rule_whose_condition_comes_later_fires_then() -> None:
    status = fired(mitigating(), "5m")
    late = replace(status, slo=inc.Slo(deadline=T0 + 1200, breached=True))
    assert due(late, 1300) == ["incident-commander", "stakeholders"]


def test_always() -> None:
    mitigated = fired(progress(mitigating(), HEALTHY, 60), "15m")
    assert due(mitigated, 1800) == ["integration-owner"]


def test_never_once_resolved_or_closed() -> None:
    status = progress(progress(mitigating(), HEALTHY, 60), HEALTHY, 180)
    assert status.phase == inc.RESOLVED
    assert due(status, 3600) == []
    assert due(inc.move(status, T0 + 900, inc.CLOSED, "closed"), 3600) == []


def test_no_rules_without_detection() -> None:
    assert due(inc.IncidentStatus(phase=inc.MITIGATING), 3600) == []


def test_unknown_when_never_holds() -> None:
    assert not recovery.holds(EscalationRule(1.0, ("x",), "Sometimes"), mitigating())


def test_rule_key() -> None:
    assert [recovery.rule_key(r) for r in RULES] == ["5m", "10m", "15m", "30m"]


def test_next_rule_in() -> None:
    assert recovery.next_rule_in(mitigating(), runbook(), T0 + 100) == 200
    assert recovery.next_rule_in(fired(mitigating(), "5m"), runbook(), T0 + 100) == 500
    assert recovery.next_rule_in(mitigating(), runbook(), T0 + 1800) is None
    assert recovery.next_rule_in(inc.IncidentStatus(), runbook(), T0) is None


def test_rules_a_few_seconds_apart_fire_separately() -> None:
    rules = (EscalationRule(600.0, ("platform-lead",), "NotMitigated"),
             EscalationRule(630.0, ("incident-commander",), "NotMitigated"))
    status = fired(mitigating(), recovery.rule_key(rules[0]))
    assert due(status, 700, rules) == ["incident-commander"]
