"""Approval gates on the real control plane: RB-001 with its rollback gated, a step that a
person rejects and one whose approval times out (proceed). The operator stops before each
gated step, pages its approvers once (a restart while it waits repeats nothing and loses
nothing), runs the rollback on `kubectl mc approve`, skips the rejected step, and runs the
timed-out one as the runbook says.

The operator runs with --cluster-name: its pages say which cluster, and their dedup key
starts with it (two clusters running the same incident names make two alerts)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from e2e.conftest import rb001_policy
from e2e.test_kubectl_mc import mc, table
from harness.procs import wait_for

pytestmark = pytest.mark.cluster


def gated_steps(steps: list[dict]) -> list[dict]:
    """RB-001's steps with the rollback waiting for release-owner's go, then two gated pages:
    one for a person to reject, one that proceeds once its approval times out."""
    steps = [dict(s) for s in steps if s["id"] != "page"]
    rollback = next(s for s in steps if s["id"] == "rollback")
    rollback.update(approval="required", approvers=["release-owner"])
    return [*steps,
            {"id": "tell-commander", "action": "notify", "approval": "required",
             "approvers": ["oncall-backend"],
             "notify": {"roles": ["incident-commander"], "message": "rollback done"}},
            {"id": "tell-platform", "action": "notify", "approval": "required",
             "approvers": ["oncall-backend"], "approvalTimeout": "4s",
             "onApprovalTimeout": "proceed",
             "notify": {"roles": ["platform-lead"], "message": "rollback done"}}]


def step_of(body: dict, step_id: str) -> dict:
    return next(s for s in body["status"]["steps"] if s["id"] == step_id)


def waiting_on(cluster, name: str, step_id: str) -> dict:
    return wait_for(lambda: (b := cluster.get("Incident", name)).get("status", {}).get(
        "awaitingApproval") == step_id and b, timeout=60, what=f"{step_id} to await approval")


def approval_pages(receiver, role: str, step_id: str) -> list:
    return [r for r in receiver.requests(f"/{role}")
            if f"step {step_id} " in (r.json or {}).get("summary", "")
            and "approval needed" in r.json["summary"]]


def test_gated_steps_wait_for_kubectl_mc_approve_reject_or_their_timeout(
        rb001, cluster, env, receiver, measured):
    ns, admin = cluster.namespace, Path(env.kubeconfig)
    runbook = cluster.get("Runbook", "rb-001")
    cluster.patch("Runbook", "rb-001", {"spec": {"firstResponse": {
        "steps": gated_steps(runbook["spec"]["firstResponse"]["steps"])}}})
    cluster.create(rb001_policy())
    first = rb001.start_operator("--cluster-name", "prod-east")
    rb001.healthy_checkout()
    # Recovery now takes long to confirm: the incident stays open through all three gates.
    cluster.patch("IncidentPolicy", "checkout-guard", {"spec": {"overrides": {
        "recovery": {"slo": "30m", "stableFor": "10m"}}}})
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]

    # The rollback waits: nothing is rolled back, its approver is paged, the board says so.
    body = waiting_on(cluster, name, "rollback")
    asked = step_of(body, "rollback")
    assert asked["state"] == "AwaitingApproval"
    assert step_of(body, "freeze")["state"] == "Succeeded"   # the steps before it ran
    assert step_of(body, "tell-commander")["state"] == "Pending"
    condition = next(c for c in body["status"]["conditions"] if c["type"] == "AwaitingApproval")
    assert (condition["status"], condition["reason"]) == ("True", "Waiting")
    assert f"kubectl mc approve {name} rollback -n {ns}" in condition["message"]
    (page,) = wait_for(lambda: approval_pages(receiver, "release-owner", "rollback"),
                       timeout=30, what="release-owner paged for the approval")
    assert (page.json["cluster"], page.json["dedupKey"]) == ("prod-east", f"prod-east/{ns}/{name}")
    assert body["status"]["cluster"] == "prod-east"
    (row,) = table(mc(admin, "get", "-n", ns).stdout)
    assert row["APPROVAL"] == "rollback waiting", row
    described = mc(admin, "describe", name, "-n", ns).stdout
    assert f"Approve: kubectl mc approve {name} rollback -n {ns}" in described
    assert cluster.deployment("checkout").spec.template.spec.containers[0].image == \
        "shop/checkout:2.0"

    # A restart while it waits: the wait goes on from when it began, nobody is paged again.
    first.kill()
    rb001.start_operator("--cluster-name", "prod-east")
    restarted = time.time()
    wait_for(lambda: cluster.target_state("checkout-guard", "checkout") and (
        ticked := cluster.get("IncidentPolicy", "checkout-guard")["status"].get("lastTick"))
        and ticked > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(restarted + 2)),
        timeout=60, what="the new operator to be guarding")
    body = cluster.get("Incident", name)
    assert step_of(body, "rollback")["approvalAskedAt"] == asked["approvalAskedAt"]
    assert step_of(body, "rollback")["state"] == "AwaitingApproval"
    assert len(approval_pages(receiver, "release-owner", "rollback")) == 1
    assert cluster.deployment("checkout").spec.template.spec.containers[0].image == \
        "shop/checkout:2.0"

    # Approved through kubectl mc: the rollback runs.
    approved = mc(admin, "approve", name, "rollback", "-n", ns).stdout
    assert approved.strip().startswith(f"incident.missioncontrol.dev/{name} step rollback "
                                       f"approved by admin")
    wait_for(lambda: cluster.deployment("checkout").spec.template.spec.containers[0].image
             == "shop/checkout:1.0", timeout=60, what="the approved rollback")
    body = waiting_on(cluster, name, "tell-commander")
    rollback = step_of(body, "rollback")
    assert (rollback["state"], rollback["approval"]) == ("Succeeded", "approved by admin")
    measured.append(f"approval gate: rollback ran {rollback['finishedAt']} after "
                    f"approval asked {asked['approvalAskedAt']}")

    # Rejected: skipped and recorded; its page never goes out.
    mc(admin, "reject", name, "tell-commander", "-n", ns, "--reason", "commander is on it")
    refused = mc(admin, "approve", name, "tell-commander", "-n", ns, check=False)
    assert refused.returncode == 2
    assert "already rejected by admin: the first decision stands" in refused.stderr

    # Timed out after 4s with onApprovalTimeout proceed: it runs without anyone's go.
    body = wait_for(lambda: (b := cluster.get("Incident", name)) and step_of(
        b, "tell-platform")["state"] == "Succeeded" and b, timeout=60,
        what="tell-platform to run once its approval timed out")
    skipped = step_of(body, "tell-commander")
    assert (skipped["state"], skipped["message"]) == (
        "Skipped", "rejected by admin (commander is on it)")
    timed_out = step_of(body, "tell-platform")
    assert timed_out["approval"] == "no approval within 4s: proceeding"
    assert not body["status"].get("awaitingApproval")
    condition = next(c for c in body["status"]["conditions"] if c["type"] == "AwaitingApproval")
    assert (condition["status"], condition["reason"]) == ("False", "TimedOut")
    types = [e["type"] for e in body["status"]["timeline"]]
    assert {"AwaitingApproval", "Approved", "StepSkipped", "ApprovalTimedOut"} <= set(types)
    wait_for(lambda: receiver.requests("/platform-lead"), timeout=30,
             what="platform-lead paged by the timed-out step")
    assert not [r for r in receiver.requests("/incident-commander")
                if "rollback done" in (r.json or {}).get("summary", "")]
