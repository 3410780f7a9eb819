"""A shared cluster: a policy that selects every namespace guards the teams' namespaces and
leaves kube-system untouched (checked on the objects themselves), and says so; a policy that
reaches beyond its own namespace is reported, not obeyed."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from e2e.conftest import catalogue, rb001_policy
from e2e.test_policy_ready import events_for, wait_ready
from harness import objects
from harness.procs import wait_for
from missioncontrol import incident as inc
from missioncontrol.model import Runbook
from missioncontrol.records import to_dict

pytestmark = pytest.mark.cluster

SYSTEM = "kube-system"


def selecting_everything(namespace: str) -> dict:
    """RB-001 over every namespace (namespaceSelector: {}), for Deployments labelled with
    this test's namespace (so Deployments other tests left behind are not guarded)."""
    policy = rb001_policy()
    policy["spec"]["targets"] = {"selector": {"matchLabels": {"tenancy-test": namespace}},
                                 "namespaceSelector": {}}
    return policy


@pytest.fixture
def system_deployment(env, namespace):
    """A Deployment in kube-system that the policy's selector matches."""
    apps = client.AppsV1Api(env.api)
    body = objects.deployment(f"sys-{namespace}", image="sys/dns:1.0",
                              labels={"tenancy-test": namespace})
    apps.create_namespaced_deployment(SYSTEM, body)
    yield body["metadata"]["name"]
    apps.delete_namespaced_deployment(body["metadata"]["name"], SYSTEM)


def test_a_policy_selecting_every_namespace_leaves_kube_system_untouched(
        env, rb001, cluster, namespace, system_deployment):
    apps, core = client.AppsV1Api(env.api), client.CoreV1Api(env.api)
    # kube-system watched too, so only the protected list keeps the operator out of it.
    rb001.start_operator("--cluster-policy-namespace", namespace, "--namespace", SYSTEM)
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0",
                                      labels={"tenancy-test": namespace}))
    cluster.create(selecting_everything(namespace))

    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True",
                           "GuardingExceptProtected")
    for protected in ("kube-system", "kube-public", "kube-node-lease"):
        assert protected in condition["message"], condition["message"]
    wait_for(lambda: any(e.startswith("GuardingExceptProtected") for e in events_for(
        cluster, "checkout-guard")), timeout=30, what="a GuardingExceptProtected event")
    wait_for(lambda: cluster.target_state("checkout-guard", "checkout").get(
        "lastHealthyRevision") == 1, timeout=60, what="checkout guarded in the team namespace")

    # A failing release in both namespaces: the team's is frozen and rolled back, the
    # system one is neither read nor written.
    bad = objects.deployment(system_deployment, image="sys/dns:2.0", ready=False,
                             labels={"tenancy-test": namespace})["spec"]["template"]
    apps.patch_namespaced_deployment(system_deployment, SYSTEM, {"spec": {"template": bad}})
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    incident = cluster.one_incident()
    resolved = cluster.wait_phase(incident["metadata"]["name"], "Resolved", timeout=90)
    steps = {s["id"]: s for s in resolved["status"]["steps"]}
    assert steps["freeze"]["state"] == steps["rollback"]["state"] == "Succeeded", steps

    status = cluster.get("IncidentPolicy", "checkout-guard")["status"]
    assert [(t["namespace"], t["name"]) for t in status["targets"]] == [(namespace, "checkout")]
    system = apps.read_namespaced_deployment(system_deployment, SYSTEM)
    assert system.spec.template.spec.containers[0].image == "sys/dns:2.0"   # not rolled back
    assert system.metadata.generation == 2            # only the test's own release
    ours = [k for k in {**(system.metadata.labels or {}), **(system.metadata.annotations or {})}
            if k.startswith("missioncontrol.dev/")]
    assert ours == [], ours                           # no freeze label, no last-healthy mark
    system_ns = core.read_namespace(SYSTEM).metadata
    assert not [k for k in {**(system_ns.labels or {}), **(system_ns.annotations or {})}
                if k.startswith("missioncontrol.dev/")]
    custom = client.CustomObjectsApi(env.api)
    assert custom.list_namespaced_custom_object("missioncontrol.dev", "v1alpha1", SYSTEM,
                                                "incidents")["items"] == []


