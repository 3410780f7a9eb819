"""Detection on a fake clock: how checks add up (detect.state), how readings become outcomes
(detect.signals), and how a guarded Deployment's releases arm and fire a trigger
(detect.release). `now` is a plain float throughout."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from missioncontrol import model
from missioncontrol.detect import release, signals
from missioncontrol.detect.outcome import Check, Outcome
from missioncontrol.detect.signals import PodReading, ProbeEvents, ReleaseReading
from missioncontrol.detect.state import ConditionState, advance, fires
from missioncontrol.parse import Reader

CATALOGUE = Path(__file__).resolve().parents[2] / "runbooks"
OUTCOMES = {"F": Outcome.FAIL, "P": Outcome.PASS, "U": Outcome.UNKNOWN}

READINESS = model.Condition("readiness", model.Readiness(consecutive_failures=3, interval=10.0,
                                                         grace_period=30.0))
P95 = model.Condition("p95", model.Threshold("latency", above=0.25, sustain=600.0,
                                             interval=30.0))


def runbook(prefix: str) -> model.Runbook:
    (path,) = CATALOGUE.glob(f"{prefix}-*.yaml")
    return model.Runbook.parse(yaml.safe_load(path.read_text()))


def run(condition: model.Condition, outcomes: str, *, start: float = 0.0,
        state: ConditionState | None = None) -> tuple[list[bool], ConditionState]:
    """Feed checks one interval apart (F, P, U); say after which of them the condition fired."""
    state = state or ConditionState()
    fired = []
    for i, letter in enumerate(outcomes):
        check = Check(condition.name, OUTCOMES[letter], start + i * condition.interval)
        state, did_fire = advance(condition, state, check)
        fired.append(did_fire)
    return fired, state


# -- detect.state: consecutive failures -------------------------------------------------------
def test_three_consecutive_failures_fire() -> None:
    fired, state = run(READINESS, "FFF")
    assert fired == [False, False, True]
    assert (state.failures, state.failing_since, state.last_check) == (3, 0.0, 20.0)
    assert state.last_outcome == "Fail"


def test_unknown_neither_resets_nor_counts() -> None:
    fired, state = run(READINESS, "FUFF")
    assert fired == [False, False, False, True]
    assert state.failures == 3


def test_pass_resets_the_count() -> None:
    fired, state = run(READINESS, "FPFF")
    assert fired == [False] * 4
    assert state.failures == 2 and state.failing_since == 20.0


def test_unknown_is_remembered_as_last_outcome() -> None:
    _, state = run(READINESS, "FFU")
    assert state.failures == 2 and state.last_outcome == "Unknown" and state.last_check == 20.0


def test_fires_on_a_stored_state() -> None:
    assert fires(READINESS, ConditionState(failures=3), now=0.0)
    assert not fires(READINESS, ConditionState(failures=2), now=0.0)


def test_threshold_without_count_or_duration_fires_on_first_failure() -> None:
    body = {"name": "errors", "threshold": {"query": "q", "above": 1}}
    condition = model.Condition.parse(Reader(body, "c"))
    assert condition.detector.consecutive_failures == 1
    assert run(condition, "PF")[0] == [False, True]


def test_long_messages_are_cut() -> None:
    state, _ = advance(READINESS, ConditionState(),
                       Check("readiness", Outcome.FAIL, 0.0, message="x" * 1000))
    assert len(state.last_message) == 300


# -- detect.state: failing for a sustained time ------------------------------------------------
def test_threshold_for_10m_fires_after_10_minutes_of_failing() -> None:
    fired, state = run(P95, "F" * 25)             # every 30s: t = 0, 30, ... 720
    assert fired.index(True) == 20                # t = 600: failing for exactly 10 minutes
    assert not any(fired[:20])
    assert state.failing_since == 0.0


def test_unknown_gaps_do_not_reset_the_sustained_run() -> None:
    outcomes = "FFFF" + "U" * 10 + "FFFFFFF"      # Prometheus away from t=120 to t=390
    fired, state = run(P95, outcomes)
    assert fired.index(True) == 20 and state.failing_since == 0.0


def test_a_pass_restarts_the_sustained_run() -> None:
    fired, state = run(P95, "F" * 10 + "P" + "F" * 30)    # the pass at t=300
    assert fired.index(True) == 31                         # t = 930 = 330 + 600
    assert state.failing_since == 330.0


def test_for_and_consecutive_failures_both_needed() -> None:
    condition = model.Condition("p95", replace(P95.detector, sustain=60.0,
                                               consecutive_failures=5))
    assert run(condition, "FFFFF")[0] == [False, False, False, False, True]   # t=60 at 3rd
    slow = model.Condition("p95", replace(P95.detector, sustain=600.0, consecutive_failures=2))
    assert run(slow, "FFF")[0] == [False, False, False]


# -- ConditionState.due -----------------------------------------------------------------------
def test_due() -> None:
    assert ConditionState().due(10.0, now=0.0)                      # never checked
    checked = ConditionState(last_check=100.0)
    assert not checked.due(10.0, now=105.0)
    assert checked.due(10.0, now=110.0)
    assert checked.due(10.0, now=109.97)   # a timer waking a hair early still runs the check
    assert not checked.due(30.0, now=120.0)


# -- detect.signals: thresholds ---------------------------------------------------------------
ABOVE = model.Threshold("q", above=0.05)
BELOW = model.Threshold("q", below=0.9)


@pytest.mark.parametrize(("detector", "value", "outcome"), [
    (ABOVE, 0.06, Outcome.FAIL), (ABOVE, 0.05, Outcome.PASS), (ABOVE, 0.0, Outcome.PASS),
    (BELOW, 0.5, Outcome.FAIL), (BELOW, 0.9, Outcome.PASS), (BELOW, 0.99, Outcome.PASS),
])
def test_threshold(detector: model.Threshold, value: float, outcome: Outcome) -> None:
    check = signals.threshold("errors", detector, value, 42.0)
    assert (check.condition, check.outcome, check.at, check.value) == ("errors", outcome, 42.0,
                                                                      value)


def test_threshold_message_says_value_and_rule() -> None:
    check = signals.threshold("errors", ABOVE, 0.123456, 0.0)
    assert check.message == "value 0.1235 (fires > 0.05)"
    assert signals.threshold("x", BELOW, 0.5, 0.0).message.endswith("(fires < 0.9)")


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_threshold_no_data_is_unknown(value: float | None) -> None:
    check = signals.threshold("errors", ABOVE, value, 0.0, "prometheus: connection refused")
    assert check.outcome is Outcome.UNKNOWN and check.value is None
    assert "prometheus: connection refused" in check.message


def test_threshold_unknown_without_error_says_no_data() -> None:
    assert signals.threshold("errors", ABOVE, None, 0.0).message == "no data: outcome unknown"


# -- detect.signals: rises sharply ------------------------------------------------------------
QUEUE = model.RisesSharply("depth", window=300.0, factor=3.0, min_increase=500.0)


@pytest.mark.parametrize(("current", "baseline", "outcome"), [
    (700.0, 100.0, Outcome.FAIL),     # x7 and +600
    (600.0, 100.0, Outcome.FAIL),     # +500 exactly, x6
    (350.0, 100.0, Outcome.PASS),     # x3.5 but only +250
    (1600.0, 1000.0, Outcome.PASS),   # +600 but only x1.6
    (3000.0, 1000.0, Outcome.FAIL),   # x3 and +2000
    (100.0, 100.0, Outcome.PASS),
    (50.0, 100.0, Outcome.PASS),      # falling
])
def test_rises_sharply(current: float, baseline: float, outcome: Outcome) -> None:
    check = signals.rises_sharply("retry-queue", QUEUE, current, baseline, 0.0)
    assert check.outcome is outcome and check.value == current
    assert "fires at x3 and +500" in check.message


def test_rises_sharply_from_zero_baseline() -> None:
    assert signals.rises_sharply("q", QUEUE, 600.0, 0.0, 0.0).outcome is Outcome.FAIL
    assert signals.rises_sharply("q", QUEUE, 400.0, 0.0, 0.0).outcome is Outcome.PASS
    any_rise = replace(QUEUE, min_increase=0.0)
    assert signals.rises_sharply("q", any_rise, 1.0, 0.0, 0.0).outcome is Outcome.FAIL
    assert signals.rises_sharply("q", any_rise, 0.0, 0.0, 0.0).outcome is Outcome.PASS


@pytest.mark.parametrize(("current", "baseline"), [(None, 10.0), (10.0, None),
                                                   (math.nan, 10.0), (10.0, math.nan)])
def test_rises_sharply_no_data_is_unknown(current: float | None,
                                          baseline: float | None) -> None:
    check = signals.rises_sharply("q", QUEUE, current, baseline, 0.0, "query timed out")
    assert check.outcome is Outcome.UNKNOWN and "query timed out" in check.message


def test_rises_sharply_unknown_carries_no_nan_value() -> None:
    check = signals.rises_sharply("q", QUEUE, math.nan, 10.0, 0.0)
    assert check.value is None


# -- detect.signals: readiness ----------------------------------------------------------------
GRACE = READINESS.detector       # grace period 30s


def pods(*ready: bool, since: float = 0.0, created: float = -1000.0) -> tuple[PodReading, ...]:
    """Pods of the release; by default long past their start-up grace period."""
    return tuple(PodReading(f"web-b-{i}", r, since, created) for i, r in enumerate(ready))


def reading(pod_list: tuple[PodReading, ...], *events: ProbeEvents) -> ReleaseReading:
    return ReleaseReading("web-b", pod_list, events)


def probe(pod: str, count: int) -> ProbeEvents:
    return ProbeEvents(pod, f"{pod}.17a", count, "Readiness probe failed: HTTP 503")


def readiness(release_reading: ReleaseReading | None, seen: dict[str, int], now: float,
              failing: tuple[str, ...] = ()) -> tuple[Check, dict[str, int]]:
    check, counts, _ = signals.readiness("readiness", GRACE, release_reading, seen, failing, now)
    return check, counts


def test_readiness_within_grace_is_unknown() -> None:
    check, seen = readiness(reading(pods(False, False)), {}, 29.0)
    assert check.outcome is Outcome.UNKNOWN
    assert "2/2 pods of web-b not Ready yet" in check.message and "30s grace" in check.message
    assert seen == {}


def test_ready_pods_pass_beside_pods_still_starting() -> None:
    # A rolling update starts its pods one after the other: the Ready ones are judged, the
    # one inside its grace period not yet.
    check, _ = readiness(reading(pods(True, False)), {}, 29.0)
    assert check.outcome is Outcome.PASS
    assert check.message == "1/2 pods of web-b Ready, 1 starting within the 30s grace period"


def test_readiness_past_grace_fails() -> None:
    check, _ = readiness(reading(pods(True, False, False)), {}, 30.0)
    assert check.outcome is Outcome.FAIL and check.value == 2.0
    assert "2/3 pods of web-b not Ready for more than 30s" in check.message


def test_readiness_all_ready_passes() -> None:
    check, _ = readiness(reading(pods(True, True)), {}, 5.0)
    assert check.outcome is Outcome.PASS and check.message == "2/2 pods of web-b Ready"


def test_readiness_no_pods_or_no_release_is_unknown() -> None:
    check, _ = readiness(reading(()), {}, 100.0)
    assert check.outcome is Outcome.UNKNOWN and "no pods yet" in check.message
    check, seen = readiness(None, {"e": 2}, 100.0)
    assert check.outcome is Outcome.UNKNOWN and seen == {"e": 2}


def test_readiness_counts_new_probe_failures_by_event_count() -> None:
    # Pods long started that turned NotReady 5s ago: not late yet, but failing their probe.
    dropped = pods(False, True, since=5.0)
    check, seen = readiness(reading(dropped, probe("web-b-0", 2)),
                                    {}, 10.0)
    assert check.outcome is Outcome.FAIL and check.value == 1.0
    assert "2 readiness-probe failures since the last check on pods still not Ready" \
        in check.message
    assert "HTTP 503" in check.message and seen == {"web-b-0.17a": 2}

    # The same Event with the same count, seen again: nothing new, the pod not late yet.
    check, seen = readiness(reading(dropped, probe("web-b-0", 2)),
                                    seen, 20.0)
    assert check.outcome is Outcome.PASS

    # The kubelet aggregated three more failures into it: 2 -> 5.
    check, seen = readiness(reading(dropped, probe("web-b-0", 5)),
                                    seen, 30.0)
    assert check.outcome is Outcome.FAIL and check.message.startswith("3 readiness-probe")
    assert seen == {"web-b-0.17a": 5}


def test_a_pod_ready_now_cancels_its_earlier_probe_failures() -> None:
    # Failures the kubelet reported before the pod turned Ready are its start-up.
    ready = pods(True, True)
    check, seen = readiness(reading(ready, probe("web-b-0", 7)),
                                    {"web-b-0.17a": 2}, 40.0)
    assert check.outcome is Outcome.PASS and check.message == "2/2 pods of web-b Ready"
    assert seen == {"web-b-0.17a": 7}           # counted as seen: never counted later


def test_failures_of_other_pods_than_before_start_a_new_run() -> None:
    # web-b-0 failed the last check and is Ready now; web-b-1 is late now.
    now_late = pods(True, False)
    check, counts, failing = signals.readiness("readiness", GRACE, reading(now_late), {},
                                               ("web-b-0",), 40.0)
    assert check.outcome is Outcome.FAIL and check.new_run and failing == ("web-b-1",)
    assert check.message.endswith("a new run: web-b-0 Ready now")
    # The same pod failing again continues its run.
    check, _, failing = signals.readiness("readiness", GRACE, reading(now_late), {},
                                          ("web-b-1",), 50.0)
    assert not check.new_run and failing == ("web-b-1",)
    # A pod that failed before and is gone now (replaced) cancels nothing.
    check, _, _ = signals.readiness("readiness", GRACE, reading(now_late), {},
                                    ("web-b-0", "web-b-9"), 50.0)
    assert not check.new_run


def test_a_new_run_counts_from_one() -> None:
    state, _ = advance(READINESS, ConditionState(failures=2, failing_since=10.0),
                       Check("readiness", Outcome.FAIL, 30.0, new_run=True))
    assert (state.failures, state.failing_since) == (1, 30.0)


def test_readiness_sums_events_of_several_pods() -> None:
    events = (probe("web-b-0", 4), probe("web-b-1", 1))
    check, _ = readiness(reading(pods(False, False, since=5.0), *events), {"web-b-0.17a": 3},
                         10.0)
    assert check.message.startswith("2 readiness-probe failures") and check.value == 2.0


# -- detect.release: following releases -------------------------------------------------------
def deployment(rs: str | None, revision: int, *, complete: bool = True, replicas: int = 3,
               paused: bool = False) -> release.DeploymentReading:
    up = replicas if complete else min(1, replicas)
    return release.DeploymentReading("shop", "web", revision, rs, complete, replicas, up,
                                     available=up, paused=paused)


def follow(steps: list[tuple[float, release.DeploymentReading]], *, stable_for: float = 120.0,
           state: release.TargetState | None = None) -> release.TargetState:
    state = state or release.TargetState("shop", "web")
    for now, seen in steps:
        state = release.observe(state, seen, stable_for=stable_for, now=now)
    return state


def test_release_becomes_last_healthy_after_stable_for() -> None:
    a = deployment("web-a", 1)
    state = follow([(0.0, a), (60.0, a), (119.0, a)])
    assert state.released_at == 0.0 and state.healthy_since == 0.0
    assert not state.known_healthy
    state = follow([(120.0, a)], state=state)
    assert (state.last_healthy_replica_set, state.last_healthy_revision,
            state.last_healthy_at) == ("web-a", 1, 120.0)


def test_a_break_restarts_the_stable_period() -> None:
    a, a_broken = deployment("web-a", 1), deployment("web-a", 1, complete=False)
    state = follow([(0.0, a), (100.0, a_broken), (110.0, a), (200.0, a)])
    assert not state.known_healthy and state.healthy_since == 110.0
    assert follow([(230.0, a)], state=state).last_healthy_replica_set == "web-a"


def test_a_release_at_zero_replicas_never_becomes_last_healthy() -> None:
    # Scaled to 0, a new template "rolls out" without a single pod of it: it never ran.
    state = follow([(0.0, deployment("web-a", 1)), (120.0, deployment("web-a", 1))])
    at_zero = deployment("web-b", 2, replicas=0)
    assert at_zero.complete
    state = follow([(200.0, at_zero), (400.0, at_zero), (4000.0, at_zero)], state=state)
    assert state.replica_set == "web-b" and state.healthy_since is None
    assert (state.last_healthy_replica_set, state.last_healthy_revision) == ("web-a", 1)
    assert state.rollback_target() == (1, "web-a")
    # Scaled up, it runs: now it can prove itself.
    state = follow([(4100.0, deployment("web-b", 2)), (4220.0, deployment("web-b", 2))],
                   state=state)
    assert (state.last_healthy_replica_set, state.previous_healthy_replica_set) == (
        "web-b", "web-a")


def test_a_paused_deployment_keeps_its_last_healthy_release() -> None:
    state = follow([(0.0, deployment("web-a", 1)), (120.0, deployment("web-a", 1))])
    paused = deployment("web-b", 2, paused=True)
    state = follow([(200.0, paused), (4000.0, paused)], state=state)
    assert state.healthy_since is None and state.last_healthy_replica_set == "web-a"


def test_the_current_replica_set_must_itself_have_available_pods() -> None:
    # The Deployment's counts say "rolled out", but none of them are pods of web-b.
    reading = replace(deployment("web-b", 2), available=0)
    assert not reading.running
    state = follow([(0.0, reading), (500.0, reading)])
    assert not state.known_healthy


def test_not_recorded_healthy_while_an_incident_is_open() -> None:
    a = deployment("web-a", 1)
    state = replace(follow([(0.0, a)]), incident="inc-1")
    assert not follow([(500.0, a)], state=state).known_healthy


def test_new_replica_set_starts_checks_afresh() -> None:
    a, b = deployment("web-a", 1), deployment("web-b", 2, complete=False)
    state = follow([(0.0, a), (120.0, a)])
    state = replace(state, checks={"readiness": ConditionState(failures=2, last_check=500.0)},
                    event_counts={"web-a-0.17a": 4})
    state = follow([(600.0, b)], state=state)
    assert (state.replica_set, state.revision, state.released_at) == ("web-b", 2, 600.0)
    assert state.checks == {} and state.event_counts == {} and state.healthy_since is None
    assert state.last_healthy_replica_set == "web-a"          # the old one stays the fallback


def test_revision_bump_on_the_same_replica_set_keeps_checks() -> None:
    a = deployment("web-a", 1)
    state = replace(follow([(0.0, a)]), checks={"readiness": ConditionState(failures=1)})
    state = follow([(10.0, deployment("web-a", 3))], state=state)
    assert state.revision == 3 and state.released_at == 0.0 and state.checks


# -- detect.release: armed --------------------------------------------------------------------
RB001, RB002 = runbook("rb-001"), runbook("rb-002")


def released(at: float = 1000.0) -> release.TargetState:
    """web-a known healthy, web-b released at `at`."""
    state = follow([(0.0, deployment("web-a", 1)), (120.0, deployment("web-a", 1))])
    return follow([(at, deployment("web-b", 2, complete=False))], state=state)


def test_armed_for_the_after_release_window() -> None:
    state = released(at=1000.0)
    assert release.armed(RB001, state, 1000.0)
    assert release.armed(RB001, state, 1000.0 + 1800)
    assert not release.armed(RB001, state, 1000.0 + 1801)


def test_rollback_to_the_known_healthy_release_is_not_armed() -> None:
    # A rollback to the healthy ReplicaSet: a new release to follow, but nothing to guard.
    rolled_back = follow([(2000.0, deployment("web-a", 3))], state=released())
    assert rolled_back.released_at == 2000.0
    assert not release.armed(RB001, rolled_back, 2010.0)


def test_without_after_release_window_always_armed() -> None:
    state = follow([(0.0, deployment("web-a", 1)), (120.0, deployment("web-a", 1))])
    assert release.armed(RB002, state, 130.0)
    assert release.armed(RB002, state, 10 * 86400.0)


def test_not_armed_while_an_incident_is_open_or_without_release() -> None:
    state = released()
    assert not release.armed(RB001, replace(state, incident="inc-1"), 1010.0)
    assert not release.armed(RB002, replace(state, incident="inc-1"), 1010.0)
    assert not release.armed(RB002, release.TargetState("shop", "web"), 0.0)


# -- detect.release: evaluate -----------------------------------------------------------------
def slow_error_rate(rb: model.Runbook) -> model.Runbook:
    """RB-001 with the error-rate condition checked every 30s (readiness stays at 10s)."""
    body = {"metadata": {"name": "p"}, "spec": {
        "runbookRef": {"name": "rb-001"}, "targets": {"selector": {}},
        "overrides": {"conditions": [{"name": "error-rate", "interval": "30s"}]}}}
    return model.effective_runbook(rb, model.Policy.parse(body))


def test_evaluate_runs_only_conditions_that_are_due() -> None:
    rb = slow_error_rate(RB001)
    state = released(at=0.0)
    readings = release.Readings(reading(pods(True, True)), values={"error-rate": 0.01})
    ran = {}
    for now in (0.0, 5.0, 10.0, 20.0, 30.0, 40.0):
        state, made, fired = release.evaluate(rb, state, readings, now)
        ran[now] = [c.condition for c in made]
        assert fired == []
    assert ran == {0.0: ["readiness", "error-rate"], 5.0: [], 10.0: ["readiness"],
                   20.0: ["readiness"], 30.0: ["readiness", "error-rate"], 40.0: ["readiness"]}
    assert release.next_due(rb, state, 45.0) == 5.0
    assert release.next_due(rb, release.TargetState("shop", "web"), 45.0) == 0.0


def test_evaluate_fires_after_three_failing_readiness_checks() -> None:
    state = released(at=0.0)
    stuck = release.Readings(reading(pods(False, False, True)), values={"error-rate": 0.0})
    outcomes, fired_at = [], []
    for now in range(0, 60, 10):                    # 0, 10 ... 50
        state, made, fired = release.evaluate(RB001, state, stuck, float(now))
        outcomes.append(next(c.outcome for c in made if c.condition == "readiness"))
        fired_at += [(now, c.condition) for c in fired]
    # Within the 30s grace period the two starting pods are not judged and the Ready one
    # passes; at 30, 40, 50 the two are late: three failures.
    assert outcomes == [Outcome.PASS] * 3 + [Outcome.FAIL] * 3
    assert fired_at == [(50, "readiness")]
    assert state.checks["readiness"].failures == 3


def test_evaluate_keeps_unknown_prometheus_values_unknown() -> None:
    state = released(at=0.0)
    ready = reading(pods(True, True))
    failing = release.Readings(ready, values={"error-rate": 0.5})
    down = release.Readings(ready, errors={"error-rate": "prometheus: connection refused"})
    nan = release.Readings(ready, values={"error-rate": math.nan})
    fired_at = []
    for now, readings in enumerate([failing, failing, down, nan, down, failing]):
        state, made, fired = release.evaluate(RB001, state, readings, now * 10.0)
        fired_at += [now for c in fired if c.condition == "error-rate"]
        if readings is down:
            check = next(c for c in made if c.condition == "error-rate")
            assert check.outcome is Outcome.UNKNOWN and check.value is None
            assert "connection refused" in check.message
            assert state.checks["error-rate"].last_outcome == "Unknown"
            assert state.checks["error-rate"].failures == 2
    assert fired_at == [5]          # the 3rd failure, the unknowns in between not counted


def test_evaluate_rises_sharply_needs_its_baseline() -> None:
    rb = runbook("rb-003")
    state = released(at=0.0)
    readings = release.Readings(values={"retry-queue": 900.0, "duplicate-deliveries": 5.0},
                                baselines={"retry-queue": 100.0})
    state, made, _ = release.evaluate(rb, state, readings, 0.0)
    outcomes = {c.condition: c.outcome for c in made}
    assert outcomes == {"retry-queue": Outcome.FAIL, "duplicate-deliveries": Outcome.UNKNOWN}


# -- a whole release, tick by tick ------------------------------------------------------------
def tick(rb: model.Runbook, state: release.TargetState, seen: release.DeploymentReading,
         readings: release.Readings, now: float) -> tuple[release.TargetState, list[Check]]:
    """What the policy timer does for one target: follow the release, then check if armed."""
    state = release.observe(state, seen, stable_for=rb.recovery.stable_for, now=now)
    if not release.armed(rb, state, now):
        return state, []
    state, _, fired = release.evaluate(rb, state, readings, now)
    return state, fired


def rollout(now: float, ready_at: tuple[float, ...],
            events: dict[float, int] | None = None) -> tuple[release.DeploymentReading,
                                                             release.Readings]:
    """web-b, released at 0: its pods become Ready at `ready_at`; probe failures per time."""
    pod_list = tuple(PodReading(f"web-b-{i}", now >= at, 0.0) for i, at in enumerate(ready_at))
    count = max((c for t, c in (events or {}).items() if t <= now), default=0)
    probes = (probe("web-b-0", count),) if count else ()
    complete = all(p.ready for p in pod_list)
    return (deployment("web-b", 2, complete=complete),
            release.Readings(ReleaseReading("web-b", pod_list, probes),
                             values={"error-rate": 0.01}))


def test_healthy_release_never_fires() -> None:
    rb = RB001
    state = follow([(-3600.0, deployment("web-a", 1)), (-3000.0, deployment("web-a", 1))])
    outcomes = set()
    for i in range(50):                              # every 10s: t = 0 ... 490
        now = i * 10.0
        seen, readings = rollout(now, ready_at=(12.0, 18.0, 25.0))
        state, fired = tick(rb, state, seen, readings, now)
        assert fired == [], f"fired at t={now}: {fired}"
        outcomes |= {c.last_outcome for c in state.checks.values()}
    # Complete at t=30, healthy for stableFor (2m) at t=150: the new fallback.
    assert state.last_healthy_replica_set == "web-b" and state.last_healthy_at == 150.0
    assert outcomes == {"Unknown", "Pass"}


def test_error_spike_within_the_after_release_window_fires() -> None:
    rb = RB001
    state = follow([(-3600.0, deployment("web-a", 1)), (-3000.0, deployment("web-a", 1))])
    fired_at = []
    for i in range(80):                              # t = 0 ... 790
        now = i * 10.0
        seen, readings = rollout(now, ready_at=(12.0, 18.0, 25.0))
        if now >= 600:                               # 10 minutes after the release
            readings = replace(readings, values={"error-rate": 0.5})
        state, fired = tick(rb, state, seen, readings, now)
        fired_at += [(now, c.condition) for c in fired]
    assert fired_at[:1] == [(620.0, "error-rate")]


def test_probe_failures_during_startup_grace_do_not_fire() -> None:
    rb = RB001
    state = follow([(-3600.0, deployment("web-a", 1)), (-3000.0, deployment("web-a", 1))])
    startup = {5.0: 1, 15.0: 2, 25.0: 3}      # the kubelet's probe fails until the app listens
    for i in range(50):
        now = i * 10.0
        seen, readings = rollout(now, ready_at=(28.0,), events=startup)
        state, fired = tick(rb, state, seen, readings, now)
        assert fired == [], f"fired at t={now}: {fired[0].message}"


def test_broken_release_fires_once_then_disarms() -> None:
    rb = RB001
    state = follow([(-3600.0, deployment("web-a", 1)), (-3000.0, deployment("web-a", 1))])
    fired_at = []
    for i in range(20):
        now = i * 10.0
        seen, readings = rollout(now, ready_at=(math.inf, 5.0))
        state, fired = tick(rb, state, seen, readings, now)
        if fired:
            fired_at.append(now)
            state = replace(state, incident="inc-1")       # the operator opens the incident
    assert fired_at == [50.0]
    assert state.last_healthy_replica_set == "web-a"     # still the one to roll back to


def test_target_state_is_not_shared_between_copies() -> None:
    # evaluate() returns new dicts: the state it was given stays as it was.
    state = released(at=0.0)
    before = copy.deepcopy(state)
    release.evaluate(RB001, state, release.Readings(reading(pods(False))), 40.0)
    assert state == before


# -- slow starts and broken releases under a fast-probing kubelet ------------------------------
def kubelet(now: float, starts: tuple[float, ...], ready_at: tuple[float, ...],
            period: float) -> tuple[release.DeploymentReading, release.Readings]:
    """web-b's pods as the kubelet reports them: pod i starts at `starts[i]` and is Ready from
    `ready_at[i]`; until then its readiness probe fails every `period` seconds, aggregated
    into one Event per pod (count = the failures so far)."""
    pod_list, events = [], []
    for i, (start, ready) in enumerate(zip(starts, ready_at, strict=True)):
        if now < start:
            continue
        is_ready = now >= ready
        pod_list.append(PodReading(f"web-b-{i}", is_ready, start, start))
        failures = math.ceil((min(now, ready) - start) / period)
        if failures:
            events.append(probe(f"web-b-{i}", failures))
    complete = len(pod_list) == len(starts) and all(p.ready for p in pod_list)
    return (deployment("web-b", 2, complete=complete),
            release.Readings(ReleaseReading("web-b", tuple(pod_list), tuple(events))))


def run_release(starts: tuple[float, ...], ready_at: tuple[float, ...], *, period: float,
                until: float = 300.0) -> tuple[list[float], list[str]]:
    """RB-001 (readiness every 10s, 3 failures, 30s grace) over a release at t=0."""
    state = follow([(-3600.0, deployment("web-a", 1)), (-3000.0, deployment("web-a", 1))])
    fired_at, outcomes = [], []
    for i in range(int(until / 10)):
        now = i * 10.0
        seen, readings = kubelet(now, starts, ready_at, period)
        state, fired = tick(RB001, state, seen, readings, now)
        outcomes.append(state.checks["readiness"].last_outcome)
        if fired:
            fired_at.append(now)
            state = replace(state, incident="inc-1")
    return fired_at, outcomes


@pytest.mark.parametrize("period", [1.0, 3.0, 10.0, 30.0])
def test_a_slow_start_ready_before_the_third_failing_check_never_fires(period: float) -> None:
    # Ready at 45s: the checks at 30s and 40s fail (not Ready past the 30s grace), the one at
    # 50s finds it Ready. The failures the kubelet reported until 45s are its start-up.
    fired_at, outcomes = run_release((0.0,), (45.0,), period=period)
    assert fired_at == []
    assert outcomes[3:6] == ["Fail", "Fail", "Pass"]


@pytest.mark.parametrize("period", [1.0, 10.0, 30.0])
def test_a_rolling_update_of_slow_pods_never_fires(period: float) -> None:
    # One pod after the other (maxSurge 1), each Ready 45s after its start.
    fired_at, outcomes = run_release((0.0, 45.0, 90.0), (45.0, 90.0, 135.0), period=period)
    assert fired_at == []
    # Not Ready past its grace: web-b-0 at 30 and 40, web-b-1 at 80, web-b-2 at 120 and 130.
    failing = [i * 10 for i, outcome in enumerate(outcomes) if outcome == "Fail"]
    assert failing == [30, 40, 80, 120, 130] and outcomes[-1] == "Pass"


@pytest.mark.parametrize("period", [1.0, 30.0])
def test_a_broken_release_fires_within_n_intervals_after_grace(period: float) -> None:
    fired_at, _ = run_release((0.0, 0.0), (math.inf, math.inf), period=period)
    # The 3rd failing check: at 30s (grace), 40s and 50s: within 3 x 10s + 30s.
    assert fired_at == [50.0]


def test_a_pod_that_stays_unready_fires_even_beside_ready_ones() -> None:
    fired_at, _ = run_release((0.0, 45.0), (45.0, math.inf), period=1.0)
    # web-b-1 starts at 45s and is late from 75s: 80, 90, 100.
    assert fired_at == [100.0]


def test_a_second_slow_pod_late_just_after_the_first_is_ready_never_fires() -> None:
    # web-b-0 late at 30 and 40, Ready at 45; web-b-1 (started at 15) late at 50 and 60,
    # Ready at 70. Each pod fails two checks: web-b-0's do not add to web-b-1's.
    fired_at, outcomes = run_release((0.0, 15.0), (45.0, 70.0), period=1.0)
    assert fired_at == []
    assert outcomes[3:8] == ["Fail", "Fail", "Fail", "Fail", "Pass"]
