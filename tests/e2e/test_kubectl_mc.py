"""`kubectl mc` on the real control plane: kubectl itself finds the plugin (the `kubectl-mc`
console script on PATH) and an incident is driven through it from detection to closure, by
two identities; a paused policy opens nothing during its window and resumes by itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from e2e.conftest import events_for, rb001_policy, ready, wait_ready
from harness import kubectl
from harness.procs import wait_for
from missioncontrol import timeutil

pytestmark = pytest.mark.cluster

SCRIPTS = Path(sys.executable).parent   # where pip put kubectl-mc (the venv's bin)


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(SCRIPTS), os.environ.get("PATH", "")])
    assert shutil.which("kubectl-mc", path=path), f"kubectl-mc is not installed in {SCRIPTS}"
    return {**os.environ, "PATH": path}


def mc(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`kubectl mc ARGS`: through kubectl's own plugin lookup (flags go after the plugin's
    name: kubectl does not look plugins up behind global flags)."""
    result = subprocess.run([kubectl.binary(), "mc", *args, f"--kubeconfig={kubeconfig}"],
                            capture_output=True, text=True, timeout=60, env=_env())
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl mc {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
    return result


def table(output: str) -> list[dict[str, str]]:
    """Rows of a table, cut at the header's column starts (cells may hold spaces)."""
    header, *rows = output.rstrip("\n").splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*starts[1:], None]
    return [{name: row[start:end].strip() for name, start, end in
             zip(header.split(), starts, bounds, strict=True)} for row in rows]


def responder(env, namespace: str, name: str, tmp_path: Path, *, users: tuple[str, ...] = ()
              ) -> Path:
    """A second person: a ServiceAccount allowed to read and edit Incidents (nothing else),
    and a kubeconfig holding its token; `users` get the same rights (to be impersonated)."""
    core, rbac = client.CoreV1Api(env.api), client.RbacAuthorizationV1Api(env.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "incident-responder"}, "rules": [
        {"apiGroups": ["missioncontrol.dev"], "resources": ["incidents"],
         "verbs": ["get", "list", "watch", "patch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "incident-responder"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "incident-responder"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace},
                     *({"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
                       for user in users)]})
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(Path(env.kubeconfig).read_text())
    context = next(c["context"] for c in admin["contexts"]
                   if c["name"] == admin["current-context"])
    cluster = next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"])
    path = tmp_path / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "test", "user": name,
                                                "namespace": namespace}}],
        "current-context": name}))
    path.chmod(0o600)
    return path


