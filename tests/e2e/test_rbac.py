"""The in-cluster install's RBAC (deploy/rbac.yaml) is enough for the operator, and no more.

The ServiceAccount, ClusterRole and binding are applied from deploy/ as they ship; the
operator runs the whole RB-001 readiness path with a token of that ServiceAccount (not the
admin kubeconfig the other e2e tests use), and the ServiceAccount is shown unable to do what
the operator never needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from e2e.conftest import REPO, rb001_policy
from harness.controlplane import binaries_dir
from harness.operator import OperatorProcess
from harness.procs import wait_for

pytestmark = pytest.mark.cluster

DEPLOY = REPO / "deploy"
SA_NAMESPACE = SA_NAME = "mission-control"
SUBJECT = f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"
WEBHOOK_CONFIG = "mission-control-freeze"   # the name without --instance, as deployed
WEBHOOK_SECRET = "mission-control-webhook-tls"  # --webhook-secret, as deployed
LEASE = "mission-control"                       # --lease, as deployed
# What an RBAC refusal looks like in the operator's log: the client's "403 Forbidden", kopf's
# "Code: 403" and its "Not enough permissions" fallbacks. A bare 403 preceded by a comma or
# digit is a log timestamp's milliseconds or part of a number, not a status.
DENIED = re.compile(r"forbidden|not enough permissions|(?<![\d,.:])403(?!\d)", re.IGNORECASE)


def _kubectl() -> str:
    built = binaries_dir() / "kubectl"
    return str(built) if built.exists() else "kubectl"


def _as_operator(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    """kubectl with the ServiceAccount's own token."""
    return subprocess.run([_kubectl(), f"--kubeconfig={kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def rbac(env, crds) -> None:
    """deploy/namespace.yaml and deploy/rbac.yaml applied as shipped (idempotent: a second
    run in the same cluster re-applies them)."""
    env.kubectl("apply", "-f", str(DEPLOY / "base" / "namespace.yaml"))
    env.kubectl("apply", "-f", str(DEPLOY / "rbac.yaml"))
    # Incident status is the operator's alone: the RB-001 run below writes it through this.
    env.kubectl("apply", "-f", str(DEPLOY / "base" / "incident-admission.yaml"))
    core = client.CoreV1Api(env.api)
    wait_for(lambda: core.read_namespaced_service_account(SA_NAME, SA_NAMESPACE), timeout=30,
             what="the mission-control ServiceAccount")


@pytest.fixture
def sa_kubeconfig(env, rbac, tmp_path) -> Path:
    return make_sa_kubeconfig(env, tmp_path)


def make_sa_kubeconfig(env, tmp_path: Path) -> Path:
    """A kubeconfig for the ServiceAccount: the test cluster's server and CA, and a token
    minted with the TokenRequest API."""
    core = client.CoreV1Api(env.api)
    request = core.create_namespaced_service_account_token(
        SA_NAME, SA_NAMESPACE, {"spec": {"expirationSeconds": 3600}})
    admin = yaml.safe_load(Path(env.kubeconfig).read_text())
    context = next(c["context"] for c in admin["contexts"]
                   if c["name"] == admin["current-context"])
    cluster = next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": SA_NAME, "user": {"token": request.status.token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": SA_NAME,
                                                      "namespace": SA_NAMESPACE}}],
        "current-context": "operator",
    }
    path = tmp_path / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture
def operator_as_sa(env, namespace, sa_kubeconfig, tmp_path):
    yield from sa_operator(env, namespace, sa_kubeconfig, tmp_path)


