"""Undo on resolution end to end: flags, read routing and paused consumers put back in reverse
step order when the incident resolves, each recorded as its own `revert:<step id>` entry; a
value changed by hand during the incident is left alone and the skip is reported."""

from __future__ import annotations

import pytest

from e2e.conftest import Cluster, rb001_policy
from harness import objects
from harness.procs import wait_for

pytestmark = pytest.mark.cluster

STEPS = [
    {"id": "flags", "action": "setFlags",
     "setFlags": {"configMap": "checkout-flags", "flags": {"safe-mode": "on"}}},
    {"id": "routing", "action": "routeReadsToReplica",
     "routeReadsToReplica": {"configMap": "checkout-routing", "key": "non-critical-reads"}},
    {"id": "consumers", "action": "pauseConsumers",
     "pauseConsumers": {"selector": {"matchLabels": {"tier": "consumer"}}}},
]


def setup(cluster: Cluster, rb001, steps: list[dict] = STEPS) -> None:
    """RB-001 reduced to three undoable steps (no freeze, no rollback: a fixed release ends
    the incident), a guarded checkout, its ConfigMaps and one consumer running 3 replicas."""
    cluster.patch("Runbook", "rb-001", {"spec": {"firstResponse": {"steps": steps},
                                                 "automation": None}})
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": "checkout-flags"}, "data": {"safe-mode": "off", "theme": "dark"}})
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": "checkout-routing"}, "data": {}})
    cluster.create(objects.deployment("worker", replicas=3, labels={"tier": "consumer"}))
    cluster.create(rb001_policy())
    rb001.start_operator()
    rb001.healthy_checkout()


def steps_done(cluster: Cluster, name: str, *ids: str) -> dict:
    def done() -> dict | None:
        steps = {s["id"]: s for s in cluster.get("Incident", name)["status"].get("steps") or []}
        return steps if all(steps.get(i, {}).get("state") in ("Succeeded", "Skipped", "Failed")
                            for i in ids) else None
    return wait_for(done, timeout=60, what=f"steps {ids} of {name} done")


def data(cluster: Cluster, config_map: str) -> dict:
    return cluster.core.read_namespaced_config_map(config_map, cluster.namespace).data or {}


def test_on_resolution_each_change_is_restored_in_reverse_order(rb001, cluster):
    setup(cluster, rb001)
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    steps = steps_done(cluster, name, "flags", "routing", "consumers")
    assert [steps[i]["state"] for i in ("flags", "routing", "consumers")] == ["Succeeded"] * 3
    assert data(cluster, "checkout-flags")["safe-mode"] == "on"
    assert data(cluster, "checkout-routing") == {"non-critical-reads": "replica"}
    wait_for(lambda: cluster.deployment("worker").spec.replicas == 0, timeout=30,
             what="the consumer paused")

    cluster.release("checkout", image="shop/checkout:3.0", ready=True)   # the fix
    cluster.wait_phase(name, "Resolved", timeout=90)
    steps_done(cluster, name, "revert:consumers", "revert:routing", "revert:flags")
    status = cluster.get("Incident", name)["status"]
    reverts = [s for s in status["steps"] if s["id"].startswith("revert:")]
    # Newest step first, each its own entry, one after another.
    assert [s["id"] for s in reverts] == ["revert:consumers", "revert:routing", "revert:flags"]
    assert all(s["state"] == "Succeeded" and s["attempts"] == 1 for s in reverts), reverts
    finished = [s["finishedAt"] for s in reverts]
    assert finished == sorted(finished)
    assert reverts[0]["changes"] == [{"kind": "Deployment", "name": "worker",
                                      "field": "spec.replicas", "from": "0", "to": "3",
                                      "namespace": cluster.namespace}]
    assert reverts[2]["changes"][0]["field"] == "data[safe-mode]"
    assert (reverts[2]["changes"][0]["from"], reverts[2]["changes"][0]["to"]) == ("on", "off")
    # The cluster as it was: the flag back, the key that did not exist removed, the consumer
    # at its earlier replicas.
    assert data(cluster, "checkout-flags") == {"safe-mode": "off", "theme": "dark"}
    assert data(cluster, "checkout-routing") == {}
    wait_for(lambda: cluster.deployment("worker").spec.replicas == 3, timeout=30,
             what="the consumer back at 3 replicas")
    timeline = [(e["type"], e["message"]) for e in status["timeline"]]
    kinds = [k for k, _ in timeline]
    assert "Reverting" in kinds and kinds.index("Resolved") < kinds.index("Reverting")
    reverted = [m for k, m in timeline if k == "Reverted"]
    assert [m.split(" ")[0] for m in reverted] == ["revert:consumers", "revert:routing",
                                                   "revert:flags"]