class Watching:
    """`kubectl mc get -w` running, its lines collected as they come."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [kubectl.binary(), "mc", "get", "-w", "-n", namespace, f"--kubeconfig={kubeconfig}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""


def test_an_incident_is_driven_through_kubectl_mc_by_two_identities(
        rb001, cluster, env, tmp_path, measured):
    ns, admin = cluster.namespace, Path(env.kubeconfig)
    cluster.create(rb001_policy())
    op = rb001.start_operator()
    rb001.healthy_checkout()
    # Recovery now takes 10 minutes to confirm: the incident stays open, frozen, meanwhile.
    cluster.patch("IncidentPolicy", "checkout-guard", {"spec": {"overrides": {
        "recovery": {"slo": "30m", "stableFor": "10m"}}}})
    watching = Watching(admin, ns)
    try:
        cluster.release("checkout", image="shop/checkout:2.0", ready=False)
        name = cluster.one_incident()["metadata"]["name"]
        wait_for(lambda: {p["role"] for p in (cluster.get("Incident", name).get("status") or {})
                          .get("pages") or [] if p["outcome"] == "delivered"}
                 >= {"release-owner", "oncall-backend"}, timeout=60, what="both roles paged")
        cluster.wait_phase(name, "Mitigated", timeout=60)

        # get: the board, in this namespace and across all of them.
        (row,) = table(mc(admin, "get", "-n", ns).stdout)
        assert (row["NAME"], row["RUNBOOK"], row["TARGET"], row["SEVERITY"], row["PHASE"],
                row["FREEZE"], row["ACKED"]) == (name, "RB-001", "checkout", "SEV2",
                                                 "Mitigated", "on (Namespace)", "0/2")
        assert row["SLO"].endswith(" left"), row
        everywhere = [r for r in table(mc(admin, "get", "-A").stdout) if r["NAMESPACE"] == ns]
        assert [r["NAME"] for r in everywhere] == [name]

        # describe: what happened, at a glance.
        described = mc(admin, "describe", name, "-n", ns).stdout
        assert "Target:      Deployment " + f"{ns}/checkout" in described
        assert "Freeze:      active since" in described
        assert "Rollback:    revision 2 -> 1" in described
        steps = described[described.index("Steps:"):described.index("Pages:")]
        assert "rollback" in steps and "Succeeded" in steps
        assert f"changed Deployment {ns}/checkout" in steps
        assert "release-owner" in described[described.index("Pages:"):]
        assert f"kubectl mc ack {name} -n {ns} --role" in described

        # ack: two people at once, each as who the API server knows them by; both kept.
        grace = responder(env, ns, "oncall-grace", tmp_path, users=("ada",))
        both = [subprocess.Popen([kubectl.binary(), "mc", "ack", name, "-n", ns, "--role",
                                  role, f"--kubeconfig={config}"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=_env())
                for role, config in (("release-owner", admin), ("oncall-backend", grace))]
        outs = [p.communicate(timeout=60) for p in both]
        assert [p.returncode for p in both] == [0, 0], outs
        grace_user = f"system:serviceaccount:{ns}:oncall-grace"
        assert outs[0][0].strip() == (f"incident.missioncontrol.dev/{name} acknowledged "
                                      f"(release-owner by admin)")
        assert outs[1][0].strip().endswith(f"(oncall-backend by {grace_user})")
        # A third, impersonated (kubectl's --as), and the same person again changes nothing.
        mc(admin, "ack", name, "-n", ns, "--role", "release-owner", "--as", "ada")
        again = mc(grace, "ack", name, "--role", "oncall-backend").stdout   # its context's ns
        assert "already acknowledged" in again
        acks = cluster.get("Incident", name)["spec"]["acknowledgements"]
        assert [(a["role"], a["by"]) for a in acks] in (
            [("release-owner", "admin"), ("oncall-backend", grace_user), ("release-owner", "ada")],
            [("oncall-backend", grace_user), ("release-owner", "admin"), ("release-owner", "ada")])
        assert all(timeutil.parse(a["at"]) for a in acks)
        # The operator took both in: re-paging stops for both roles.
        wait_for(lambda: {p["role"] for p in cluster.get("Incident", name)["status"]["pages"]
                          if p.get("acknowledgedAt")} >= {"release-owner", "oncall-backend"},
                 timeout=30, what="both pages acknowledged in the incident's status")
        (row,) = table(mc(admin, "get", "-n", ns).stdout)
        assert row["ACKED"] == "2/2"
        wait_for(lambda: any("2/2" in line for line in watching.lines), timeout=30,
                 what="kubectl mc get -w to show the acknowledgements")
    finally:
        err = watching.stop()
    assert watching.lines[0].split()[:2] == ["NAME", "RUNBOOK"], (watching.lines, err)
    measured.append(f"kubectl mc get -w printed {len(watching.lines)} lines while the incident "
                    f"was acknowledged")

    # severity, lift-freeze.
    assert mc(admin, "severity", name, "SEV1", "-n", ns).stdout.strip().endswith("severity SEV1")
    wait_for(lambda: cluster.get("Incident", name)["status"].get("severity") == "SEV1",
             timeout=30, what="the operator to act on SEV1")
    mc(admin, "lift-freeze", name, "-n", ns)
    wait_for(lambda: not cluster.get("Incident", name)["status"]["freeze"]["active"],
             timeout=30, what="the freeze to lift")
    env.kubectl("set", "image", "deployment/checkout", "app=shop/checkout:3.0", namespace=ns)

    # close: refused with the API's words without action items, or with one unassigned.
    refused = mc(admin, "close", name, "-n", ns, check=False)
    assert refused.returncode == 1
    assert "spec.close is true but spec.actionItems is empty" in refused.stderr, refused.stderr
    refused = mc(admin, "close", name, "-n", ns, "--action-item", "title=Add a canary",
                 check=False)
    assert refused.returncode == 1
    assert "an action item has no assignee" in refused.stderr, refused.stderr
    spec = cluster.get("Incident", name)["spec"]
    assert "actionItems" not in spec and not spec.get("close")   # nothing half-written
    closed = mc(admin, "close", name, "-n", ns, "--action-item",
                "title=Gate releases on readiness, then a canary,assignee=grace,due=2030-02-01",
                "--action-item", "title=Alert on the freeze,assignee=ada")
    assert closed.stdout.strip().endswith("closed (2 action item(s))")
    body = cluster.wait_phase(name, "Closed", timeout=30)
    assert [i["title"] for i in body["spec"]["actionItems"]] == [
        "Gate releases on readiness, then a canary", "Alert on the freeze"]

    listed = json.loads(mc(admin, "get", "-n", ns, "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == [name]
    assert yaml.safe_load(mc(admin, "get", name, "-n", ns, "-o", "yaml").stdout)[
        "items"][0]["status"]["phase"] == "Closed"
    postmortem = mc(admin, "postmortem", name, "-n", ns).stdout
    assert postmortem.startswith(f"# Postmortem: {name}")
    assert "Gate releases on readiness" in postmortem
    print(mc(admin, "describe", name, "-n", ns).stdout)   # shown with -s: a real incident
    op.check_alive()


def test_a_paused_policy_opens_nothing_in_its_window_and_resumes_by_itself(
        rb001, cluster, env, measured):
    ns, admin = cluster.namespace, Path(env.kubeconfig)
    cluster.create(rb001_policy())
    op = rb001.start_operator()
    rb001.healthy_checkout()

    # resume ends a pause at once.
    mc(admin, "pause", "checkout-guard", "-n", ns, "--for", "1h", "--reason", "drill")
    wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Paused")
    assert mc(admin, "resume", "checkout-guard", "-n", ns).stdout.strip().endswith("resumed")
    wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Guarding")
    assert "pausedUntil" not in cluster.get("IncidentPolicy", "checkout-guard")["spec"]

    paused = mc(admin, "pause", "checkout-guard", "-n", ns, "--for", "40s", "--reason",
                "db migration")
    spec = cluster.get("IncidentPolicy", "checkout-guard")["spec"]
    until = timeutil.parse(spec["pausedUntil"])
    assert (spec["pauseReason"], spec["pausedBy"]) == ("db migration", "admin")
    assert f"paused until {spec['pausedUntil']}" in paused.stdout
    wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Paused")

    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    # The guard sees the broken release and holds its incident back, saying so.
    held = f"held back: an incident for {ns}/checkout (readiness)"
    condition = wait_for(lambda: (c := ready(cluster, "IncidentPolicy", "checkout-guard"))
                         and held in c["message"] and c, timeout=35,
                         what="the guard to hold the incident back")
    assert condition["reason"] == "Paused"
    assert f"paused until {spec['pausedUntil']} by admin: db migration" in condition["message"]
    events = events_for(cluster, "checkout-guard")
    assert any(e.startswith("IncidentHeld: not opening an incident for "
                            f"{ns}/checkout (readiness)") for e in events), events
    assert any(e.startswith("Paused: paused until") for e in events), events
    state = cluster.target_state("checkout-guard", "checkout")
    assert state["checks"]["readiness"]["failures"] >= 3
    assert time.time() < until, "the window ended before the guard was seen holding"
    assert cluster.incidents() == []
    image = cluster.deployment("checkout").spec.template.spec.containers[0].image
    assert image == "shop/checkout:2.0"   # not rolled back while paused

    # The window ends by itself: nobody edits the policy, the incident opens and rolls back.
    incident = cluster.one_incident(timeout=until - time.time() + 60)
    opened = timeutil.parse(incident["metadata"]["creationTimestamp"])
    assert opened >= int(until), (opened, until)
    measured.append(f"paused policy: incident opened {opened - until:.1f} s after its "
                    f"window ended")
    wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Guarding", timeout=30)
    wait_for(lambda: cluster.deployment("checkout").spec.template.spec.containers[0].image
             == "shop/checkout:1.0", timeout=60, what="the rollback after the pause")
    op.check_alive()
