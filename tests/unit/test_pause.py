"""A policy's maintenance window (pause.py): a function of the policy and the time, and the
guard's pass honouring it over a fake cluster and a fake clock."""

from __future__ import annotations

import copy

import yaml

from missioncontrol import guard, pause, timeutil
from missioncontrol.detect.release import TargetState
from missioncontrol.detect.state import ConditionState
from missioncontrol.model import Policy, Runbook
from unit.test_guard import RUNBOOKS, FakeKube, broken_release, policy_body

T0 = timeutil.parse("2030-01-01T10:00:00Z")


def paused_body(until: float | None, reason: str = "db migration", by: str = "ada") -> dict:
    body = policy_body()
    if until is not None:
        body["spec"].update(pausedUntil=timeutil.iso(until), pauseReason=reason, pausedBy=by)
    return body


def test_a_pause_holds_until_its_time_and_then_ends_by_itself() -> None:
    policy = Policy.parse(paused_body(T0 + 3600))
    assert pause.in_force(policy, T0) == pause.Pause(T0 + 3600, "db migration", "ada")
    assert pause.in_force(policy, T0 + 3599.9) is not None
    assert pause.in_force(policy, T0 + 3600) is None
    assert pause.in_force(Policy.parse(paused_body(None)), T0) is None


def test_a_pause_is_described_without_a_countdown() -> None:
    described = pause.Pause(T0 + 7200, "db migration", "ada").describe()
    assert described == "paused until 2030-01-01T12:00:00Z by ada: db migration"
    assert pause.Pause(T0 + 60).describe() == "paused until 2030-01-01T10:01:00Z"


def test_a_bad_pause_time_names_its_field() -> None:
    body = paused_body(None)
    body["spec"]["pausedUntil"] = "tomorrow"
    try:
        Policy.parse(body)
    except ValueError as exc:
        assert "spec.pausedUntil" in str(exc) and "RFC 3339" in str(exc)
    else:
        raise AssertionError("accepted")


def _runbook() -> Runbook:
    (path,) = RUNBOOKS.glob("rb-001-*.yaml")
    return Runbook.parse(yaml.safe_load(path.read_text()))


def test_held_names_the_armed_targets_whose_trigger_fires() -> None:
    runbook = _runbook()
    failing = ConditionState(failures=3, last_outcome="Fail", last_check=T0)
    firing = TargetState("shop", "checkout", revision=2, replica_set="checkout-b",
                         released_at=T0 - 60, checks={"readiness": failing})
    counting = TargetState("shop", "cart", revision=2, replica_set="cart-b", released_at=T0,
                           checks={"readiness": ConditionState(failures=2)})
    old = TargetState("shop", "search", revision=2, replica_set="search-b",
                      released_at=T0 - 7 * 86400, checks={"readiness": failing})
    assert pause.held(runbook, [counting, firing, old], T0) == ["shop/checkout (readiness)"]


async def test_a_paused_policy_opens_nothing_and_opens_the_incident_once_it_ends() -> None:
    kube, now = FakeKube(broken_release()), [T0]
    ctx = guard.Context(kube, None, lambda: now[0])
    body = paused_body(T0 + 10)
    status = body["status"]
    results = []
    for _ in range(8):            # 0..7 s, every check failing: the pause holds it back
        result = await guard.tick(ctx, {**copy.deepcopy(body), "status": status})
        results.append(result)
        status = result.status
        now[0] += 1.0
    assert kube.created == []
    last = results[-1]
    assert (last.ready.ok, last.ready.reason) == (True, "Paused")
    assert last.ready.message.startswith(
        "paused until 2030-01-01T10:00:10Z by ada: db migration; guarding 1 Deployment(s)")
    assert last.held == ["shop/checkout (readiness)"]
    assert "held back: an incident for shop/checkout (readiness)" in last.ready.message
    assert status["targets"][0]["checks"]["readiness"]["failures"] >= 3
    assert last.wait <= 3.0 + 0.01        # the pass after the window is on time

    opened_at = None
    for _ in range(6):            # 8..13 s: the window ends at 10 s
        result = await guard.tick(ctx, {**copy.deepcopy(body), "status": status})
        status = result.status
        if result.opened:
            opened_at = now[0]
            break
        assert result.ready.reason == "Paused"
        now[0] += 1.0
    assert opened_at == T0 + 10, opened_at
    assert result.ready.reason == "Guarding" and result.held == []
    (incident,) = kube.created
    assert incident["spec"]["target"]["name"] == "checkout"
