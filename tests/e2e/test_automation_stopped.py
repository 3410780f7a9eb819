"""An incident whose IncidentPolicy, Runbook or target Deployment disappears mid-incident (a
GitOps prune, a hand-deleted object): it says so (timeline, AutomationStopped condition, a Warning
Event), lifts the freeze it holds, pages its people once, and stays open for them."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from e2e.conftest import GROUP, VERSION, Cluster, rb001_policy
from harness.procs import wait_for

pytestmark = pytest.mark.cluster
FROZEN = "missioncontrol.dev/frozen"


def mitigated_and_frozen(rb001, cluster: Cluster) -> str:
    """RB-001 rolled a broken release back; recovery takes 10 minutes to confirm, so the
    incident stays Mitigated with the namespace frozen while the test deletes things."""
    cluster.create(rb001_policy())
    rb001.start_operator()
    rb001.healthy_checkout()
    cluster.patch("IncidentPolicy", "checkout-guard", {"spec": {"overrides": {
        "recovery": {"slo": "30m", "stableFor": "10m"}}}})
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    body = cluster.wait_phase(name, "Mitigated", timeout=60)
    assert body["status"]["freeze"]["active"] is True
    assert _namespace_labels(cluster).get(FROZEN) == "true"
    # The first-response pages are out before anything is deleted.
    for role in ("release-owner", "oncall-backend"):
        rb001.receiver.wait_for_requests(f"/{role}", 1, timeout=30)
    return name


def _namespace_labels(cluster: Cluster) -> dict:
    return cluster.core.read_namespace(cluster.namespace).metadata.labels or {}


def _stopped_pages(receiver, role: str) -> list:
    return [r for r in receiver.requests(f"/{role}")
            if r.json and r.json["summary"].startswith("automation stopped")]


def assert_handed_to_people(cluster: Cluster, receiver, env, name: str, *, reason: str,
                            names: str) -> None:
    def stopped() -> dict | None:
        body = cluster.get("Incident", name)
        conditions = {c["type"]: c for c in body["status"].get("conditions") or []}
        condition = conditions.get("AutomationStopped")
        return body if condition and condition["status"] == "True" else None

    body = wait_for(stopped, timeout=30, what="the AutomationStopped condition")
    status = body["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["AutomationStopped"]["reason"] == reason
    assert names in conditions["AutomationStopped"]["message"]
    assert conditions["Mitigated"]["status"] == "False"
    assert status["phase"] == "Failed"          # open, and not pretending to be mitigated
    timeline = [(e["type"], e["message"]) for e in status["timeline"]]
    assert any(t == "AutomationStopped" and names in m for t, m in timeline), timeline

    # The freeze is lifted: the namespace label is gone and a deploy passes.
    wait_for(lambda: not cluster.get("Incident", name)["status"]["freeze"]["active"],
             timeout=30, what="the freeze to lift")
    assert FROZEN not in _namespace_labels(cluster)
    assert any(e["type"] == "FreezeLifted" and "automation stopped" in e["message"]
               for e in cluster.get("Incident", name)["status"]["timeline"])

    # An Event on the Incident, with the reason.
    def event() -> list:
        events = cluster.core.list_namespaced_event(
            cluster.namespace, field_selector=f"involvedObject.name={name}").items
        return [e for e in events if e.reason == "AutomationStopped"]

    (stopped_event,) = wait_for(event, timeout=30, what="the AutomationStopped Event")
    assert stopped_event.type == "Warning" and names in stopped_event.message

    # Its people are paged once that automation has stopped.
    for role in ("release-owner", "oncall-backend"):
        wait_for(lambda r=role: _stopped_pages(receiver, r), timeout=30,
                 what=f"the automation-stopped page to {role}")
    paged_at = time.monotonic()

    # The receiver has them; the status records the outcome right after (a read in between
    # still sees "sending").
    def recorded() -> set:
        pages = [p for p in cluster.get("Incident", name)["status"]["pages"]
                 if p.get("about") == "automation-stopped"]
        outcomes = {(p["role"], p["outcome"]) for p in pages}
        return outcomes if all(o != "sending" for _, o in outcomes) else set()

    assert wait_for(recorded, timeout=30, what="the automation-stopped pages recorded") == {
        ("release-owner", "delivered"), ("oncall-backend", "delivered")}
    (page,) = _stopped_pages(receiver, "release-owner")
    assert names in page.json["summary"] and page.json["incident"]["name"] == name

    # Many rounds later (the operator's tick is 0.5 s): still once, still open.
    wait_for(lambda: time.monotonic() - paged_at > 5, timeout=10, what="ten more rounds")
    for role in ("release-owner", "oncall-backend"):
        assert len(_stopped_pages(receiver, role)) == 1, role
    final = cluster.get("Incident", name)["status"]
    assert final["phase"] == "Failed" and not final.get("resolvedAt")


def test_a_deleted_policy_stops_the_incident_lifts_its_freeze_and_pages_once(
        rb001, cluster, receiver, env):
    name = mitigated_and_frozen(rb001, cluster)
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace,
                                                   "incidentpolicies", "checkout-guard")
    assert_handed_to_people(cluster, receiver, env, name, reason="PolicyDeleted",
                            names=f"IncidentPolicy {cluster.namespace}/checkout-guard")
    # Deploys are no longer refused.
    env.kubectl("set", "image", "deployment/checkout", "app=shop/checkout:3.0",
                namespace=cluster.namespace)


def test_a_deleted_deployment_is_named_and_its_freeze_lifted(rb001, cluster, receiver, env):
    name = mitigated_and_frozen(rb001, cluster)
    cluster.apps.delete_namespaced_deployment("checkout", cluster.namespace)
    wait_for(lambda: _gone(cluster), timeout=30, what="the Deployment to be deleted")
    assert_handed_to_people(cluster, receiver, env, name, reason="TargetDeleted",
                            names=f"Deployment {cluster.namespace}/checkout")
    timeline = [e["message"] for e in cluster.get("Incident", name)["status"]["timeline"]]
    assert not any("unhealthy again" in m for m in timeline), timeline


def _gone(cluster: Cluster) -> bool:
    try:
        cluster.deployment("checkout")
    except client.ApiException as exc:
        return exc.status == 404
    return False


def test_a_deleted_runbook_stops_the_incident_too(rb001, cluster, receiver, env):
    name = mitigated_and_frozen(rb001, cluster)
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace,
                                                   "runbooks", "rb-001")
    assert_handed_to_people(cluster, receiver, env, name, reason="RunbookDeleted",
                            names=f"Runbook {cluster.namespace}/rb-001")
