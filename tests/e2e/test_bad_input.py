"""What only the operator can judge is reported on the object, never acted on: conflicts
between catalogue objects, references that dangle, a selector stored before the CRD checked
it, hand-made incidents it cannot run. And an Incident's status is the operator's alone: a
hand edit is refused at admission, naming who tried."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client

from e2e.conftest import (
    GROUP,
    REPO,
    ROLES,
    catalogue,
    events_for,
    ownership,
    rb001_policy,
    ready,
    secret,
    wait_ready,
)
from harness import objects
from harness.crds import install as install_crds
from harness.procs import wait_for

pytestmark = pytest.mark.cluster


def wait_event(cluster, name: str, reason: str) -> str:
    return wait_for(lambda: next((e for e in events_for(cluster, name)
                                  if e.startswith(f"{reason}: ")), None),
                    timeout=30, what=f"a {reason} event about {name}")


def copy_of(name: str, new_name: str, **spec: object) -> dict:
    body = catalogue(name)
    body["metadata"]["name"] = new_name
    body["spec"].update(spec)
    return body


# -- the catalogue ----------------------------------------------------------------------------
def test_duplicate_ids_and_services_are_reported_on_both_objects(crds, cluster, receiver,
                                                                  operator_factory):
    op = operator_factory()
    cluster.create(catalogue("rb-001"))
    wait_ready(cluster, "Runbook", "rb-001", "True", "Valid")
    cluster.create(copy_of("rb-001", "rb-001-copy"))
    for name, other in (("rb-001", "rb-001-copy"), ("rb-001-copy", "rb-001")):
        condition = wait_ready(cluster, "Runbook", name, "False", "DuplicateId")
        assert f"RB-001 is also the id of Runbook {other}" in condition["message"]
        wait_event(cluster, name, "DuplicateId")

    cluster.create(secret("pager-routes", **{r: receiver.url(f"/{r}") for r in ROLES}))
    cluster.create(ownership("checkout", {r: r for r in ROLES}))
    second = ownership("checkout", {r: r for r in ROLES})
    second["metadata"]["name"] = "checkout-too"
    cluster.create(second)
    for name, other in (("checkout", "checkout-too"), ("checkout-too", "checkout")):
        condition = wait_ready(cluster, "ServiceOwnership", name, "False", "DuplicateService")
        assert f"also mapped by ServiceOwnership {other}" in condition["message"]
        wait_event(cluster, name, "DuplicateService")

    # A policy that resolves an ambiguous runbook or map guards nothing.
    cluster.create(rb001_policy())
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "RunbookAmbiguous")
    assert "shares its id RB-001" in condition["message"]
    wait_event(cluster, "checkout-guard", "RunbookAmbiguous")

    # Once the conflict is gone, both sides are Ready again, without touching the survivor.
    cluster.custom.delete_namespaced_custom_object(GROUP, "v1alpha1", cluster.namespace,
                                                   "runbooks", "rb-001-copy")
    wait_ready(cluster, "Runbook", "rb-001", "True", "Valid")
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "OwnershipAmbiguous")
    assert "one of several maps of service checkout" in condition["message"]
    cluster.patch("ServiceOwnership", "checkout-too", {"spec": {"service": "payments"}})
    wait_ready(cluster, "ServiceOwnership", "checkout", "True", "Resolved")
    wait_ready(cluster, "ServiceOwnership", "checkout-too", "True", "Resolved")
    wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Guarding")
    op.check_alive()


def test_dangling_references_and_unusable_values_are_reported(crds, cluster, receiver,
                                                              operator_factory):
    op = operator_factory()
    cluster.create(catalogue("rb-001"))
    # A query with an unterminated template.
    broken = copy_of("rb-001", "rb-001-broken", id="RB-901")
    broken["spec"]["trigger"]["anyOf"][1]["threshold"]["query"] = 'up{deployment="{{ .name "}'
    cluster.create(broken)
    condition = wait_ready(cluster, "Runbook", "rb-001-broken", "False", "InvalidTemplate")
    assert "condition error-rate: unterminated or malformed template" in condition["message"]
    wait_event(cluster, "rb-001-broken", "InvalidTemplate")
    # identifySlowQueries from a Secret that does not exist; replaySample into a namespace
    # that does not exist.
    cluster.create(catalogue("rb-002"))
    condition = wait_ready(cluster, "Runbook", "rb-002", "False", "SecretMissing")
    assert f"step slow-queries: Secret {cluster.namespace}/orders-db does not exist" \
        in condition["message"]
    wait_event(cluster, "rb-002", "SecretMissing")
    cluster.create(catalogue("rb-003"))
    condition = wait_ready(cluster, "Runbook", "rb-003", "False", "NamespaceNotFound")
    assert "step replay replays into namespace staging does not exist" in condition["message"]
    # Once the Secret exists, the Runbook is Ready again by itself (judged again meanwhile).
    cluster.create(secret("orders-db", dsn="postgresql://orders"))
    wait_ready(cluster, "Runbook", "rb-002", "True", "Valid", timeout=90)

    # The policy's own routes: a Secret that does not exist, a key it lacks, a value that is
    # not a URL for a route that posts to one.
    cluster.create(secret("pager-routes", **{r: receiver.url(f"/{r}") for r in ROLES}))
    cluster.create(ownership("checkout", {r: r for r in ROLES}))
    policy = rb001_policy()
    route = {"type": "Webhook", "secretRef": {"name": "updates", "key": "url"}}
    policy["spec"]["stakeholderUpdates"] = {"route": route}
    cluster.create(policy)
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "SecretMissing")
    assert condition["message"] == (f"spec.stakeholderUpdates.route: Secret "
                                    f"{cluster.namespace}/updates does not exist")
    wait_event(cluster, "checkout-guard", "SecretMissing")
    cluster.create(secret("updates", other="x"))
    wait_for(lambda: ready(cluster, "IncidentPolicy", "checkout-guard")["message"] == (
        f"spec.stakeholderUpdates.route: Secret {cluster.namespace}/updates has no key 'url'"),
        timeout=30, what="the missing key reported")
    cluster.core.patch_namespaced_secret("updates", cluster.namespace,
                                         {"stringData": {"url": "not a url"}})
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "RouteInvalid")
    assert "is not an http(s) URL: a Webhook route posts to the URL its Secret holds" \
        in condition["message"]
    wait_event(cluster, "checkout-guard", "RouteInvalid")
    cluster.core.patch_namespaced_secret("updates", cluster.namespace,
                                         {"stringData": {"url": receiver.url("/updates")}})
    wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Guarding")

    # An ownership map whose route value is not a URL.
    cluster.core.patch_namespaced_secret("pager-routes", cluster.namespace,
                                         {"stringData": {"platform-lead": "oops"}})
    cluster.patch("ServiceOwnership", "checkout", {"spec": {"service": "checkout"},
                                                    "metadata": {"labels": {"touch": "1"}}})
    second = ownership("payments", {"platform-lead": "platform-lead"})
    cluster.create(second)
    condition = wait_ready(cluster, "ServiceOwnership", "payments", "False", "RouteInvalid")
    assert "platform-lead/platform-lead-person: Secret pager-routes key 'platform-lead' is " \
        "not an http(s) URL" in condition["message"]
    wait_event(cluster, "payments", "RouteInvalid")
    op.check_alive()


# -- a selector stored before the CRD checked it -----------------------------------------------
def created(cluster, body: dict) -> bool:
    """Create it; False when the API refuses it as invalid (422)."""
    try:
        cluster.create(body)
        return True
    except client.ApiException as exc:
        if exc.status != 422:
            raise
        return False


@pytest.fixture
def stored_bad_selector(env, crds, cluster):
    """A policy whose selector the API server cannot parse, stored as it could have been
    before the CRD's rules existed: the rules are lifted for the moment of the write, then
    the CRDs are installed again as they ship."""
    name = f"incidentpolicies.{GROUP}"
    where = ("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/targets"
             "/properties/selector/properties/matchLabels/")
    lifted = [{"op": "remove", "path": where + part}
              for part in ("x-kubernetes-validations", "additionalProperties/pattern")]
    bad = rb001_policy()
    bad["metadata"]["name"] = "bad-selector"
    bad["spec"]["targets"]["selector"] = {"matchLabels": {"app": "has space"}}
    bad["spec"].pop("ownershipRef")
    env.kubectl("patch", "crd", name, "--type=json", "-p", json.dumps(lifted))
    try:
        wait_for(lambda: created(cluster, bad), timeout=30,
                 what="the lifted rule to take effect")
    finally:
        install_crds(env.kubectl, env.api)
    # The rules are back: the same selector is refused again.
    probe = {**bad, "metadata": {"name": "bad-selector-probe"}}

    def refused() -> bool:
        if not created(cluster, probe):
            return True
        cluster.custom.delete_namespaced_custom_object(GROUP, "v1alpha1", cluster.namespace,
                                                       "incidentpolicies", "bad-selector-probe")
        return False

    wait_for(refused, timeout=30, what="the CRD's selector rules to be back")
    return "bad-selector"


def test_a_policy_with_an_invalid_selector_is_reported_and_the_rest_still_guarded(
        stored_bad_selector, rb001, cluster):
    op = rb001.start_operator()
    cluster.create(rb001_policy())
    rb001.healthy_checkout()          # the good policy guards checkout
    condition = wait_ready(cluster, "IncidentPolicy", stored_bad_selector, "False",
                           "InvalidSelector")
    assert condition["message"].startswith(
        "spec.targets.selector.matchLabels[app]: 'has space' is not a label value")
    wait_event(cluster, stored_bad_selector, "InvalidSelector")
    good = cluster.get("IncidentPolicy", "checkout-guard")["status"]
    assert good["targetCount"] == 1
    # ... and keeps guarding: its ticks go on.
    first = good["lastTick"]
    wait_for(lambda: cluster.get("IncidentPolicy", "checkout-guard")["status"]["lastTick"]
             != first, timeout=30, what="another guard pass of the good policy")
    assert "has space" not in op.logs()
    op.check_alive()


# -- incidents declared by hand -----------------------------------------------------------------
def declared(name: str, cluster, *, target: str = "checkout", namespace: str | None = None,
             runbook: str = "rb-001", **spec: object) -> dict:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Incident", "metadata": {"name": name},
            "spec": {"runbook": {"name": runbook, "id": "RB-001"}, "severity": "SEV1",
                     "owner": "ada", "summary": "checkout returns 503s", "mode": "enforce",
                     "policy": "checkout-guard",
                     "target": {"kind": "Deployment", "namespace": namespace or cluster.namespace,
                                "name": target}, **spec}}


def test_a_declared_incident_is_run_and_one_it_cannot_run_is_rejected(rb001, cluster,
                                                                       receiver):
    op = rb001.start_operator()
    cluster.create(rb001_policy())
    rb001.healthy_checkout()
    ns = cluster.namespace

    cluster.create(declared("declared", cluster))
    condition = wait_ready(cluster, "Incident", "declared", "True", "Accepted")
    assert condition["message"] == (f"declared by hand: RB-001 for Deployment {ns}/checkout "
                                    f"in enforce mode")
    wait_event(cluster, "declared", "Accepted")
    body = cluster.wait_phase("declared", "Mitigating", "Mitigated", "Resolved", timeout=60)
    assert body["status"]["reason"] == "declared by hand by ada: checkout returns 503s"
    # Its escalation protocol runs: the runbook's first pages go out.
    receiver.wait_for_requests("/release-owner", 1, timeout=60)
    # A live incident's target cannot be changed.
    moved = cluster.env.kubectl("patch", "incident", "declared", "--type=merge", "-p",
                                '{"spec":{"target":{"name":"payments"}}}', namespace=ns,
                                check=False)
    assert moved.returncode != 0 and "spec.target cannot change" in moved.stderr

    rejected = {
        "no-such-target": (declared("no-such-target", cluster, target="nothing-here"),
                           "TargetNotFound", f"Deployment {ns}/nothing-here does not exist"),
        "no-such-runbook": (declared("no-such-runbook", cluster, runbook="rb-404"),
                            "RunbookNotFound", f"Runbook rb-404 does not exist in {ns}"),
        "kube-system": (declared("kube-system", cluster, target="coredns",
                                 namespace="kube-system"),
                        "TargetOutsideNamespace", "an incident acts only in its own namespace"),
    }
    for body, _, _ in rejected.values():
        cluster.create(body)
    for name, (_, reason, says) in rejected.items():
        condition = wait_ready(cluster, "Incident", name, "False", reason)
        assert says in condition["message"]
        wait_event(cluster, name, reason)
        status = cluster.get("Incident", name)["status"]
        assert status["phase"] == "Rejected"
        assert not status.get("steps") and not status.get("pages") and not status.get("freeze")
    op.check_alive()


# -- status is written by the operator only ----------------------------------------------------
@pytest.fixture
def admission_policy(env, crds):
    """deploy/base/incident-admission.yaml as it ships."""
    env.kubectl("apply", "-f", str(REPO / "deploy" / "base" / "incident-admission.yaml"))
    yield
    env.kubectl("delete", "-f", str(REPO / "deploy" / "base" / "incident-admission.yaml"),
                "--ignore-not-found", check=False)


def test_a_hand_edit_of_an_incidents_status_is_refused_naming_who(
        env, admission_policy, rb001, cluster):
    ns = cluster.namespace
    # Someone who may patch incidents/status, as a careless RBAC grant would allow.
    rbac = client.RbacAuthorizationV1Api(env.api)
    rbac.create_namespaced_role(ns, {"metadata": {"name": "status-editor"}, "rules": [{
        "apiGroups": [GROUP], "resources": ["incidents", "incidents/status"],
        "verbs": ["get", "patch"]}]})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "status-editor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "status-editor"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": "mallory"}]})
    op = rb001.start_operator()
    cluster.create(rb001_policy())
    # A Deployment that never becomes ready: the incident declared for it stays open.
    cluster.create(objects.deployment("payments", image="shop/payments:1.0", ready=False))
    cluster.create(declared("declared", cluster, target="payments"))
    body = wait_for(lambda: (b := cluster.get("Incident", "declared")).get("status", {}).get(
        "freeze", {}).get("active") and b, timeout=60, what="the incident to freeze deploys")

    def hand_edit(name: str, status: dict) -> str | None:
        result = env.kubectl("patch", "incident", name, "--subresource=status",
                             "--type=merge", "-p", json.dumps({"status": status}),
                             "--as=mallory", namespace=ns, check=False)
        return None if result.returncode == 0 else result.stderr

    # The admission policy comes into force asynchronously: probe it on a throwaway
    # (rejected) incident until the API server refuses an edit.
    cluster.create(declared("probe", cluster, target="nothing-here"))
    wait_ready(cluster, "Incident", "probe", "False", "TargetNotFound")
    wait_for(lambda: hand_edit("probe", {"reason": f"probe {time.time()}"}), timeout=30,
             what="the admission policy to refuse hand edits")

    for edit in ({"phase": "Resolved"}, {"freeze": {"active": False}}):
        refusal = hand_edit("declared", edit)
        assert refusal is not None, f"{edit} was accepted"
        assert ("the status of Incident declared is written by Mission Control only, and "
                "mallory is not Mission Control: to close the incident set spec.close") \
            in refusal
        assert "to lift its deploy freeze set spec.liftFreeze: true" in refusal
    after = cluster.get("Incident", "declared")["status"]
    assert after["phase"] != "Resolved" and after["freeze"]["active"]
    frozen = "missioncontrol.dev/frozen"
    assert frozen in (cluster.core.read_namespace(ns).metadata.labels or {})
    # The way to lift a freeze by hand: spec.liftFreeze, and the operator (here with the
    # admin kubeconfig; in-cluster with its ServiceAccount, see test_rbac.py) still writes the
    # status and removes the label too.
    env.kubectl("patch", "incident", "declared", "--type=merge", "-p",
                '{"spec":{"liftFreeze":true}}', namespace=ns)
    wait_for(lambda: not cluster.get("Incident", "declared")["status"]["freeze"]["active"],
             timeout=30, what="the freeze to lift")
    assert frozen not in (cluster.core.read_namespace(ns).metadata.labels or {})
    assert body["status"]["freeze"]["objects"] == [f"Namespace/{ns}"]
    # The labels that tie an incident to its target do not change either.
    relabel = env.kubectl("label", "incident", "declared", "missioncontrol.dev/target=payments",
                          namespace=ns, check=False)
    assert relabel.returncode != 0 and "cannot change" in relabel.stderr
    op.check_alive()
