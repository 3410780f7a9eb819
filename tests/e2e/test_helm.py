"""The Helm chart on the real control plane: what `helm template` renders is accepted by the
API server (server-side dry run) in both RBAC modes, and the operator runs the whole RB-001
readiness path with the ServiceAccount and RBAC the chart renders, not one refusal in its log.
(tests/integration/test_helm_chart.py shows the rendering equal to the kustomize installs.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from e2e.test_rbac import (
    SA_NAME,
    SA_NAMESPACE,
    make_sa_kubeconfig,
    readiness_path,
    sa_operator,
)
from harness import helm
from harness.procs import wait_for
from missioncontrol import tls
from missioncontrol.webhook import WebhookOptions
from missioncontrol.webhook import configuration as webhook_configuration

pytestmark = pytest.mark.cluster

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
# What any install, of either kind, binds cluster-wide: removed before and after each test so
# that only the chart's own grants are in force.
CLUSTER_BINDINGS = ("mission-control", "mission-control-cluster")


def mode_values(mode: str, namespace: str) -> tuple[str, ...]:
    return ("rbac.mode=namespaced", f"namespaces={{{namespace}}}") if mode == "namespaced" \
        else ("rbac.mode=cluster",)


def _delete_cluster_bindings(env) -> None:
    rbac = client.RbacAuthorizationV1Api(env.api)
    for name in CLUSTER_BINDINGS:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_the_rendered_chart_passes_server_side_validation(env, crds, namespace, mode):
    """Every object, CRDs and the operator's namespace included, accepted by the API server;
    the pod meets the namespace's "restricted" Pod Security level."""
    rendered = helm.template("namespace.create=true", *mode_values(mode, namespace))
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"CustomResourceDefinition", "Deployment", "ValidatingAdmissionPolicy"} <= kinds
    # Objects in the operator's namespace are judged against it, so it must exist.
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (ns,) = [d for d in docs if d["kind"] == "Namespace"]
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
    result = env.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    for expected in ("deployment.apps/mission-control",
                     "customresourcedefinition.apiextensions.k8s.io/incidents.missioncontrol.dev",
                     "poddisruptionbudget.policy/mission-control",
                     "validatingwebhookconfiguration.admissionregistration.k8s.io/"
                     "mission-control-freeze"):
        assert expected in result.stdout, result.stdout
    role = ("role.rbac.authorization.k8s.io/mission-control" if mode == "namespaced"
            else "clusterrole.rbac.authorization.k8s.io/mission-control")
    assert role in result.stdout, result.stdout
    assert "PodSecurity" not in result.stderr, result.stderr


@pytest.fixture
def chart_rbac(env, crds, namespace, request) -> Iterator[str]:
    """The chart's ServiceAccount and RBAC applied for real (the test namespace guarded in the
    namespaced mode), and the admission policy that keeps Incident status the operator's."""
    mode = request.param
    _delete_cluster_bindings(env)
    docs = [d for d in yaml.safe_load_all(helm.template("namespace.create=true",
                                                        *mode_values(mode, namespace),
                                                        crds=False)) if d]
    wanted = [d for d in docs if d["kind"] in RBAC_KINDS | {"Namespace"}
              or d["kind"].startswith("ValidatingAdmissionPolicy")]
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(wanted))
    core = client.CoreV1Api(env.api)
    wait_for(lambda: core.read_namespaced_service_account(SA_NAME, SA_NAMESPACE), timeout=30,
             what="the chart's ServiceAccount")
    yield mode
    _delete_cluster_bindings(env)


@pytest.fixture
def chart_operator(env, chart_rbac, namespace, tmp_path: Path):
    yield from sa_operator(env, namespace, make_sa_kubeconfig(env, tmp_path), tmp_path)


@pytest.mark.parametrize("chart_rbac", ["namespaced", "cluster"], indirect=True)
def test_readiness_path_runs_with_the_charts_rbac(env, rb001, cluster, receiver, chart_rbac,
                                                  chart_operator, namespace):
    readiness_path(env, rb001, cluster, chart_operator, namespace)
    if chart_rbac == "namespaced":
        # Only the chart's namespaced grants were in force: no cluster-wide Deployment access.
        answer = env.kubectl("auth", "can-i", "patch", "deployments", "--namespace=default",
                             f"--as=system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}",
                             check=False)
        assert answer.stdout.strip() == "no", answer.stdout + answer.stderr


def test_install_upgrade_and_uninstall_with_helm_keep_what_the_operator_wrote(env, crds,
                                                                           tmp_path):
    """A real `helm install` (a second, independent instance beside the test's own objects:
    every cluster-wide name carries the instance), the webhook configuration filled in the
    way the operator fills it (replaced whole, by the operator's own function), a `helm
    upgrade` that leaves it filled in, and a `helm uninstall` that removes every cluster-wide
    object it made."""
    instance = f"h{uuid.uuid4().hex[:6]}"
    release_ns = f"mc-{instance}"
    helm_env = helm.cluster_env(env.kubeconfig, tmp_path / "helm")
    admission = client.AdmissionregistrationV1Api(env.api)
    rbac = client.RbacAuthorizationV1Api(env.api)
    config_name = f"mission-control-freeze-{instance}"
    installed = helm.run("install", "mc", str(helm.CHART), f"--namespace={release_ns}",
                         "--create-namespace", "--set", f"instance={instance}", env=helm_env)
    try:
        # The notes name this instance's objects.
        assert f"kubectl -n {release_ns} get lease mission-control-{instance}" in \
            installed.stdout, installed.stdout
        assert rbac.read_cluster_role(f"mission-control-{instance}").rules
        shipped = admission.read_validating_webhook_configuration(config_name)
        assert not shipped.webhooks
        ca = tls.make_ca(tmp_path).cert.read_bytes()
        options = WebhookOptions(service=f"{release_ns}/mission-control-{instance}-webhook",
                                 config_name=config_name, namespaces=(release_ns,))
        body = webhook_configuration(options, ca)
        body["metadata"]["resourceVersion"] = shipped.metadata.resource_version
        admission.replace_validating_webhook_configuration(config_name, body)

        helm.run("upgrade", "mc", str(helm.CHART), f"--namespace={release_ns}",
                 "--reuse-values", "--set", "replicas=3", env=helm_env)
        apps = client.AppsV1Api(env.api)
        operator = apps.read_namespaced_deployment(f"mission-control-{instance}", release_ns)
        assert operator.spec.replicas == 3
        filled = admission.read_validating_webhook_configuration(config_name)
        assert [w.name for w in filled.webhooks or []] == [
            "deployments.freeze.missioncontrol.dev", "namespaces.freeze.missioncontrol.dev"]
        assert filled.webhooks[0].client_config.service.name == (
            f"mission-control-{instance}-webhook")
    finally:
        helm.run("uninstall", "mc", f"--namespace={release_ns}", "--wait", env=helm_env)

    def gone(read, name) -> bool:
        try:
            read(name)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    for read, name in [(rbac.read_cluster_role, f"mission-control-{instance}"),
                       (rbac.read_cluster_role_binding, f"mission-control-{instance}"),
                       (admission.read_validating_webhook_configuration, config_name),
                       (admission.read_validating_admission_policy,
                        f"mission-control-{instance}-incidents")]:
        assert gone(read, name), name
    # The CRDs stay (Helm never deletes what crds/ installed): incidents outlive the chart.
    client.ApiextensionsV1Api(env.api).read_custom_resource_definition(
        "incidents.missioncontrol.dev")
    client.CoreV1Api(env.api).delete_namespace(release_ns)
