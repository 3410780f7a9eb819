"""The Helm chart (deploy/helm/mission-control), rendered and linted by a real helm: the same
install as the kustomize one in each RBAC mode, object for object and rule for rule (labels
aside), so that the two cannot drift; its CRDs are crds/ byte for byte."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import helm
from harness.controlplane import REPO, binaries_dir
from missioncontrol.cli import parser

DEPLOY = REPO / "deploy"
NAMESPACED = ("rbac.mode=namespaced", "namespaces={example-team}")
# The kustomize installs include the operator's namespace; Helm's idiom is --create-namespace.
WITH_NAMESPACE = "namespace.create=true"


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(path) -> list[dict]:
    kubectl = binaries_dir() / "kubectl"
    built = subprocess.run([str(kubectl if kubectl.exists() else "kubectl"), "kustomize",
                            str(path)], capture_output=True, text=True, timeout=60, check=True)
    return docs_of(built.stdout)


def key(doc: dict) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def _squeezed(value):
    """Runs of whitespace as one space: kustomize re-writes the folded CEL expressions of the
    admission policy with an extra line break, which CEL ignores."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_squeezed(v) for v in value]
    if isinstance(value, dict):
        return {k: _squeezed(v) for k, v in value.items()}
    return value


def without_labels(doc: dict) -> dict:
    """The object as the API server would compare it, less what only labels it: labels, and
    the rules' order (RBAC grants the union)."""
    doc = _squeezed(doc)
    doc["metadata"].pop("labels", None)
    template = doc.get("spec", {}).get("template") if isinstance(doc.get("spec"), dict) else None
    if template:
        template["metadata"].pop("labels", None)
    if "rules" in doc and doc["kind"] in ("Role", "ClusterRole"):
        doc["rules"] = sorted(json.dumps({k: sorted(v) for k, v in rule.items()},
                                         sort_keys=True) for rule in doc["rules"])
    return doc


def compare(chart: list[dict], kustomized: list[dict]) -> list[str]:
    ours, theirs = {key(d): d for d in chart}, {key(d): d for d in kustomized}
    wrong = [f"only in the chart: {k}" for k in ours.keys() - theirs.keys()]
    wrong += [f"only in kustomize: {k}" for k in theirs.keys() - ours.keys()]
    for k in ours.keys() & theirs.keys():
        if without_labels(ours[k]) != without_labels(theirs[k]):
            wrong.append(f"{k} differs:\nchart: {without_labels(ours[k])}\n"
                         f"kustomize: {without_labels(theirs[k])}")
        # The kustomize labels are kept (the chart adds Helm's own; managed-by is Helm's).
        mine = ours[k]["metadata"].get("labels") or {}
        for label, value in (theirs[k]["metadata"].get("labels") or {}).items():
            if label != "app.kubernetes.io/managed-by" and mine.get(label) != value:
                wrong.append(f"{k}: label {label}={value} missing")
    return wrong


def test_the_cluster_mode_renders_the_kustomize_cluster_install():
    chart = docs_of(helm.template(WITH_NAMESPACE))
    assert not compare(chart, kustomize(DEPLOY)), "\n".join(compare(chart, kustomize(DEPLOY)))
    kinds = {d["kind"] for d in chart}
    assert {"ClusterRole", "Deployment", "CustomResourceDefinition"} <= kinds


def test_the_namespaced_mode_renders_the_kustomize_namespaced_install():
    chart = docs_of(helm.template(WITH_NAMESPACE, *NAMESPACED))
    kustomized = kustomize(DEPLOY / "namespaced")
    wrong = compare(chart, kustomized)
    assert not wrong, "\n".join(wrong)
    assert ("ClusterRole", "", "mission-control") not in {key(d) for d in chart}


def test_the_namespaced_mode_puts_a_role_in_each_guarded_namespace_and_watches_only_those():
    chart = docs_of(helm.template("rbac.mode=namespaced", "namespaces={team-a,team-b}",
                                  "rbac.secretNames={pager-route}"))
    roles = {key(d) for d in chart if d["kind"] in ("Role", "RoleBinding")}
    assert roles == {(kind, ns, name) for kind in ("Role", "RoleBinding") for ns, name in [
        ("team-a", "mission-control"), ("team-b", "mission-control"),
        ("mission-control", "mission-control-webhook-tls")]}, roles
    (role,) = [d for d in chart if key(d) == ("Role", "team-a", "mission-control")]
    (secrets,) = [r for r in role["rules"] if r["resources"] == ["secrets"]]
    assert secrets == {"apiGroups": [""], "resources": ["secrets"],
                       "resourceNames": ["pager-route"], "verbs": ["get"]}
    (operator,) = [d for d in chart if d["kind"] == "Deployment"]
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=team-a", "--namespace=team-b"]
    assert "Namespace" not in {d["kind"] for d in chart}   # --create-namespace by default