def sa_operator(env, namespace: str, kubeconfig: Path, tmp_path: Path):
    """Start `missionctl run` with the ServiceAccount's kubeconfig, under the webhook
    configuration name of the real install (so the resourceNames rule is what is tested),
    with that configuration shipped empty as the install does (the role cannot create it)."""
    admission = client.AdmissionregistrationV1Api(env.api)

    def delete_config() -> None:
        try:
            admission.delete_validating_webhook_configuration(WEBHOOK_CONFIG)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    def delete_secret() -> None:
        try:
            client.CoreV1Api(env.api).delete_namespaced_secret(WEBHOOK_SECRET, SA_NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    delete_config()   # a leftover filled in by an earlier run: start from the shipped one
    env.kubectl("apply", "-f", str(DEPLOY / "base" / "webhook.yaml"))
    delete_secret()
    started: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        op = OperatorProcess(kubeconfig, namespace, tmp_path / "operator-sa.log",
                             prometheus_url=env.prometheus_url,
                             extra=("--instance", "",   # last --instance wins
                                    "--webhook-secret", f"{SA_NAMESPACE}/{WEBHOOK_SECRET}",
                                    "--lease", f"{SA_NAMESPACE}/{LEASE}"),
                             ).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
    delete_config()
    delete_secret()


def allowed(env, verb: str, resource: str, namespace: str | None = None,
            name: str | None = None) -> bool:
    """A SubjectAccessReview for the ServiceAccount, with the groups its token carries.
    `resource` is "plural[.group][/subresource]"."""
    resource, _, subresource = resource.partition("/")
    plural, _, group = resource.partition(".")
    review = client.AuthorizationV1Api(env.api).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": SUBJECT,
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{SA_NAMESPACE}",
                            "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "group": group, "resource": plural,
                                        "subresource": subresource, "namespace": namespace,
                                        "name": name}}})
    return bool(review.status.allowed)


def test_the_service_account_can_do_only_what_the_operator_needs(env, rbac, namespace,
                                                                 sa_kubeconfig):
    ns = namespace
    granted = [
        ("get", "secrets", ns, "route"), ("list", "deployments.apps", ns),
        ("patch", "deployments.apps", ns), ("patch", "deployments.apps/scale", ns),
        ("get", "replicasets.apps", ns), ("list", "pods", ns), ("list", "events", ns),
        ("create", "events", ns), ("get", "configmaps", ns), ("patch", "configmaps", ns),
        ("get", "ingresses.networking.k8s.io", ns), ("patch", "ingresses.networking.k8s.io", ns),
        ("create", "jobs.batch", ns), ("list", "namespaces"), ("watch", "namespaces"),
        ("patch", "namespaces", None, ns),
        ("create", "incidents.missioncontrol.dev", ns),
        ("patch", "incidents.missioncontrol.dev/status", ns),
        ("operate", "incidents.missioncontrol.dev/status", ns),
        ("watch", "incidentpolicies.missioncontrol.dev"),
        ("patch", "serviceownerships.missioncontrol.dev/status", ns),
        ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", None,
         WEBHOOK_CONFIG),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "clusterkopfpeerings.kopf.dev", None, "mission-control"),
        ("update", "secrets", SA_NAMESPACE, WEBHOOK_SECRET),
        ("create", "leases.coordination.k8s.io", SA_NAMESPACE),
        ("update", "leases.coordination.k8s.io", SA_NAMESPACE, LEASE),
        ("get", "leases.coordination.k8s.io", SA_NAMESPACE, LEASE),
        ("watch", "kopfpeerings.kopf.dev", ns),
    ]
    refused = [
        ("list", "secrets", ns), ("watch", "secrets", ns), ("list", "secrets"),
        ("delete", "deployments.apps", ns), ("update", "deployments.apps", ns),
        ("create", "deployments.apps", ns), ("update", "deployments.apps/scale", ns),
        ("create", "pods", ns), ("delete", "pods", ns), ("create", "pods/exec", ns),
        ("delete", "incidents.missioncontrol.dev", ns),
        ("update", "runbooks.missioncontrol.dev", ns),
        ("create", "runbooks.missioncontrol.dev", ns),
        ("delete", "namespaces", None, ns), ("patch", "events.events.k8s.io", ns),
        ("patch", "events", ns), ("update", "configmaps", ns), ("create", "configmaps", ns),
        ("delete", "jobs.batch", ns), ("update", "ingresses.networking.k8s.io", ns),
        ("list", "ingresses.networking.k8s.io", ns),
        ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", None,
         "someone-elses-policy"),
        ("get", "validatingwebhookconfigurations.admissionregistration.k8s.io", None,
         "someone-elses-policy"),
        ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io", None,
         WEBHOOK_CONFIG),
        ("patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "users"), ("create", "serviceaccounts/token", ns),
        ("delete", "clusterkopfpeerings.kopf.dev"), ("*", "*"),
        ("update", "secrets", ns, "route"), ("update", "secrets", SA_NAMESPACE, "other"),
        ("update", "leases.coordination.k8s.io", SA_NAMESPACE, "kube-controller-manager"),
        ("create", "leases.coordination.k8s.io", ns),
    ]
    wrong = ([f"cannot {a}" for a in granted if not allowed(env, *a)]
             + [f"can {r}" for r in refused if allowed(env, *r)])
    assert not wrong, wrong

    # kubectl agrees (it asks the same question): the operator may not delete Deployments.
    answer = env.kubectl("auth", "can-i", "delete", "deployments", f"--as={SUBJECT}",
                         f"--namespace={ns}", check=False)
    assert answer.stdout.strip() == "no", answer.stdout + answer.stderr

    core = client.CoreV1Api(env.api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "route"},
                                              "stringData": {"url": "http://x"}})
    got = _as_operator(sa_kubeconfig, "get", "secret", "route", f"--namespace={namespace}",
                       "-o", "name")
    assert got.returncode == 0 and got.stdout.strip() == "secret/route", got.stderr
    listed = _as_operator(sa_kubeconfig, "get", "secrets", f"--namespace={namespace}")
    assert listed.returncode != 0 and "forbidden" in listed.stderr.lower(), listed


