"""Alertmanager end to end, all real: the exporter sets a series, the session's Prometheus fires a
rule on it and sends the alert to the session's Alertmanager, which posts it (bearer token) to
the operator's receiver; the runbook's `alert` condition opens the incident, and the alert's
resolution resolves it. A silence created through Alertmanager's API opens the incident
silenced: planned, nothing frozen, nobody paged."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import yaml

from e2e.conftest import GROUP, ROLES, VERSION, Cluster, ownership, secret
from harness import objects
from harness.procs import HarnessError, free_port, wait_for

pytestmark = pytest.mark.cluster

ALERT = "MCTestReplicasMismatch"
TOKEN = "a-token-only-alertmanager-knows"
SERIES = "mc_test_replicas_mismatch"


def runbook() -> dict:
    """A runbook triggered by the alert alone: freeze the Deployment, page its owner."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Runbook",
        "metadata": {"name": "rb-alert"},
        "spec": {
            "id": "RB-901", "title": "Replicas mismatch", "severity": "SEV3",
            "trigger": {"anyOf": [{"name": "replicas-mismatch", "alert": {
                "alertname": ALERT, "labels": {"severity": "page"},
                "matchers": [{"name": "team", "value": "shop|pay", "isRegex": True}],
                "interval": "1s"}}]},
            "firstResponse": {"steps": [
                {"id": "freeze", "action": "freezeDeployments",
                 "freezeDeployments": {"scope": "Deployment"}},
                {"id": "page", "action": "notify", "notify": {"roles": ["release-owner"]}}]},
            "escalation": {"page": ["release-owner"], "pageWithin": "5m"},
            "recovery": {"slo": "10m", "stableFor": "2s"},
        },
    }


def policy(**spec: object) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "IncidentPolicy",
            "metadata": {"name": "checkout-alerts"},
            "spec": {"runbookRef": {"name": "rb-alert"},
                     "targets": {"selector": {"matchLabels": {"app": "checkout"}}},
                     "mode": "enforce", "ownershipRef": {"name": "checkout"}, **spec}}


@pytest.fixture
def wired(env, crds, cluster, receiver, operator_factory, alertmanager, tmp_path):
    """The runbook, the ownership paging the receiver, a rule firing on the series of this
    namespace, and an operator whose receiver the session's Alertmanager posts to."""
    namespace = cluster.namespace
    cluster.create(runbook())
    cluster.create(secret("pager-routes", **{role: receiver.url(f"/{role}") for role in ROLES}))
    cluster.create(ownership("checkout", {role: role for role in ROLES}))
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": f"mc-test-{namespace}", "rules": [{
        "alert": ALERT, "expr": f'{SERIES}{{namespace="{namespace}"}} > 0', "for": "0s",
        "labels": {"severity": "page", "team": "shop"},
        "annotations": {"summary": "checkout runs fewer replicas than it wants"}}]}]}))
    env.prometheus.add_rules(f"alerts-{namespace}", rules)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    port = free_port()
    operator = operator_factory("--alertmanager-port", str(port),
                                "--alertmanager-token-file", str(token))
    alertmanager.receive_at(f"http://127.0.0.1:{port}/alertmanager", TOKEN)
    gauge = env.exporter.gauge(SERIES, {"namespace": namespace, "deployment": "checkout"})
    gauge.set(0)
    try:
        yield gauge, port, operator
    finally:
        gauge.set(0)
        alertmanager.receive_at(None)
        env.prometheus.remove_rules(f"alerts-{namespace}")


def guarding(cluster: Cluster) -> None:
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0"))
    wait_for(lambda: cluster.target_state("checkout-alerts", "checkout").get("checks", {})
             .get("replicas-mismatch", {}).get("lastOutcome") == "Unknown", timeout=60,
             what="the alert condition checked (unknown: no report yet)")


def one_incident(cluster: Cluster, alertmanager, operator) -> dict:
    """The incident the alert opens; if none does, what each part saw (for the report)."""
    try:
        return cluster.one_incident(timeout=60)
    except HarnessError as exc:
        state = cluster.target_state("checkout-alerts", "checkout")
        raise AssertionError(f"{exc}\ntarget state: {state}\nAlertmanager's alerts: "
                             f"{alertmanager.alerts()}\noperator log:\n"
                             f"{operator.logs()[-4000:]}") from None


def timeline(incident: dict) -> list[str]:
    return [f"{e['type']}: {e['message']}" for e in incident["status"].get("timeline") or []]


