"""The namespaced install (deploy/namespaced/): a Role in each guarded namespace instead of the
ClusterRole. Probed by impersonating the ServiceAccount (`kubectl auth can-i --as=...`), it
has no access outside the guarded namespace and none to kube-system; the operator runs the
whole RB-001 readiness path with it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from e2e.test_rbac import (
    DEPLOY,
    SA_NAME,
    SA_NAMESPACE,
    SUBJECT,
    WEBHOOK_CONFIG,
    _kubectl,
    make_sa_kubeconfig,
    readiness_path,
    sa_operator,
)
from harness.procs import wait_for

pytestmark = pytest.mark.cluster

NAMESPACED = DEPLOY / "namespaced"
VWC = "validatingwebhookconfigurations.admissionregistration.k8s.io"


def _delete_cluster_install(env) -> None:
    """The cluster install's ClusterRole, if another test applied it: its grants would hide
    what the namespaced install lacks."""
    rbac = client.RbacAuthorizationV1Api(env.api)
    for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
        try:
            delete("mission-control")
        except client.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def namespaced_rbac(env, crds, namespace, tmp_path) -> Iterator[None]:
    """deploy/namespaced/ as shipped, with the test namespace as the guarded one (what
    example-team/ does for its namespace)."""
    _delete_cluster_install(env)
    env.kubectl("apply", "-f", str(DEPLOY / "base" / "namespace.yaml"))
    env.kubectl("apply", "-f", str(NAMESPACED / "cluster.yaml"))
    docs = [d for d in yaml.safe_load_all((NAMESPACED / "guarded" / "role.yaml").read_text())
            if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    guarded = tmp_path / "guarded.yaml"
    guarded.write_text(yaml.safe_dump_all(docs))
    env.kubectl("apply", "-f", str(guarded))
    core = client.CoreV1Api(env.api)
    wait_for(lambda: core.read_namespaced_service_account(SA_NAME, SA_NAMESPACE), timeout=30,
             what="the mission-control ServiceAccount")
    yield
    rbac = client.RbacAuthorizationV1Api(env.api)
    rbac.delete_cluster_role_binding("mission-control-cluster")


def can_i(env, *args: str) -> bool:
    answer = env.kubectl("auth", "can-i", *args, f"--as={SUBJECT}", check=False)
    assert answer.stdout.strip() in ("yes", "no"), answer.stdout + answer.stderr
    return answer.stdout.strip() == "yes"


# (verb, resource[, name]) the operator needs in a guarded namespace: the capabilities the
# issue probed, plus the namespace-scoped freeze label.
IN_NAMESPACE = [
    ("get", "secrets"), ("patch", "deployments.apps"), ("patch", "deployments.apps/scale"),
    ("get", "configmaps"), ("patch", "configmaps"), ("create", "jobs.batch"),
    ("list", "pods"), ("create", "events"), ("create", "incidents.missioncontrol.dev"),
    ("watch", "incidentpolicies.missioncontrol.dev"),
    ("patch", "incidents.missioncontrol.dev/status"),
]


def test_the_namespaced_install_reaches_only_the_guarded_namespace(env, namespaced_rbac,
                                                                   namespace):
    wrong = []
    for verb, resource in IN_NAMESPACE:
        if not can_i(env, verb, resource, f"--namespace={namespace}"):
            wrong.append(f"cannot {verb} {resource} in {namespace}")
        for elsewhere in ("kube-system", "default", SA_NAMESPACE):
            if can_i(env, verb, resource, f"--namespace={elsewhere}"):
                wrong.append(f"can {verb} {resource} in {elsewhere}")
        if can_i(env, verb, resource, "--all-namespaces"):
            wrong.append(f"can {verb} {resource} in every namespace")
    # The namespace objects: freeze label on the guarded one only; read all (kopf lists).
    # The API server authorizes a request for namespace N's own object as one in namespace N,
    # so the guarded namespace's Role grants it (and the readiness path below exercises it).
    if not can_i(env, "patch", f"namespaces/{namespace}", f"--namespace={namespace}"):
        wrong.append(f"cannot patch namespace {namespace}")
    for other in ("kube-system", "default", SA_NAMESPACE):
        if can_i(env, "patch", f"namespaces/{other}", f"--namespace={other}"):
            wrong.append(f"can patch namespace {other}")
        if can_i(env, "patch", f"namespaces/{other}"):
            wrong.append(f"can patch namespace {other} (cluster-wide)")
    for verb, what in [("list", "namespaces"), ("watch", "namespaces"),
                       ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
                       ("update", f"{VWC}/{WEBHOOK_CONFIG}"), ("get", f"{VWC}/{WEBHOOK_CONFIG}")]:
        if not can_i(env, verb, what):
            wrong.append(f"cannot {verb} {what}")
    for verb, what in [("create", VWC), ("update", f"{VWC}/someone-elses"),
                       ("get", f"{VWC}/someone-elses"), ("delete", f"{VWC}/{WEBHOOK_CONFIG}"),
                       ("get", "secrets/anything"), ("create", "clusterrolebindings"),
                       ("impersonate", "serviceaccounts"), ("create", "pods/exec")]:
        if can_i(env, verb, what, "--namespace=kube-system"):
            wrong.append(f"can {verb} {what}")
    # Its own namespace: only the webhook certificate's Secret, by name.
    if not can_i(env, "get", "secrets/mission-control-webhook-tls",
                 f"--namespace={SA_NAMESPACE}"):
        wrong.append("cannot get its webhook certificate")
    if can_i(env, "get", "secrets/other", f"--namespace={SA_NAMESPACE}"):
        wrong.append(f"can get other Secrets in {SA_NAMESPACE}")
    # The leader Lease: its own, in its own namespace, and no other.
    for verb in ("get", "update"):
        if not can_i(env, verb, "leases.coordination.k8s.io/mission-control",
                     f"--namespace={SA_NAMESPACE}"):
            wrong.append(f"cannot {verb} its Lease")
        if can_i(env, verb, "leases.coordination.k8s.io/kube-controller-manager",
                 "--namespace=kube-system"):
            wrong.append(f"can {verb} kube-system's Leases")
    assert not wrong, wrong


@pytest.fixture
def namespaced_operator(env, namespaced_rbac, namespace, tmp_path: Path):
    yield from sa_operator(env, namespace, make_sa_kubeconfig(env, tmp_path), tmp_path)


def test_readiness_path_runs_with_the_namespaced_install(env, rb001, cluster, receiver,
                                                        namespaced_operator, namespace):
    readiness_path(env, rb001, cluster, namespaced_operator, namespace)


def test_the_namespaced_kustomization_builds_and_keeps_cluster_wide_only_what_must_be(
        env, namespace):
    built = subprocess.run([_kubectl(), "kustomize", str(NAMESPACED)], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("ClusterRole", "mission-control") not in kinds   # the cluster install's role
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    reachable = {res for r in cluster_rules for res in r["resources"]}
    assert reachable == {"namespaces", "customresourcedefinitions",
                         "validatingwebhookconfigurations"}, reachable
    assert all("resourceNames" in r or set(r["verbs"]) <= {"get", "list", "watch"}
               for r in cluster_rules), cluster_rules
    (operator,) = [d for d in docs if d["kind"] == "Deployment"]
    assert "--namespace=example-team" in operator["spec"]["template"]["spec"]["containers"][0][
        "args"]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] == "Role"} == {
        "example-team", SA_NAMESPACE}
    # The API server accepts all of it (dry run), with the test namespace as the guarded one.
    manifest = built.replace("example-team", namespace)
    result = env.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    assert "deployment.apps/mission-control" in result.stdout, result.stdout