def test_readiness_path_runs_with_the_shipped_rbac(env, rb001, cluster, receiver,
                                                  operator_as_sa, namespace):
    readiness_path(env, rb001, cluster, operator_as_sa, namespace)


def readiness_path(env, rb001, cluster, start, namespace: str) -> None:
    """RB-001 from release to Resolved with the operator as the ServiceAccount, and not one
    refusal in its log."""
    cluster.create(rb001_policy())
    op = start()
    rb001.healthy_checkout()

    cluster.release("checkout", image="shop/checkout:2.0", ready=False)

    incident = cluster.one_incident()
    name = incident["metadata"]["name"]
    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    status = resolved["status"]
    by_id = {s["id"]: s for s in status.get("steps") or []}
    assert by_id["freeze"]["state"] == "Succeeded", by_id["freeze"]
    assert by_id["rollback"]["state"] == "Succeeded", by_id["rollback"]
    assert "to revision 1" in by_id["rollback"]["message"]
    assert cluster.deployment("checkout").spec.template.spec.containers[0].image == \
        "shop/checkout:1.0"
    assert status["freeze"]["active"] is False
    assert "missioncontrol.dev/frozen" not in (cluster.deployment("checkout").metadata.labels
                                               or {})
    pages = {p["role"]: p for p in status["pages"]}
    assert pages["release-owner"]["outcome"] == "delivered"   # the route Secret was read
    assert pages["oncall-backend"]["outcome"] == "delivered"
    runbook = cluster.get("Runbook", "rb-001")
    assert any(c["type"] == "Ready" and c["status"] == "True"
               for c in (runbook.get("status") or {}).get("conditions") or [])

    # The operator filled in its webhook configuration itself (get, update), trusting the CA
    # it keeps in the shared Secret (create, in its own namespace only).
    admission = client.AdmissionregistrationV1Api(env.api)
    config = admission.read_validating_webhook_configuration(WEBHOOK_CONFIG)
    shared = client.CoreV1Api(env.api).read_namespaced_secret(WEBHOOK_SECRET, SA_NAMESPACE)
    assert shared.type == "kubernetes.io/tls"
    assert config.webhooks[0].client_config.ca_bundle == shared.data["ca.crt"]
    # kopf posted its events (core v1 create).
    events = client.CoreV1Api(env.api).list_namespaced_event(namespace).items
    assert any(e.involved_object.kind == "Incident" and e.reporting_component == "kopf"
               for e in events), [(e.involved_object.kind, e.reason) for e in events]

    op.check_alive()
    log = op.logs()
    refused = [line for line in log.splitlines() if DENIED.search(line)]
    assert not refused, "\n".join(line[:400] for line in refused[:10])


def test_the_install_manifests_pass_server_side_validation(env, rbac):
    """namespace, RBAC, the incident admission policy, the operator's Deployment and Service:
    accepted by the API server
    (dry run), and the pod meets the namespace's "restricted" Pod Security level."""
    files = [DEPLOY / "base" / "namespace.yaml", DEPLOY / "rbac.yaml",
             DEPLOY / "base" / "operator.yaml", DEPLOY / "base" / "webhook.yaml",
             DEPLOY / "base" / "incident-admission.yaml"]
    result = env.kubectl("apply", "--dry-run=server", *(f"--filename={f}" for f in files))
    assert "deployment.apps/mission-control" in result.stdout, result.stdout
    assert "PodSecurity" not in result.stderr, result.stderr
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {"../crds", "base", "rbac.yaml"}
    base = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert set(base["resources"]) == {"namespace.yaml", "webhook.yaml", "operator.yaml",
                                "incident-admission.yaml"}
