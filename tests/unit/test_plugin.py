"""`kubectl mc`: what it prints (view) and the patches it sends (edits), from Incident bodies
as the API returns them."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from kubernetes.client import ApiException

from missioncontrol import timeutil
from missioncontrol.plugin import edits, main, view

T0 = timeutil.parse("2030-01-01T10:00:00Z")


def at(seconds: float) -> str:
    return timeutil.iso_precise(T0 + seconds)


def incident(**spec: object) -> dict:
    return {
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
        "metadata": {"name": "rb-001-checkout-r2", "namespace": "shop",
                     "creationTimestamp": timeutil.iso(T0), "resourceVersion": "7"},
        "spec": {"runbook": {"name": "rb-001", "id": "RB-001"}, "policy": "checkout-guard",
                 "target": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
                 "severity": "SEV2", "owner": "Ada Lovelace", "mode": "enforce",
                 "summary": "RB-001 Failed Production Deployment: readiness: 1 pod not Ready",
                 **spec},
        "status": {
            "phase": "Mitigated", "mode": "enforce", "severity": "SEV2",
            "detectedAt": at(0), "reason": "readiness: 1 pod not Ready",
            "slo": {"deadline": at(1200), "breached": False, "status": "18m left"},
            "conditions": [{"type": "Active", "status": "True", "reason": "Detected",
                            "message": "RB-001 fired", "lastTransitionTime": at(0)}],
            "steps": [
                {"id": "freeze", "action": "freezeDeployments", "state": "Succeeded",
                 "startedAt": at(1), "finishedAt": at(2), "message": "froze shop",
                 "changes": [{"kind": "Namespace", "name": "shop",
                              "field": "metadata.labels[missioncontrol.dev/frozen]",
                              "to": "true"}]},
                {"id": "rollback", "action": "rollback", "state": "Succeeded",
                 "startedAt": at(2), "finishedAt": at(5), "message": "rolled back",
                 "changes": [{"kind": "Deployment", "namespace": "shop", "name": "checkout",
                              "field": "spec.template", "from": "revision 2",
                              "to": "revision 1"}]}],
            "pages": [
                {"role": "release-owner", "contact": "Ada", "route": "Webhook", "kind": "page",
                 "at": at(3), "outcome": "delivered", "attempts": 1},
                {"role": "oncall-backend", "contact": "Grace", "route": "Webhook",
                 "kind": "page", "at": at(3), "outcome": "delivered", "attempts": 1}],
            "freeze": {"active": True, "scope": "Namespace", "since": at(1),
                       "objects": ["Namespace/shop"]},
            "rollback": {"fromRevision": 2, "toRevision": 1, "toReplicaSet": "checkout-a"},
            "timeline": [{"at": at(0), "type": "Detected", "message": "readiness fired"},
                         {"at": at(5), "type": "Mitigated", "message": "first response done"}],
        },
    }


# -- the board --------------------------------------------------------------------------------
def test_the_board_shows_slo_left_as_of_now_the_freeze_and_who_acknowledged() -> None:
    body = incident(acknowledgements=[{"role": "release-owner", "by": "ada"}])
    header, row = view.board([body], T0 + 300, all_namespaces=True)
    assert header.split() == ["NAMESPACE", *view.BOARD]
    cells = [c for c in row.split("   ") if c]
    assert [c.strip() for c in cells] == [
        "shop", "rb-001-checkout-r2", "RB-001", "checkout", "SEV2", "Mitigated", "15m left",
        "on (Namespace)", "1/2", "-", "Ada Lovelace", "5m"]
    # Columns line up under their header.
    assert row.index("Mitigated") == header.index("PHASE")
    assert row.index("1/2") == header.index("ACKED")


def test_the_slo_column_says_breached_met_or_nothing_yet() -> None:
    body = incident()
    assert view.slo_left(view.Incident.of(body), T0 + 1201) == "breached"
    body["status"].update(phase="Resolved", resolvedAt=at(600),
                          slo={"deadline": at(1200), "status": "10m left"})
    assert view.slo_left(view.Incident.of(body), T0 + 5000) == "met"
    body["status"]["resolvedAt"] = at(1300)
    assert view.slo_left(view.Incident.of(body), T0 + 5000) == "breached"
    # Closed before it recovered: the clock stopped, nothing is "left".
    body["status"].update(phase="Closed", resolvedAt=None)
    assert view.slo_left(view.Incident.of(body), T0 + 700) == "-"
    body["status"] = {}
    assert view.board_row(body, T0, all_namespaces=False)[4:7] == ["-", "-", "-"]


def test_a_lifted_freeze_and_nobody_paged_read_plainly() -> None:
    body = incident()
    body["status"]["freeze"] = {"active": False, "liftedAt": at(60)}
    body["status"]["pages"] = []
    i = view.Incident.of(body)
    assert (view.freeze(i), view.acked(i)) == ("lifted", "-")


# -- describe ---------------------------------------------------------------------------------
def test_describe_reads_at_a_glance() -> None:
    text = view.describe(incident(acknowledgements=[
        {"role": "release-owner", "by": "ada", "at": timeutil.iso(T0 + 60)},
        {"role": "release-owner", "by": "bob", "at": timeutil.iso(T0 + 61)}],
        actionItems=[{"title": "Add a readiness gate", "assignee": "grace"}]), T0 + 300)
    lines = text.splitlines()
    assert lines[0].split() == ["Name:", "rb-001-checkout-r2"]
    head = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[:16]
            if ":" in line and not line.startswith(" ")}
    assert head["Target"] == "Deployment shop/checkout"
    assert head["SLO"] == "15m left, deadline 10:20:00 UTC"
    assert head["Freeze"] == "active since 10:00:01 (4m59s ago), scope Namespace, Namespace/shop"
    assert head["Rollback"] == "revision 2 -> 1 (checkout-a)"
    assert "Steps:" in lines and "Pages:" in lines and "Timeline:" in lines
    # Each step's changes sit under it.
    rollback = next(i for i, line in enumerate(lines) if line.strip().startswith("rollback"))
    assert "changed Deployment shop/checkout spec.template: revision 2 -> revision 1" in \
        lines[rollback + 1]
    assert lines[rollback].split()[:4] == ["rollback", "rollback", "Succeeded", "3s"]
    page = next(line for line in lines if line.strip().startswith("release-owner") and
                "delivered" in line)
    assert page.split()[-2:] == ["ada,", "bob"]          # every acknowledgement of the role
    freeze = next(i for i, line in enumerate(lines) if line.strip().startswith("freeze"))
    assert "changed Namespace shop metadata.labels" in lines[freeze + 1]
    assert any(line.split()[:2] == ["Add", "a"] and "grace" in line for line in lines)
    # What to do next, as commands to copy.
    assert "Acknowledge: kubectl mc ack rb-001-checkout-r2 -n shop --role oncall-backend" in text
    assert "Lift the freeze: kubectl mc lift-freeze rb-001-checkout-r2 -n shop" in text


def test_describe_of_an_incident_without_status_says_so() -> None:
    body = incident()
    body["status"] = {}
    text = view.describe(body, T0)
    assert "(no status yet)" in text and "Steps: none" in text and "Pages: none" in text


# -- acknowledgements -------------------------------------------------------------------------
def test_the_first_acknowledgement_creates_the_list_only_if_it_is_still_absent() -> None:
    ack, ops = edits.acknowledgement(incident(), role="release-owner", by="ada", now=T0)
    assert ack == edits.Ack("release-owner", "ada")
    assert ops == [{"op": "test", "path": "/spec/acknowledgements", "value": None},
                   {"op": "add", "path": "/spec/acknowledgements", "value": [
                       {"role": "release-owner", "by": "ada", "at": "2030-01-01T10:00:00Z"}]}]


def test_a_later_acknowledgement_is_appended_never_replacing_the_list() -> None:
    body = incident(acknowledgements=[{"role": "release-owner", "by": "ada"}])
    _, ops = edits.acknowledgement(body, role=None, by="grace", now=T0)
    assert ops == [{"op": "add", "path": "/spec/acknowledgements/-", "value": {
        "role": "oncall-backend", "by": "grace", "at": "2030-01-01T10:00:00Z"}}]
    # The same person again for the same role: nothing to write.
    assert edits.acknowledgement(body, role="release-owner", by="ada", now=T0)[1] is None
    # Another person for a role already acknowledged: kept beside the first.
    assert edits.acknowledgement(body, role="release-owner", by="bob", now=T0)[1][0][
        "path"] == "/spec/acknowledgements/-"


class Racing:
    """A cluster where a colleague's acknowledgement lands between our read and our write;
    the API server refuses a failed `test` with a bare 422, as a real one (v1.37) does."""

    def __init__(self, body: dict, *, colleague: dict | None, refusal: int | None = None
                 ) -> None:
        self.body, self.colleague, self.refusal, self.patches = body, colleague, refusal, []

    def get(self, kind: str, namespace: str, name: str) -> dict:
        return copy.deepcopy(self.body)

    def json_patch(self, kind: str, namespace: str, name: str, ops: list[dict]) -> dict:
        self.patches.append(ops)
        if self.colleague is not None:
            self.body["spec"]["acknowledgements"] = [self.colleague]
            self.colleague = None
        spec = self.body["spec"]
        if self.refusal is not None:
            raise ApiException(status=self.refusal, reason="Forbidden")
        if ops[0]["op"] == "test" and spec.get("acknowledgements") is not None:
            raise ApiException(status=422, reason="Unprocessable Entity")
        for op in ops:
            if op["path"] == "/spec/acknowledgements":
                spec["acknowledgements"] = op["value"]
            elif op["path"] == "/spec/acknowledgements/-":
                spec["acknowledgements"].append(op["value"])
        return copy.deepcopy(self.body)


def test_an_acknowledgement_racing_a_colleagues_first_one_is_appended_beside_it() -> None:
    grace = {"role": "oncall-backend", "by": "grace", "at": at(0)}
    racing = Racing(incident(), colleague=grace)
    session = SimpleNamespace(cluster=racing, namespace="shop")
    written, wrote = main._append(session, "inc", lambda body: edits.acknowledgement(
        body, role="release-owner", by="ada", now=T0)[1])
    assert wrote and [a["by"] for a in written["spec"]["acknowledgements"]] == ["grace", "ada"]
    assert [ops[0]["op"] for ops in racing.patches] == ["test", "add"]


def test_a_refusal_of_the_change_itself_is_not_retried() -> None:
    racing = Racing(incident(), colleague=None, refusal=403)
    session = SimpleNamespace(cluster=racing, namespace="shop")
    with pytest.raises(ApiException):
        main._append(session, "inc", lambda body: edits.close(body, []))
    assert len(racing.patches) == 1
    # A 422 with the list still absent is the API's rule refusing it: its words, at once.
    assert not edits.overtaken([{"op": "test", "path": "/spec/actionItems", "value": None}],
                               incident())
    assert edits.overtaken([{"op": "test", "path": "/spec/actionItems", "value": None}],
                           incident(actionItems=[{"title": "x"}]))


def test_the_role_must_be_said_when_it_is_not_obvious() -> None:
    with pytest.raises(edits.EditError, match="waiting for release-owner, oncall-backend"):
        edits.acknowledgement(incident(), role=None, by="ada", now=T0)
    with pytest.raises(edits.EditError, match="is not a role"):
        edits.acknowledgement(incident(), role="boss", by="ada", now=T0)


# -- closing ----------------------------------------------------------------------------------
def test_action_items_parse_with_commas_in_the_title() -> None:
    assert edits.action_item("title=Fix the probe, add a canary,assignee=ada,due=2030-02-01") \
        == {"title": "Fix the probe, add a canary", "assignee": "ada", "due": "2030-02-01"}
    assert edits.action_item("title=Write it down") == {"title": "Write it down"}
    for bad, problem in (("assignee=ada", "title is missing"), ("titel=x", "write title="),
                         ("title=a,title=b", "title given twice")):
        with pytest.raises(edits.EditError, match=problem):
            edits.action_item(bad)


def test_close_appends_its_items_and_sets_close() -> None:
    item = {"title": "x", "assignee": "ada"}
    assert edits.close(incident(), [item]) == [
        {"op": "test", "path": "/spec/actionItems", "value": None},
        {"op": "add", "path": "/spec/actionItems", "value": [item]},
        {"op": "add", "path": "/spec/close", "value": True}]
    assert edits.close(incident(actionItems=[item]), []) == [
        {"op": "add", "path": "/spec/close", "value": True}]


# -- severity, pause --------------------------------------------------------------------------
def test_severity_and_pause_are_checked_before_they_are_sent() -> None:
    assert edits.severity("SEV1") == {"spec": {"severity": "SEV1"}}
    with pytest.raises(edits.EditError, match="not a severity"):
        edits.severity("critical")
    until, patch = edits.pause(for_="2h", reason="db migration", by="ada", now=T0)
    assert until == T0 + 7200
    assert patch == {"spec": {"pausedUntil": "2030-01-01T12:00:00Z",
                              "pauseReason": "db migration", "pausedBy": "ada"}}
    for bad in ("2 hours", "200h"):
        with pytest.raises(edits.EditError, match="--for"):
            edits.pause(for_=bad, reason="x", by="ada", now=T0)
    assert edits.resume() == {"spec": {"pausedUntil": None, "pauseReason": None,
                                       "pausedBy": None}}


def test_the_usual_kubectl_flags_follow_the_command() -> None:
    args = main.parser().parse_args(["get", "-A", "-w", "-o", "json", "--context", "prod",
                                     "--kubeconfig", "k.yaml", "--as", "ada"])
    assert (args.all_namespaces, args.watch, args.output, args.context, args.kubeconfig,
            args.as_user) == (True, True, "json", "prod", "k.yaml", "ada")
    args = main.parser().parse_args(["close", "inc", "-n", "shop", "--action-item",
                                     "title=a,assignee=b", "--action-item", "title=c"])
    assert (args.namespace, args.action_item) == ("shop", ["title=a,assignee=b", "title=c"])


# -- the krew manifest ------------------------------------------------------------------------
def test_the_krew_archive_holds_the_launcher_and_the_manifest_its_sha256(tmp_path) -> None:
    import hashlib
    import importlib.util
    import tarfile
    from pathlib import Path

    import yaml

    hack = Path(__file__).resolve().parents[2] / "hack" / "plugin_archive.py"
    spec = importlib.util.spec_from_file_location("plugin_archive", hack)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    archive, manifest_path = module.build(tmp_path / "a")
    again, _ = module.build(tmp_path / "b")
    assert archive.read_bytes() == again.read_bytes()          # reproducible
    manifest = yaml.safe_load(manifest_path.read_text())
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "mc"
    (platform,) = manifest["spec"]["platforms"]
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert platform["bin"] == "kubectl-mc"
    with tarfile.open(archive) as tar:
        member = tar.getmember("kubectl-mc")
        assert member.mode & 0o111
        assert b"-m missioncontrol.plugin" in tar.extractfile(member).read()


def test_the_krew_launcher_runs_the_installed_plugin() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    launcher = Path(__file__).resolve().parents[2] / "deploy" / "krew" / "kubectl-mc"
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run([str(launcher), "--version"], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kubectl-mc ")


def test_describe_names_the_cluster_when_the_operator_has_one() -> None:
    body = incident()
    assert "Cluster:" not in view.describe(body, T0)
    body["status"]["cluster"] = "prod-east"
    assert "Cluster:     prod-east" in view.describe(body, T0)
