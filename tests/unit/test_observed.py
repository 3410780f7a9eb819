"""Incident and policy state as gauges (observed.py), and the split of pages from stakeholder
updates (metrics.py): what a scrape shows at a given moment."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from missioncontrol import metrics, observed, timeutil
from missioncontrol.observed import Source, StateCollector

T0 = 1_700_000_000.0


def incident(name: str, *, phase: str = "Mitigating", deadline: float = T0 + 600,
             escalated: bool = False, overdue: bool = False, freeze: str | None = None,
             severity: str = "SEV2") -> dict:
    conditions = [{"type": "UpdateOverdue", "status": "True" if overdue else "False",
                   "reason": "Overdue" if overdue else "OnCadence"}]
    status = {"phase": phase, "mode": "enforce", "severity": severity,
              "detectedAt": timeutil.iso_precise(T0),
              "slo": {"deadline": timeutil.iso_precise(deadline)},
              "escalated": escalated, "conditions": conditions}
    if freeze:
        status["freeze"] = {"active": True, "scope": freeze, "objects": ["Namespace/shop"]}
    return {"metadata": {"namespace": "shop", "name": name},
            "spec": {"runbook": {"name": "rb-001", "id": "RB-001"}, "mode": "enforce",
                     "target": {"namespace": "shop", "name": "checkout"}, "owner": "ada"},
            "status": status}


def policy(name: str, *, ready: str | None = "True", reason: str = "Guarding",
           last_tick: float | None = T0, mode: str = "enforce") -> dict:
    status: dict = {}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": reason}]
    if last_tick is not None:
        status["lastTick"] = timeutil.iso_precise(last_tick)
    return {"metadata": {"namespace": "shop", "name": name}, "spec": {"mode": mode},
            "status": status}


def samples(families) -> dict[tuple[str, tuple], float]:
    """(name, sorted labels) -> value, through the text format Prometheus reads."""
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):
            return families

    registry.register(Fixed())
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def state(incidents=(), policies=(), now=T0 + 60):
    return samples(observed.families([observed.incident_facts(b) for b in incidents],
                                     [observed.policy_facts(b) for b in policies], now=now))


def key(**labels: str) -> tuple:
    return tuple(sorted(labels.items()))


INC = {"namespace": "shop", "runbook": "RB-001"}


def test_each_open_incident_has_its_slo_clock_and_flags():
    got = state([incident("a", escalated=True, overdue=True), incident("b", deadline=T0 + 30)],
                now=T0 + 60)
    assert got[("missioncontrol_incident_slo_remaining_seconds", key(incident="a", **INC))] \
        == 540
    assert got[("missioncontrol_incident_slo_remaining_seconds", key(incident="b", **INC))] \
        == -30
    assert got[("missioncontrol_incident_slo_breached", key(incident="a", **INC))] == 0
    assert got[("missioncontrol_incident_slo_breached", key(incident="b", **INC))] == 1
    assert got[("missioncontrol_incident_escalated", key(incident="a", **INC))] == 1
    assert got[("missioncontrol_incident_escalated", key(incident="b", **INC))] == 0
    assert got[("missioncontrol_incident_update_overdue", key(incident="a", **INC))] == 1
    assert got[("missioncontrol_incident_detected_timestamp_seconds",
                key(incident="a", **INC))] == T0
    assert got[("missioncontrol_incidents_open", key(runbook="RB-001", severity="SEV2",
                                                     phase="Mitigating", mode="enforce"))] == 2
    assert got[("missioncontrol_incident_info", key(
        incident="a", severity="SEV2", phase="Mitigating", mode="enforce",
        target="shop/checkout", owner="ada", **INC))] == 1


def test_the_breach_is_seen_at_the_scrape_not_at_the_engines_next_round():
    body = incident("a", deadline=T0 + 30)   # status.slo.breached not written yet
    assert state([body], now=T0 + 29)[("missioncontrol_incident_slo_breached",
                                       key(incident="a", **INC))] == 0
    assert state([body], now=T0 + 30)[("missioncontrol_incident_slo_breached",
                                       key(incident="a", **INC))] == 1


def test_a_resolved_or_closed_incident_has_no_series_left():
    got = state([incident("gone", phase="Resolved", freeze="Namespace"),
                 incident("closed", phase="Closed")])
    assert not [k for k in got if ("incident", "gone") in k[1] or ("incident", "closed") in k[1]]
    assert not [k for k in got if k[0] == "missioncontrol_incidents_open"]
    # Its freeze, still held until it is lifted, is counted.
    assert got[("missioncontrol_freezes_active", key(scope="Namespace"))] == 1
    assert got[("missioncontrol_freezes_active", key(scope="Deployment"))] == 0


def test_the_index_keeps_open_incidents_and_held_freezes_only():
    assert observed.tracked({"phase": "Detected"})
    assert observed.tracked({"phase": "Resolved", "freeze": {"active": True}})
    assert not observed.tracked({"phase": "Resolved", "freeze": {"active": False}})
    assert not observed.tracked({"phase": "Closed"})
    assert not observed.tracked({"phase": "Rejected"})
    assert not observed.tracked(None)


def test_policies_by_ready_reason_and_mode_and_the_tick_of_ready_ones():
    got = state(policies=[policy("a"), policy("b"), policy("c", mode="dryRun"),
                          policy("d", ready="False", reason="RunbookNotFound"),
                          policy("e", ready=None, last_tick=None)])
    assert got[("missioncontrol_policies", key(ready="True", reason="Guarding",
                                               mode="enforce"))] == 2
    assert got[("missioncontrol_policies", key(ready="True", reason="Guarding",
                                               mode="dryRun"))] == 1
    assert got[("missioncontrol_policies", key(ready="False", reason="RunbookNotFound",
                                               mode="enforce"))] == 1
    assert got[("missioncontrol_policies", key(ready="Unknown", reason="Pending",
                                               mode="enforce"))] == 1
    ticks = {dict(k[1])["policy"]: v for k, v in got.items()
             if k[0] == "missioncontrol_policy_last_tick_timestamp_seconds"}
    # A policy that is not Ready guards nothing and ticks nothing: it cannot look stale.
    assert ticks == {"a": T0, "b": T0, "c": T0}


class Loop:
    """A running event loop in a thread, as the operator's, for the collector to read on."""

    def __enter__(self) -> asyncio.AbstractEventLoop:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self.loop

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def collected(collector: StateCollector) -> set[str]:
    return {family.name for family in collector.collect()}


