"""The incident state machine on a fake clock, the SLO column, and status records that
round-trip through the camelCase dicts stored in the cluster."""

from __future__ import annotations

from dataclasses import replace

from missioncontrol import incident, records
from missioncontrol.detect.release import TargetState
from missioncontrol.detect.state import ConditionState
from missioncontrol.incident import (
    CLOSED,
    DETECTED,
    FAILED,
    MITIGATED,
    MITIGATING,
    RESOLVED,
    TIMELINE_LIMIT,
)

T0 = 1_700_000_000.0      # a whole second: timestamps round-trip at millisecond precision
EVIDENCE = (incident.Evidence("readiness", "Fail", "2/3 pods not Ready", T0, 2.0),)
STEPS = (("freeze", "freezeDeployments"), ("rollback", "rollback"), ("page", "notify"))


def opened(slo: float = 1200.0) -> incident.IncidentStatus:
    return incident.opened(now=T0, mode="enforce", slo=slo, evidence=EVIDENCE, steps=STEPS,
                           reason="readiness failed 3 consecutive checks")


# -- opening and moving -----------------------------------------------------------------------
def test_opened() -> None:
    status = opened()
    assert status.phase == DETECTED and status.open
    assert status.detected_at == T0 and status.slo.deadline == T0 + 1200
    assert [(s.id, s.action, s.state) for s in status.steps] == [
        ("freeze", "freezeDeployments", "Pending"), ("rollback", "rollback", "Pending"),
        ("page", "notify", "Pending")]
    active = status.condition("Active")
    assert (active.status, active.reason, active.last_transition_time) == ("True", "Detected",
                                                                          T0)
    assert status.timeline == (incident.TimelineEntry(T0, "Detected",
                                                      "readiness failed 3 consecutive checks"),)
    assert status.evidence == EVIDENCE


def test_move_through_the_lifecycle() -> None:
    status = opened()
    status = incident.move(status, T0 + 5, MITIGATING, "running first response")
    status = incident.move(status, T0 + 60, MITIGATED, "rolled back to web-a")
    status = incident.move(status, T0 + 300, RESOLVED, "stable for 2m")
    assert (status.mitigating_at, status.mitigated_at, status.resolved_at) == (
        T0 + 5, T0 + 60, T0 + 300)
    assert not status.open
    assert status.condition("Mitigated").status == "True"
    assert status.condition("Active").status == "False"
    assert status.condition("Active").reason == RESOLVED
    assert status.condition("Resolved").last_transition_time == T0 + 300
    assert [e.type for e in status.timeline] == [DETECTED, MITIGATING, MITIGATED, RESOLVED]
    status = incident.move(status, T0 + 900, CLOSED, "action items assigned")
    assert status.closed_at == T0 + 900 and status.phase == CLOSED


def test_move_to_the_same_phase_changes_nothing() -> None:
    status = incident.move(opened(), T0 + 5, MITIGATING, "x")
    assert incident.move(status, T0 + 10, MITIGATING, "again") == status


def test_phase_stamps_are_kept_from_the_first_time() -> None:
    status = incident.move(opened(), T0 + 5, MITIGATING, "first response")
    status = incident.move(status, T0 + 20, FAILED, "rollback failed")
    assert status.open and status.phase == FAILED
    status = incident.move(status, T0 + 40, MITIGATING, "retrying")
    assert status.mitigating_at == T0 + 5


def test_update_step() -> None:
    change = incident.Change("Deployment", "web", "spec.template", "web-b", "web-a", "shop")
    status = incident.update_step(opened(), "rollback", state=incident.SUCCEEDED,
                                  started_at=T0 + 1, finished_at=T0 + 9, changes=(change,))
    assert status.step("rollback").state == "Succeeded"
    assert status.step("rollback").changes == (change,)
    assert status.step("freeze").state == "Pending"
    assert incident.update_step(status, "no-such-step", state="Failed").steps == status.steps