def refusals(port: int) -> None:
    """What the live receiver answers to a wrong token and to payloads that are not
    Alertmanager's: 401, and 400 with the reason."""
    def post(body: bytes, token: str | None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/alertmanager", data=body,
                                         method="POST")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    good = json.dumps({"version": "4", "alerts": []}).encode()
    assert post(good, None)[0] == 401
    assert post(good, "wrong")[0] == 401
    status, text = post(b"{not json", TOKEN)
    assert status == 400 and "not JSON" in text
    status, text = post(json.dumps({"version": "3", "alerts": []}).encode(), TOKEN)
    assert status == 400 and "version" in text
    status, text = post(json.dumps({"version": "4", "alerts": [{"labels": {}}]}).encode(),
                        TOKEN)
    assert status == 400 and "alerts[0].labels.alertname: required" in text
    assert post(good, TOKEN) == (200, '{"received": 0}')


def test_an_alert_opens_the_incident_and_its_resolution_resolves_it(wired, cluster, receiver,
                                                                   alertmanager):
    gauge, port, operator = wired
    cluster.create(policy())
    guarding(cluster)
    started = time.monotonic()
    gauge.set(1)
    incident = one_incident(cluster, alertmanager, operator)
    opened_after = time.monotonic() - started
    name = incident["metadata"]["name"]
    evidence = wait_for(lambda: cluster.get("Incident", name).get("status", {}).get("evidence"),
                        timeout=30, what="the incident's evidence")
    assert evidence[0]["condition"] == "replicas-mismatch"
    assert evidence[0]["outcome"] == "Fail"
    assert f"alert {ALERT} firing since" in evidence[0]["message"]
    assert "fewer replicas" in evidence[0]["message"]
    assert incident["spec"]["mode"] == "enforce"
    assert any(f"alert {ALERT} firing" in line for line in timeline(cluster.get("Incident", name)))
    receiver.wait_for_requests("/release-owner", 1, timeout=60)   # paged for real
    started = time.monotonic()
    gauge.set(0)
    done = cluster.wait_phase(name, "Resolved", timeout=90)
    resolved_after = time.monotonic() - started
    assert any(line.startswith("Resolved:") and "passing: replicas-mismatch" in line
               for line in timeline(done)), timeline(done)
    check = cluster.target_state("checkout-alerts", "checkout")["checks"]["replicas-mismatch"]
    assert check["lastOutcome"] == "Pass"
    assert check["lastMessage"].startswith(f"alert {ALERT} resolved"), check
    print(f"\nalert to incident {opened_after:.1f}s; resolution to Resolved {resolved_after:.1f}s")
    refusals(port)
    operator.check_alive()   # nothing a caller sends stops it


def test_a_silence_opens_the_incident_silenced(wired, cluster, receiver, alertmanager):
    gauge, _, operator = wired
    # The alert itself is not silenced (it has no runbook label), the operator's action is.
    silence = alertmanager.silence({"namespace": cluster.namespace, "deployment": "checkout",
                                    "runbook": "RB-901"},
                                   created_by="ana@example.com", comment="planned failover")
    cluster.create(policy(alertmanager={"respectSilences": True, "url": alertmanager.url}))
    guarding(cluster)
    gauge.set(1)
    incident = one_incident(cluster, alertmanager, operator)
    name = incident["metadata"]["name"]
    assert incident["spec"]["mode"] == "silenced"

    def planned() -> dict | None:
        body = cluster.get("Incident", name)
        steps = {s["id"]: s for s in body.get("status", {}).get("steps") or []}
        return body if all(steps.get(i, {}).get("state") in ("Planned", "Succeeded", "Skipped")
                           for i in ("freeze", "page")) else None

    body = wait_for(planned, timeout=60, what="the steps of the silenced incident planned")
    recorded = body["status"]["silence"]
    assert recorded["id"] == silence
    assert recorded["createdBy"] == "ana@example.com"
    assert recorded["comment"] == "planned failover"
    assert recorded["endsAt"]
    assert any(line.startswith("Silenced: silenced by Alertmanager silence " + silence)
               for line in timeline(body)), timeline(body)
    labels = cluster.deployment("checkout").metadata.labels or {}
    assert not any(k.endswith("frozen") for k in labels), labels
    # The page the incident would have sent is recorded as planned, and never sent.
    pages = wait_for(lambda: [p for p in cluster.get("Incident", name)["status"].get("pages")
                              or [] if p.get("outcome") == "planned"],
                     timeout=30, what="the owner's page recorded as planned")
    assert {p["role"] for p in pages} >= {"release-owner"}
    assert receiver.requests("/release-owner") == []
    assert cluster.get("Incident", name)["status"]["phase"] == "Detected"