def test_a_flag_changed_by_hand_is_not_overwritten_and_the_skip_is_reported(
        rb001, cluster, env):
    setup(cluster, rb001)
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    steps_done(cluster, name, "flags", "routing", "consumers")
    # Someone on call decides safe mode stays, by hand, during the incident.
    env.kubectl("patch", "configmap", "checkout-flags", "--type=merge", "-p",
                '{"data":{"safe-mode":"forced"}}', namespace=cluster.namespace)

    cluster.release("checkout", image="shop/checkout:3.0", ready=True)
    cluster.wait_phase(name, "Resolved", timeout=90)
    steps = steps_done(cluster, name, "revert:consumers", "revert:routing", "revert:flags")
    flags = steps["revert:flags"]
    assert flags["state"] == "Skipped"
    assert flags["message"].startswith("Skipped: changed by kubectl-patch since: "
                                       "data[safe-mode] of ConfigMap checkout-flags is "
                                       "'forced', not 'on' as we set it"), flags["message"]
    assert data(cluster, "checkout-flags")["safe-mode"] == "forced"
    # The others were still restored.
    assert steps["revert:routing"]["state"] == "Succeeded"
    assert data(cluster, "checkout-routing") == {}
    timeline = cluster.get("Incident", name)["status"]["timeline"]
    assert any(e["type"] == "RevertSkipped" and "kubectl-patch" in e["message"]
               for e in timeline)
    events = wait_for(lambda: [e for e in cluster.core.list_namespaced_event(
        cluster.namespace, field_selector=f"involvedObject.name={name}").items
        if e.reason == "RevertSkipped"], timeout=30, what="the RevertSkipped Event")
    assert events[0].type == "Warning" and "kubectl-patch" in events[0].message


def test_a_step_without_effect_escalates_and_with_on_no_effect_revert_is_undone(
        rb001, cluster):
    steps = [{**STEPS[0], "verifyWithin": "3s", "onNoEffect": "revert"},
             {**STEPS[1], "verifyWithin": "3s"}]   # onNoEffect: escalate, the default
    setup(cluster, rb001, steps)
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)   # never fixed
    name = cluster.one_incident()["metadata"]["name"]
    steps_done(cluster, name, "flags", "routing")
    done = steps_done(cluster, name, "revert:flags")
    assert done["revert:flags"]["state"] == "Succeeded"
    assert data(cluster, "checkout-flags")["safe-mode"] == "off"

    def escalated() -> set | None:
        status = cluster.get("Incident", name)["status"]
        keys = {e["after"] for e in status.get("escalations") or []}
        return keys if {"verify:flags", "verify:routing"} <= keys else None
    wait_for(escalated, timeout=30, what="both steps escalated as without effect")
    status = cluster.get("Incident", name)["status"]
    assert status["phase"] != "Resolved" and status["escalated"]
    steps = {s["id"]: s for s in status["steps"]}
    assert steps["flags"]["noEffectAt"] and steps["routing"]["noEffectAt"]
    # Escalate alone leaves its change in place while the incident is open.
    assert "revert:routing" not in steps
    assert data(cluster, "checkout-routing") == {"non-critical-reads": "replica"}
    assert any(e["type"] == "Escalated" and "step flags (setFlags) had no effect" in e["message"]
               for e in status["timeline"])