def test_escalate() -> None:
    status = incident.escalate(opened(), T0 + 1200, "NotRecovered", "paged incident-commander")
    assert status.escalated
    escalated = status.condition("Escalated")
    assert (escalated.status, escalated.reason, escalated.last_transition_time) == (
        "True", "NotRecovered", T0 + 1200)
    assert status.timeline[-1] == incident.TimelineEntry(T0 + 1200, "Escalated",
                                                         "paged incident-commander")


# -- conditions and timeline ------------------------------------------------------------------
def test_condition_keeps_transition_time_while_status_unchanged() -> None:
    status = incident.set_condition(opened(), T0 + 10, "UpdateOverdue", True, "Overdue", "5m")
    status = incident.set_condition(status, T0 + 70, "UpdateOverdue", True, "Overdue", "6m")
    overdue = status.condition("UpdateOverdue")
    assert (overdue.message, overdue.last_transition_time) == ("6m", T0 + 10)
    status = incident.set_condition(status, T0 + 90, "UpdateOverdue", False, "Sent")
    assert status.condition("UpdateOverdue").last_transition_time == T0 + 90
    assert [c.type for c in status.conditions].count("UpdateOverdue") == 1


def test_setting_the_same_condition_again_is_a_no_op() -> None:
    status = incident.set_condition(opened(), T0 + 10, "SLOBreached", True, "Deadline")
    assert incident.set_condition(status, T0 + 20, "SLOBreached", True, "Deadline") == status


def test_timeline_is_bounded() -> None:
    status = opened()
    for i in range(TIMELINE_LIMIT + 20):
        status = incident.note(status, T0 + i, "Update", f"update {i}")
    assert len(status.timeline) == TIMELINE_LIMIT
    assert status.timeline[-1].message == f"update {TIMELINE_LIMIT + 19}"
    assert status.timeline[0].message == "update 20"          # the oldest went first


def test_timeline_messages_are_cut() -> None:
    assert len(incident.note(opened(), T0, "Update", "x" * 2000).timeline[-1].message) == 500


# -- the SLO column ---------------------------------------------------------------------------
def test_slo_remaining_time() -> None:
    status = opened(slo=1200.0)
    slo, newly = incident.slo_status(status, T0 + 480)
    assert (slo.status, slo.breached, newly) == ("12m left", False, False)
    assert incident.slo_status(status, T0 + 1170)[0].status == "30s left"


def test_slo_breach_is_reported_once() -> None:
    status = opened(slo=1200.0)
    slo, newly = incident.slo_status(status, T0 + 1200)
    assert (slo.status, slo.breached, newly) == ("breached", True, True)
    status = replace(status, slo=slo)                   # the handler stores what it got
    slo, newly = incident.slo_status(status, T0 + 1500)
    assert (slo.status, slo.breached, newly) == ("breached", True, False)


def test_slo_met_when_resolved_before_deadline() -> None:
    status = incident.move(opened(slo=1200.0), T0 + 900, RESOLVED, "stable")
    slo, newly = incident.slo_status(status, T0 + 5000)     # long after the deadline
    assert (slo.status, slo.breached, newly) == ("met", False, False)


def test_slo_breached_when_resolved_late_after_a_reported_breach() -> None:
    status = opened(slo=1200.0)
    status = replace(status, slo=incident.slo_status(status, T0 + 1210)[0])
    status = incident.move(status, T0 + 1500, RESOLVED, "stable at last")
    slo, newly = incident.slo_status(status, T0 + 1500)
    assert (slo.status, slo.breached, newly) == ("breached", True, False)


def test_slo_breach_first_seen_at_late_resolution_is_reported() -> None:
    status = incident.move(opened(slo=1200.0), T0 + 1500, RESOLVED, "stable at last")
    slo, newly = incident.slo_status(status, T0 + 1500)
    assert (slo.status, slo.breached, newly) == ("breached", True, True)


def test_slo_without_deadline() -> None:
    status = incident.IncidentStatus()
    assert incident.slo_status(status, T0) == (status.slo, False)