def test_operator_flags_follow_the_values():
    chart = docs_of(helm.template(
        "protectedNamespaces={kube-system,payments}", "clusterPolicyNamespaces={platform}",
        "allowReferenceNamespaces={replays}", "replicas=3", "image.repository=reg/mc",
        "image.tag=1.2.3", "prometheus.url=http://prom:9090", "leaseDuration=30s",
        "prometheus.bearerTokenSecret.name=prom-token", "instance=blue", crds=False))
    (operator,) = [d for d in chart if d["kind"] == "Deployment"]
    assert operator["spec"]["replicas"] == 3
    pod = operator["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "reg/mc:1.2.3"
    args = container["args"]
    for arg in ("--protected-namespaces=kube-system,payments",
                "--cluster-policy-namespace=platform", "--allow-reference-namespace=replays",
                "--lease-duration=30s", "--instance=blue",
                "--lease=mission-control/mission-control-blue",
                "--webhook-secret=mission-control/mission-control-blue-webhook-tls",
                "--prometheus-bearer-token-file=/var/run/secrets/prometheus/token"):
        assert arg in args, (arg, args)
    assert {"name": "PROMETHEUS_URL", "value": "http://prom:9090"} in container["env"]
    assert {"name": "prometheus-credentials", "secret": {"secretName": "prom-token", "items": [
        {"key": "token", "path": "token"}]}} in pod["volumes"]
    assert {"name": "prometheus-credentials", "mountPath": "/var/run/secrets/prometheus",
            "readOnly": True} in container["volumeMounts"]
    # With an instance every cluster-wide name is its own, the webhook configuration's too,
    # and the role names that configuration.
    (config,) = [d for d in chart if d["kind"] == "ValidatingWebhookConfiguration"]
    assert config["metadata"]["name"] == "mission-control-freeze-blue"
    (role,) = [d for d in chart if d["kind"] == "ClusterRole"]
    assert role["metadata"]["name"] == "mission-control-blue"
    assert ["mission-control-freeze-blue"] in [r.get("resourceNames") for r in role["rules"]]
    # [] protects nothing; null (the default) leaves the operator's own default.
    none = docs_of(helm.template("protectedNamespaces=null", crds=False))
    args = next(d for d in none if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert not [a for a in args if a.startswith("--protected-namespaces")]
    empty = docs_of(helm.run("template", "mc", str(helm.CHART), "--set-json",
                             "protectedNamespaces=[]").stdout)
    args = next(d for d in empty if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert "--protected-namespaces=" in args, args


def test_prometheus_basic_auth_passes_the_user_and_the_mounted_password():
    chart = docs_of(helm.template("prometheus.basicAuth.username=mc",
                                  "prometheus.basicAuth.passwordSecret.name=prom-login",
                                  crds=False))
    (operator,) = [d for d in chart if d["kind"] == "Deployment"]
    pod = operator["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--prometheus-username=mc" in args, args
    assert "--prometheus-password-file=/var/run/secrets/prometheus/password" in args, args
    assert {"name": "prometheus-credentials", "secret": {"secretName": "prom-login", "items": [
        {"key": "password", "path": "password"}]}} in pod["volumes"]
    # The flags are the operator's own: its parser takes exactly what the chart passes.
    parsed = parser().parse_args(args)
    assert (parsed.prometheus_username, parsed.prometheus_password_file) == (
        "mc", "/var/run/secrets/prometheus/password")


def test_prometheus_headers_ca_and_the_cluster_name_reach_the_operator():
    chart = docs_of(helm.template("prometheus.headers.X-Scope-OrgID=team-a",
                                  "prometheus.headersSecret.name=prom-headers",
                                  "prometheus.caSecret.name=prom-ca", "clusterName=prod-east",
                                  crds=False))
    (operator,) = [d for d in chart if d["kind"] == "Deployment"]
    pod = operator["spec"]["template"]["spec"]
    container = pod["containers"][0]
    parsed = parser().parse_args(container["args"])
    assert (parsed.prometheus_header, parsed.prometheus_headers_file,
            parsed.prometheus_ca_file) == (
        ["X-Scope-OrgID=team-a"], "/var/run/secrets/prometheus-headers/headers",
        "/var/run/secrets/prometheus-ca/ca.crt")
    assert {"name": "prometheus-ca", "secret": {"secretName": "prom-ca", "items": [
        {"key": "ca.crt", "path": "ca.crt"}]}} in pod["volumes"]
    assert {"name": "MISSIONCONTROL_CLUSTER_NAME", "value": "prod-east"} in container["env"]


def test_every_flag_the_chart_can_pass_is_one_the_operator_takes():
    for values in [(), NAMESPACED, ("prometheus.bearerTokenFile=/t", "instance=x",
                                    "protectedNamespaces={a}", "clusterPolicyNamespaces={p}",
                                    "allowReferenceNamespaces={r}", "leaseDuration=20s",
                                    "webhookCertValidity=48h", "verbose=true")]:
        chart = docs_of(helm.template(*values, crds=False))
        (operator,) = [d for d in chart if d["kind"] == "Deployment"]
        args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
        parser().parse_args(args)   # SystemExit on a flag it does not know


@pytest.mark.parametrize("values, message", [
    (("rbac.mode=namespaced",), "rbac.mode=namespaced needs namespaces"),
    (("rbac.mode=everything",), "at '/rbac/mode': value must be one of 'cluster', "
                                "'namespaced'"),
    # values.schema.json: a misspelt value is an error, not silently ignored.
    (("nameSpaces={a}",), "additional properties 'nameSpaces' not allowed"),
    (("namespaces={Team_A}",), "at '/namespaces/0'"),
    (("replicas=two",), "at '/replicas'"),
    (("prometheus.bearerTokenSecret.name=a", "prometheus.bearerTokenFile=/b"),
     "prometheus: set one of"),
    (("prometheus.bearerTokenFile=/b", "prometheus.basicAuth.username=u"),
     "prometheus: set one of"),
    (("prometheus.basicAuth.username=u",), "basicAuth.username needs basicAuth.passwordSecret"),
])
def test_values_that_cannot_work_are_refused_with_a_reason(values, message):
    args = ["template", "mc", str(helm.CHART)]
    for value in values:
        args += ["--set", value]
    result = helm.run(*args, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def bare_chart(tmp_path) -> Path:
    """A copy of the chart without the rule and dashboard files it ships."""
    chart = tmp_path / "mission-control"
    shutil.copytree(helm.CHART, chart)
    for shipped in [*(chart / "files" / "rules").glob("*.yaml"),
                    *(chart / "files" / "dashboards").glob("*.json")]:
        shipped.unlink()
    return chart


@pytest.mark.parametrize("value, message", [
    ("prometheusRule.enabled=true", "prometheusRule.enabled: no rules"),
    ("dashboards.enabled=true", "dashboards.enabled: no dashboards"),
])
def test_a_toggle_with_nothing_to_render_is_refused(tmp_path, value, message):
    result = helm.run("template", "mc", str(bare_chart(tmp_path)), "--set", value, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_shipped_rules_and_dashboard_render_when_switched_on():
    """deploy/monitoring/'s alert rules and dashboard, as the chart ships them."""
    shipped = yaml.safe_load((REPO / "deploy" / "monitoring" / "rules.yaml").read_text())
    rendered = docs_of(helm.run("template", "mc", str(helm.CHART), "--namespace=mission-control",
                                "--set", "prometheusRule.enabled=true",
                                "--set", "dashboards.enabled=true").stdout)
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == shipped["groups"]
    (configmap,) = [d for d in rendered if d["kind"] == "ConfigMap"]
    (text,) = configmap["data"].values()
    assert json.loads(text) == json.loads(
        (REPO / "deploy" / "monitoring" / "dashboard.json").read_text())


def test_monitoring_objects_are_off_by_default_and_render_when_asked(tmp_path):
    default = {d["kind"] for d in docs_of(helm.template(crds=False))}
    assert not default & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}, default
    chart = bare_chart(tmp_path)   # the groups and dashboards given as values alone
    rules = {"name": "mission-control", "rules": [
        {"alert": "MissionControlDown", "expr": "absent(up{job=\"mission-control\"})"}]}
    dashboard = '{"title": "Mission Control", "panels": []}'
    rendered = docs_of(helm.run(
        "template", "mc", str(chart), "--namespace=mission-control",
        "--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=kps",
        "--set", "prometheusRule.enabled=true",
        "--set-json", f"prometheusRule.groups={json.dumps([rules])}",
        "--set", "dashboards.enabled=true",
        "--set-json", f"dashboards.json={json.dumps({'mission-control.json': dashboard})}",
    ).stdout)
    by_kind = {d["kind"]: d for d in rendered}
    monitor = by_kind["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (service,) = [d for d in rendered if d["kind"] == "Service"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert by_kind["PrometheusRule"]["spec"]["groups"] == [rules]
    configmap = by_kind["ConfigMap"]
    assert configmap["metadata"]["name"] == "mission-control-dashboard-mission-control"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["mission-control.json"]) == json.loads(dashboard)


def test_the_chart_lints_in_both_modes():
    for values in ((), NAMESPACED):
        args = ["lint", "--strict", str(helm.CHART)]
        for value in values:
            args += ["--set", value]
        result = helm.run(*args, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout, result.stdout


def test_the_charts_copies_are_their_sources_byte_for_byte():
    """crds/ (and deploy/monitoring/, once it ships rules or dashboards): Helm reads nothing
    outside the chart, so the chart keeps copies; `make chart-files` renews them."""
    check = subprocess.run([sys.executable, str(REPO / "hack" / "chart_files.py"), "--check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    copies = sorted(p.name for p in (helm.CHART / "crds").iterdir())
    sources = sorted(p.name for p in (REPO / "crds").glob("*.yaml")
                     if p.name != "kustomization.yaml")
    assert copies == sources and len(copies) == 4, (copies, sources)
    for name in copies:
        assert (helm.CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes()


def test_rule_and_dashboard_files_in_the_chart_render_when_switched_on(tmp_path):
    """What `make chart-files` copies from deploy/monitoring/ is what the toggles render: a
    rule file's groups and a PrometheusRule's spec.groups alike, each dashboard file as its
    own ConfigMap. (A copy of the chart, so the repository's files/ stays as shipped.)"""
    chart = bare_chart(tmp_path)
    down = {"name": "availability", "rules": [{"alert": "MissionControlDown",
                                               "expr": "up{job=\"mission-control\"} == 0"}]}
    slo = {"name": "incidents", "rules": [{"alert": "MissionControlSLOBreached",
                                           "expr": "missioncontrol_incident_slo_breached > 0"}]}
    (chart / "files" / "rules" / "a.yaml").write_text(yaml.safe_dump({"groups": [down]}))
    (chart / "files" / "rules" / "b.yaml").write_text(yaml.safe_dump({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "x"}, "spec": {"groups": [slo]}}))
    (chart / "files" / "dashboards" / "Mission_Control.json").write_text(
        json.dumps({"title": "Mission Control", "panels": [{"type": "timeseries"}]}, indent=2))
    off = {d["kind"] for d in docs_of(helm.run("template", "mc", str(chart)).stdout)}
    assert not off & {"PrometheusRule", "ConfigMap"}, off
    rendered = docs_of(helm.run("template", "mc", str(chart), "--namespace=mission-control",
                                "--set", "prometheusRule.enabled=true",
                                "--set", "dashboards.enabled=true").stdout)
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == [down, slo]
    (configmap,) = [d for d in rendered if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["name"] == "mission-control-dashboard-mission-control"
    assert json.loads(configmap["data"]["Mission_Control.json"])["panels"] == [
        {"type": "timeseries"}]


def test_chart_files_copies_crds_rules_and_dashboards_and_finds_stale_copies(tmp_path):
    """hack/chart_files.py on a repository laid out like this one: CRDs (not kustomize's
    list), dashboards and rule files from deploy/monitoring/ (not its other manifests)."""
    spec = importlib.util.spec_from_file_location("chart_files", REPO / "hack" / "chart_files.py")
    chart_files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chart_files)
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "incidents.yaml").write_text("kind: CustomResourceDefinition\n")
    (tmp_path / "crds" / "kustomization.yaml").write_text("resources: [incidents.yaml]\n")
    monitoring = tmp_path / "deploy" / "monitoring"
    monitoring.mkdir(parents=True)
    (monitoring / "alerts.yaml").write_text("groups:\n- name: a\n  rules: []\n")
    (monitoring / "servicemonitor.yaml").write_text("kind: ServiceMonitor\nspec: {}\n")
    (monitoring / "dashboard.json").write_text('{"title": "t"}')
    chart = tmp_path / "deploy" / "helm" / "mission-control"
    (chart / "crds").mkdir(parents=True)
    (chart / "crds" / "old.yaml").write_text("gone")
    assert set(chart_files.stale(tmp_path)) == {
        "deploy/helm/mission-control/crds/incidents.yaml differs from crds/incidents.yaml",
        "deploy/helm/mission-control/files/dashboards/dashboard.json differs from "
        "deploy/monitoring/dashboard.json",
        "deploy/helm/mission-control/files/rules/alerts.yaml differs from "
        "deploy/monitoring/alerts.yaml",
        "deploy/helm/mission-control/crds/old.yaml has no source"}
    chart_files.sync(tmp_path)
    assert chart_files.stale(tmp_path) == []
    assert sorted(str(p.relative_to(chart)) for p in chart.rglob("*") if p.is_file()) == [
        "crds/incidents.yaml", "files/dashboards/dashboard.json", "files/rules/alerts.yaml"]