def test_the_collector_exports_from_the_leader_only_and_reads_on_the_loop():
    leading = [True]
    seen_threads = []

    def read():
        seen_threads.append(threading.current_thread())
        return [observed.incident_facts(incident("a"))], []

    collector = StateCollector(clock=lambda: T0)
    assert collected(collector) == set()          # not attached: nothing
    with Loop() as loop:
        collector.attach(Source(loop=loop, read=read, leading=lambda: leading[0]))
        assert "missioncontrol_incident_slo_remaining_seconds" in collected(collector)
        assert seen_threads and seen_threads[-1] is not threading.current_thread()
        leading[0] = False
        assert collected(collector) == set()      # a standby: the leader speaks


def test_a_loop_that_does_not_answer_exports_no_state(monkeypatch):
    monkeypatch.setattr(observed, "READ_TIMEOUT", 0.05)
    loop = asyncio.new_event_loop()               # never run: it cannot answer
    try:
        collector = StateCollector()
        collector.attach(Source(loop=loop, read=lambda: ([], []), leading=lambda: True))
        assert collected(collector) == set()
    finally:
        # The read was handed to the loop and cancelled: let the loop drop it, as a live one
        # would, so the coroutine is not left unawaited.
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def value(counter, **labels) -> float:
    return counter.labels(**labels)._value.get()


def test_pages_are_counted_apart_from_updates_and_channel_announcements():
    before = (value(metrics._PAGES, route="Webhook", kind="page", outcome="delivered"),
              value(metrics.STAKEHOLDER_UPDATES, route="Webhook", outcome="delivered"),
              value(metrics.CHANNEL_ANNOUNCEMENTS, route="Slack", outcome="delivered"))
    metrics.PAGES.labels(route="Webhook", kind="page", outcome="delivered").inc()
    metrics.PAGES.labels(route="Webhook", kind="update", outcome="delivered").inc()
    metrics.PAGES.labels(route="Webhook", kind="update", outcome="delivered").inc()
    metrics.PAGES.labels(route="Slack", kind="channel", outcome="delivered").inc()
    after = (value(metrics._PAGES, route="Webhook", kind="page", outcome="delivered"),
             value(metrics.STAKEHOLDER_UPDATES, route="Webhook", outcome="delivered"),
             value(metrics.CHANNEL_ANNOUNCEMENTS, route="Slack", outcome="delivered"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 2, 1]
    pages = {s.labels["kind"] for s in metrics._PAGES.collect()[0].samples}
    assert "update" not in pages and "channel" not in pages


def test_an_incident_waiting_for_an_approval_says_so_until_it_is_given():
    waiting = incident("a")
    waiting["status"]["awaitingApproval"] = "rollback"
    got = state([waiting, incident("b")])
    assert got[("missioncontrol_incident_awaiting_approval", key(incident="a", **INC))] == 1
    assert got[("missioncontrol_incident_awaiting_approval", key(incident="b", **INC))] == 0
    resolved = incident("c", phase="Resolved")
    resolved["status"]["awaitingApproval"] = "rollback"
    assert not [k for k in state([resolved]) if k[0] == "missioncontrol_incident_awaiting_approval"]