# -- records round-trips ----------------------------------------------------------------------
def full_status() -> incident.IncidentStatus:
    status = incident.move(opened(), T0 + 2, MITIGATING, "first response")
    status = incident.update_step(
        status, "rollback", state=incident.SUCCEEDED, started_at=T0 + 3.25, finished_at=T0 + 9,
        message="rolled back", attempts=1,
        changes=(incident.Change("Deployment", "web", "spec.template", "web-b", "web-a",
                                 "shop"),))
    return replace(
        incident.escalate(status, T0 + 30, "NotMitigated", "paged platform-lead"),
        blast_radius=incident.BlastRadius(
            T0 + 4, (incident.SyntheticResult("health", "http://web.shop.svc/healthz", False,
                                              503, 0.125, "HTTP 503"),),
            (incident.DashboardResult("errors", "sum(rate(x[5m]))", "Ok", "0.42"),),
            "1 of 1 synthetic checks failing"),
        pages=(incident.Page("release-owner", "Ada", "Slack", at=T0 + 5, outcome="delivered",
                             attempts=2, acknowledged_at=T0 + 65),),
        updates=(incident.Update(T0 + 600, MITIGATING, "rolling back", "delivered"),),
        channel=incident.Channel("inc-web-1", T0 + 5, "delivered"),
        escalations=(incident.EscalationRecord("30m", "NotMitigated", ("platform-lead",),
                                               T0 + 1800),),
        freeze=incident.Freeze(True, "Namespace", T0 + 3, None, "incident inc-web-1",
                               ("Namespace/shop",), "5d8f7c"),
        rollback=incident.RollbackRecord(2, 1, "web-a", "web-b", T0 + 9),
        observed_generation=3, healthy_since=T0 + 100)


def test_incident_status_round_trips() -> None:
    status = full_status()
    data = records.to_dict(status)
    assert records.from_dict(incident.IncidentStatus, data) == status


def test_incident_status_dict_is_camel_case_and_drops_none() -> None:
    data = records.to_dict(full_status())
    assert data["detectedAt"] == "2023-11-14T22:13:20.000Z"
    assert data["steps"][1]["startedAt"] == "2023-11-14T22:13:23.250Z"
    assert data["steps"][1]["changes"][0]["from"] == "web-b"
    assert data["blastRadius"]["syntheticChecks"][0]["latencySeconds"] == 0.125
    assert data["pages"][0]["acknowledgedAt"] == "2023-11-14T22:14:25.000Z"
    assert "liftedAt" not in data["freeze"] and "resolvedAt" not in data
    assert data["escalated"] is True and data["observedGeneration"] == 3


def test_empty_status_round_trips() -> None:
    assert records.from_dict(incident.IncidentStatus, {}) == incident.IncidentStatus()
    assert records.from_dict(incident.IncidentStatus, None) == incident.IncidentStatus()
    status = opened()
    assert records.from_dict(incident.IncidentStatus, records.to_dict(status)) == status


def test_target_state_round_trips() -> None:
    state = TargetState(
        "shop", "web", revision=2, replica_set="web-b", released_at=T0, healthy_since=None,
        last_healthy_revision=1, last_healthy_replica_set="web-a", last_healthy_at=T0 - 3600,
        checks={"readiness": ConditionState(2, T0 + 30, "Fail", 1.0, T0 + 40, "1/3 not Ready"),
                "error-rate": ConditionState(0, None, "Unknown", None, T0 + 40, "no data")},
        event_counts={"web-b-0.17a": 4}, incident="inc-web-1")
    data = records.to_dict(state)
    assert data["checks"]["readiness"]["failingSince"] == "2023-11-14T22:13:50.000Z"
    assert data["eventCounts"] == {"web-b-0.17a": 4} and "healthySince" not in data
    back = records.from_dict(TargetState, data)
    assert back == state
    assert isinstance(back.checks["readiness"], ConditionState)


def test_records_accept_numbers_as_the_cluster_returns_them() -> None:
    # JSON has one number type: a float field may come back as an int, and the other way.
    back = records.from_dict(ConditionState, {"failures": 2, "lastValue": 1})
    assert back.last_value == 1.0 and isinstance(back.last_value, float)