def test_a_namespace_selector_outside_a_cluster_policy_namespace_is_refused(
        env, rb001, cluster, namespace, system_deployment):
    rb001.start_operator()          # no --cluster-policy-namespace: none may select namespaces
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0",
                                      labels={"tenancy-test": namespace}))
    cluster.create(selecting_everything(namespace))
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "CrossNamespaceReference")
    assert "spec.targets.namespaceSelector" in condition["message"]
    assert f"not in {namespace}" in condition["message"]
    wait_for(lambda: any(e.startswith("CrossNamespaceReference") for e in events_for(
        cluster, "checkout-guard")), timeout=30, what="a CrossNamespaceReference event")
    # Not guarding means not touching: no last-healthy mark on the team's Deployment either.
    checkout = cluster.deployment("checkout")
    assert "missioncontrol.dev/last-healthy-revision" not in (checkout.metadata.annotations
                                                              or {})


def test_a_replay_in_another_namespace_is_reported(env, rb001, cluster, namespace):
    runbook = catalogue("rb-001")
    # Its own id: beside the fixture's rb-001, a second RB-001 would be RunbookAmbiguous,
    # which (as soon as the catalogue has judged the pair) outranks what this test is about.
    runbook["metadata"]["name"], runbook["spec"]["id"] = "replayer", "RB-901"
    runbook["spec"]["firstResponse"]["steps"].append(
        {"id": "replay", "action": "replaySample",
         "replaySample": {"namespace": SYSTEM, "image": "replay:1"}})
    cluster.create(runbook)
    policy = rb001_policy()
    policy["spec"]["runbookRef"] = {"name": "replayer"}
    rb001.start_operator()
    cluster.create(policy)
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "CrossNamespaceReference")
    assert f"replaySample.namespace {SYSTEM} is not the policy's namespace {namespace}" in \
        condition["message"]


@pytest.fixture
def system_incident(env, system_deployment):
    """RB-001 and an open Incident for the kube-system Deployment, both written by hand in
    kube-system: what the guard would never open. Removed afterwards (finalizers too)."""
    custom = client.CustomObjectsApi(env.api)
    group = ("missioncontrol.dev", "v1alpha1", SYSTEM)
    runbook = catalogue("rb-001")
    custom.create_namespaced_custom_object(*group, "runbooks", runbook)
    name = f"by-hand-{system_deployment}"[:60]
    custom.create_namespaced_custom_object(*group, "incidents", {
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
        "metadata": {"name": name},
        "spec": {"runbook": {"name": "rb-001", "id": "RB-001"},
                 "target": {"kind": "Deployment", "namespace": SYSTEM,
                            "name": system_deployment},
                 "severity": "SEV2", "mode": "enforce", "summary": "written by hand"}})
    steps = tuple((s.id, s.action) for s in Runbook.parse(runbook).steps)
    custom.patch_namespaced_custom_object_status(*group, "incidents", name, {"status": to_dict(
        inc.opened(now=time.time(), mode="enforce", slo=1200.0, evidence=(), steps=steps,
                   reason="written by hand"))})
    yield name
    for plural, obj in (("incidents", name), ("runbooks", "rb-001")):
        try:
            custom.patch_namespaced_custom_object(*group, plural, obj,
                                                  {"metadata": {"finalizers": None}})
            custom.delete_namespaced_custom_object(*group, plural, obj)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def test_an_incident_written_by_hand_runs_no_step_in_a_protected_namespace(
        env, rb001, namespace, system_deployment, system_incident):
    custom = client.CustomObjectsApi(env.api)
    rb001.start_operator("--namespace", SYSTEM)   # watched, but protected

    def refused() -> dict | None:
        body = custom.get_namespaced_custom_object("missioncontrol.dev", "v1alpha1", SYSTEM,
                                                   "incidents", system_incident)
        steps = {s["id"]: s for s in (body.get("status") or {}).get("steps") or []}
        return steps if steps.get("freeze", {}).get("state") in ("Failed", "Succeeded") \
            else None

    steps = wait_for(refused, timeout=60, what="the freeze step to finish")
    assert steps["freeze"]["state"] == "Failed", steps["freeze"]
    assert f"in namespace {SYSTEM}: it is protected" in steps["freeze"]["message"], steps
    # A failed change holds the rest back (engine.run_steps): the rollback never ran.
    assert steps["rollback"]["state"] not in ("Succeeded", "Running"), steps["rollback"]
    system = client.AppsV1Api(env.api).read_namespaced_deployment(system_deployment, SYSTEM)
    assert not [k for k in system.metadata.labels or {} if k.startswith("missioncontrol.dev/")]
    labels = client.CoreV1Api(env.api).read_namespace(SYSTEM).metadata.labels or {}
    assert "missioncontrol.dev/frozen" not in labels, labels
