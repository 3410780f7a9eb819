"""The `alert` trigger condition: Alertmanager's payload read (and refused when it is not one),
the bounded store, the check judged from what was received, and the receiver's answers."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from missioncontrol import alertreceiver, model, timeutil
from missioncontrol.alerts import AlertStore, PayloadError, parse_payload
from missioncontrol.detect import signals
from missioncontrol.detect.outcome import Outcome
from missioncontrol.detect.release import Readings, TargetState, evaluate
from missioncontrol.parse import ModelError, Reader

T0 = 1_800_000_000.0


def payload(*alerts: dict, version: str = "4") -> dict:
    return {"version": version, "status": "firing", "receiver": "operator",
            "groupLabels": {}, "commonLabels": {}, "alerts": list(alerts)}


def alert(status: str = "firing", fingerprint: str = "f1", **labels: str) -> dict:
    return {"status": status, "fingerprint": fingerprint,
            "labels": {"alertname": "KubeDeploymentReplicasMismatch", "namespace": "shop",
                       "deployment": "checkout", **labels},
            "annotations": {"summary": "2/3 replicas"},
            "startsAt": "2027-01-15T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}


def condition(**fields) -> model.Condition:
    return model.Condition.parse(Reader({"name": "mismatch", "alert": {
        "alertname": "KubeDeploymentReplicasMismatch", **fields}}, "spec.trigger.anyOf[0]"))


# -- the payload ------------------------------------------------------------------------------
def test_a_payload_gives_one_report_per_alert() -> None:
    (firing, resolved) = parse_payload(payload(alert(), alert("resolved", "f2")), now=T0)
    assert firing.firing and not resolved.firing
    assert firing.alertname == "KubeDeploymentReplicasMismatch"
    assert dict(firing.labels)["deployment"] == "checkout"
    assert firing.received_at == T0 and firing.summary == "2/3 replicas"
    assert firing.starts_at == timeutil.parse("2027-01-15T08:00:00Z")


@pytest.mark.parametrize(("data", "says"), [
    ([], "expected a JSON object"),
    (payload(version="3"), "payload version '3'"),
    ({"version": "4"}, "alerts: expected a list"),
    (payload("x"), "alerts[0]: expected an object"),
    (payload({"labels": {"alertname": "A"}, "status": "pending"}),
     "alerts[0].status: expected firing or resolved"),
    (payload({"labels": {}, "status": "firing"}), "alerts[0].labels.alertname: required"),
    (payload({"labels": {"alertname": "A", "n": 1}, "status": "firing"}),
     "alerts[0].labels: expected a map of string to string"),
    (payload({"labels": {"alertname": "A"}, "status": "firing", "startsAt": "yesterday"}),
     "alerts[0].startsAt: 'yesterday' is not an RFC 3339"),
])
def test_a_payload_that_is_not_alertmanagers_is_refused_with_the_reason(data, says) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload(data, now=T0)
    assert says in str(caught.value)


# -- the store --------------------------------------------------------------------------------
def test_the_store_keeps_the_latest_report_per_alert_and_finds_the_targets_own() -> None:
    store = AlertStore()
    store.put(parse_payload(payload(alert(), alert(fingerprint="other", deployment="cart")),
                            now=T0), now=T0)
    store.put(parse_payload(payload(alert("resolved")), now=T0 + 5), now=T0 + 5)
    detector = condition().detector
    (report,) = store.reports(detector, ("shop", "checkout"))
    assert not report.firing and report.received_at == T0 + 5
    assert len(store.reports(detector, ("shop", "cart"))) == 1
    assert store.reports(detector, ("other", "checkout")) == ()


def test_the_store_is_bounded_dropping_the_least_recently_reported() -> None:
    store = AlertStore(max_alerts=3)
    for i in range(5):
        store.put(parse_payload(payload(alert(fingerprint=f"f{i}", pod=str(i))), now=T0 + i),
                  now=T0 + i)
    assert len(store) == 3
    kept = {r.fingerprint for r in store.reports(condition().detector, ("shop", "checkout"))}
    assert kept == {"f2", "f3", "f4"}


def test_the_store_drops_reports_older_than_its_retention() -> None:
    store = AlertStore(retention=60.0)
    store.put(parse_payload(payload(alert()), now=T0), now=T0)
    store.put(parse_payload(payload(alert(fingerprint="new", pod="b")), now=T0 + 61),
              now=T0 + 61)
    assert {r.fingerprint for r in store.reports(condition().detector,
                                                 ("shop", "checkout"))} == {"new"}


def test_the_condition_reads_its_own_label_names_and_matchers() -> None:
    store = AlertStore()
    store.put(parse_payload(payload(
        {**alert(), "labels": {"alertname": "KubeDeploymentReplicasMismatch",
                               "exported_namespace": "shop", "workload": "checkout",
                               "severity": "critical"}}), now=T0), now=T0)
    mine = condition(namespaceLabel="exported_namespace", deploymentLabel="workload",
                     labels={"severity": "critical"})
    assert len(store.reports(mine.detector, ("shop", "checkout"))) == 1
    warning_only = condition(namespaceLabel="exported_namespace", deploymentLabel="workload",
                             matchers=[{"name": "severity", "value": "warn.*",
                                        "isRegex": True}])
    assert store.reports(warning_only.detector, ("shop", "checkout")) == ()
    not_critical = condition(namespaceLabel="exported_namespace", deploymentLabel="workload",
                             matchers=[{"name": "severity", "value": "critical",
                                        "isEqual": False}])
    assert store.reports(not_critical.detector, ("shop", "checkout")) == ()


# -- the check --------------------------------------------------------------------------------
def report(firing: bool, at: float) -> signals.AlertReport:
    return signals.AlertReport("f1", "KubeDeploymentReplicasMismatch", (), firing, at, T0 - 60,
                               "2/3 replicas")


def test_firing_fails_resolved_passes_and_no_report_is_unknown() -> None:
    detector = condition().detector
    failed = signals.alert("m", detector, (report(True, T0),), T0 + 1)
    assert failed.outcome is Outcome.FAIL and failed.value == 1.0
    assert failed.message.startswith("alert KubeDeploymentReplicasMismatch firing since ")
    assert failed.message.endswith(": 2/3 replicas")
    assert signals.alert("m", detector, (report(False, T0),), T0 + 1).outcome is Outcome.PASS
    never = signals.alert("m", detector, (), T0)
    assert never.outcome is Outcome.UNKNOWN and "no report of alert" in never.message


def test_a_report_older_than_stale_after_is_unknown_not_failing_or_healthy() -> None:
    detector = condition(staleAfter="10m").detector
    assert detector.stale_after == 600.0
    for firing in (True, False):
        old = signals.alert("m", detector, (report(firing, T0),), T0 + 601)
        assert old.outcome is Outcome.UNKNOWN, old
        assert "longer than staleAfter 10m" in old.message
    assert signals.alert("m", detector, (report(True, T0),), T0 + 599).outcome is Outcome.FAIL


def test_a_firing_alert_beside_a_resolved_one_fails() -> None:
    other = signals.AlertReport("f2", "KubeDeploymentReplicasMismatch", (), False, T0, None)
    check = signals.alert("m", condition().detector, (other, report(True, T0)), T0)
    assert check.outcome is Outcome.FAIL


def test_for_and_consecutive_failures_stay_the_runbooks() -> None:
    """The alert condition goes through the same detector state as any other: `for` needs
    the alert firing that long over checks, consecutiveFailures that many checks."""
    for fields, needed in (({"consecutiveFailures": 3, "interval": "1s"}, 3),
                           ({"for": "2s", "interval": "1s"}, 3)):
        cond = condition(**fields)
        runbook = model.Runbook.parse(_runbook(cond))
        state = TargetState("shop", "checkout", revision=1, replica_set="rs1")
        fired_at = None
        for tick in range(5):
            state, _, fired = evaluate(runbook, state, Readings(alerts={
                "mismatch": (report(True, T0 + tick),)}), T0 + tick)
            if fired and fired_at is None:
                fired_at = tick + 1
        assert fired_at == needed, (fields, fired_at)


def _runbook(cond: model.Condition) -> dict:
    return {"metadata": {"name": "rb", "namespace": "shop"}, "spec": {
        "id": "RB-9", "title": "t", "trigger": {"anyOf": [{
            "name": cond.name, "alert": {"alertname": cond.detector.alertname,
                                         **({"consecutiveFailures":
                                             cond.detector.consecutive_failures}
                                            if cond.detector.sustain is None else
                                            {"for": f"{cond.detector.sustain:g}s"}),
                                         "interval": "1s"}}]},
        "firstResponse": {"steps": [{"id": "p", "action": "notify",
                                     "notify": {"roles": ["release-owner"]}}]},
        "escalation": {"page": ["release-owner"]}, "recovery": {"slo": "10m"}}}


@pytest.mark.parametrize(("fields", "says"), [
    ({"namespaceLabel": "kubernetes.io/ns"}, "is not a Prometheus label name"),
    ({"matchers": [{"name": "team", "value": "(", "isRegex": True}]},
     "is not a regular expression"),
    ({"staleAfter": "1s", "interval": "5s"}, "must not be shorter than interval"),
])
def test_a_bad_alert_condition_names_its_field(fields, says) -> None:
    with pytest.raises(ModelError) as caught:
        condition(**fields)
    assert says in str(caught.value)


def test_a_policy_may_override_the_alert_conditions_label_names_and_staleness() -> None:
    runbook = model.Runbook.parse(_runbook(condition()))
    policy = model.Policy.parse({"metadata": {"name": "p", "namespace": "shop"}, "spec": {
        "runbookRef": {"name": "rb"}, "targets": {"selector": {"matchLabels": {"a": "b"}}},
        "overrides": {"conditions": [{"name": "mismatch", "staleAfter": "30m",
                                      "deploymentLabel": "workload"}]}}})
    detector = model.effective_runbook(runbook, policy).trigger.conditions[0].detector
    assert (detector.stale_after, detector.deployment_label, detector.namespace_label) == (
        1800.0, "workload", "namespace")


# -- the receiver -----------------------------------------------------------------------------
@pytest.fixture
def token(tmp_path):
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    return path


async def _client(store: AlertStore, token, leading: bool) -> TestClient:
    app = alertreceiver.app(store, token_file=str(token), clock=lambda: T0,
                            leading=lambda: leading)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_receiver_stores_what_an_authorized_alertmanager_sends(token) -> None:
    store = AlertStore()
    client = await _client(store, token, leading=True)
    try:
        body = json.dumps(payload(alert()))
        refused = await client.post("/alertmanager", data=body)
        assert refused.status == 401
        refused = await client.post("/alertmanager", data=body,
                                    headers={"Authorization": "Bearer wrong"})
        assert refused.status == 401 and len(store) == 0
        bad = await client.post("/alertmanager", data="[1",
                                headers={"Authorization": "Bearer s3cret"})
        assert bad.status == 400 and "not JSON" in (await bad.json())["error"]
        ok = await client.post("/alertmanager", data=body,
                               headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200 and len(store) == 1
        token.write_text("rotated")   # a rotated Secret is used at once
        again = await client.post("/alertmanager", data=body,
                                  headers={"Authorization": "Bearer s3cret"})
        assert again.status == 401
    finally:
        await client.close()


async def test_a_standby_keeps_the_alerts_and_hands_the_notification_on(token) -> None:
    store = AlertStore()
    client = await _client(store, token, leading=False)
    try:
        answer = await client.post("/alertmanager", data=json.dumps(payload(alert())),
                                   headers={"Authorization": "Bearer s3cret"})
        # 503: Alertmanager retries; the connection closed so the retry is balanced anew.
        assert answer.status == 503
        assert answer.headers.get("Connection", "").lower() == "close"
        assert len(store) == 1
    finally:
        await client.close()


async def test_without_a_token_file_nothing_is_accepted(tmp_path) -> None:
    client = await _client(AlertStore(), tmp_path / "missing", leading=True)
    try:
        answer = await client.post("/alertmanager", data=json.dumps(payload()),
                                   headers={"Authorization": "Bearer "})
        assert answer.status == 401
    finally:
        await client.close()


def test_the_receiver_never_runs_without_a_token() -> None:
    from missioncontrol import cli

    args = cli.parser().parse_args(["run", "--alertmanager-port", "9095"])
    with pytest.raises(SystemExit, match="needs --alertmanager-token-file"):
        cli._run(args)
    args = cli.parser().parse_args(["run", "--alertmanager-port", "9095",
                                    "--alertmanager-token-file", "t",
                                    "--alertmanager-tls-cert-file", "c"])
    with pytest.raises(SystemExit, match="go together"):
        cli._run(args)
