"""RB-001 end to end on the real control plane: detect a failed release, freeze, roll back,
recover; and the safety rails."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from e2e.conftest import Traffic, rb001_policy
from harness import objects
from harness.procs import wait_for

pytestmark = pytest.mark.cluster


def steps(incident: dict) -> dict[str, dict]:
    return {s["id"]: s for s in incident["status"].get("steps") or []}


def test_readiness_path_rolls_back_the_failed_release(rb001, cluster, receiver):
    cluster.create(rb001_policy())
    op = rb001.start_operator()
    rb001.healthy_checkout()

    cluster.release("checkout", image="shop/checkout:2.0", ready=False)

    incident = cluster.one_incident()
    name = incident["metadata"]["name"]
    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    status = resolved["status"]
    by_id = steps(resolved)
    assert by_id["freeze"]["state"] == "Succeeded"
    assert by_id["rollback"]["state"] == "Succeeded", by_id["rollback"]
    assert "to revision 1" in by_id["rollback"]["message"]
    assert status["rollback"]["fromRevision"] == 2 and status["rollback"]["toRevision"] == 1
    readiness = next(e for e in status["evidence"] if e["condition"] == "readiness")
    assert readiness["outcome"] == "Fail"
    assert "not Ready" in readiness["message"] or "readiness-probe" in readiness["message"]
    image = cluster.deployment("checkout").spec.template.spec.containers[0].image
    assert image == "shop/checkout:1.0"
    assert status["freeze"]["active"] is False
    assert resolved["spec"]["owner"] == "release-owner-person"
    pages = {p["role"]: p for p in status["pages"]}
    assert pages["release-owner"]["outcome"] == "delivered"
    assert pages["oncall-backend"]["outcome"] == "delivered"
    got = receiver.wait_for_requests("/release-owner", 1, timeout=10)
    assert got[0].json["incident"]["name"] == name
    op.check_alive()


def test_error_rate_path_rolls_back_a_release_that_errors(rb001, cluster, env):
    """The release's pods are Ready, but its error rate (real PromQL over scraped data)
    spikes: the error-rate condition fires after 3 consecutive failed checks."""
    policy = rb001_policy()
    rate = ('sum by (namespace, deployment) (rate(http_requests_total{{'
            'namespace=~"{{{{ .namespace }}}}", deployment=~"{{{{ .name }}}}"{codes}}}[5s]))')
    policy["spec"]["overrides"]["conditions"][1]["query"] = (
        rate.format(codes=', code=~"5.."') + " / " + rate.format(codes=""))
    cluster.create(policy)
    op = rb001.start_operator()
    rb001.healthy_checkout()
    traffic = Traffic(env, cluster, "checkout", bad_image="shop/checkout:2.0").start()
    try:
        wait_for(lambda: cluster.target_state("checkout-guard", "checkout")["checks"].get(
            "error-rate", {}).get("lastOutcome") == "Pass", timeout=60,
            what="the error-rate check to pass on real data")
        cluster.release("checkout", image="shop/checkout:2.0", ready=True)
        incident = cluster.one_incident()
        resolved = cluster.wait_phase(incident["metadata"]["name"], "Resolved", timeout=120)
    finally:
        traffic.stop()
    fired = next(e for e in resolved["status"]["evidence"] if e["condition"] == "error-rate")
    assert fired["outcome"] == "Fail" and fired["value"] > 0.05
    assert steps(resolved)["rollback"]["state"] == "Succeeded"
    image = cluster.deployment("checkout").spec.template.spec.containers[0].image
    assert image == "shop/checkout:1.0"
    op.check_alive()


def test_a_healthy_release_never_fires(rb001, cluster):
    cluster.create(rb001_policy())
    op = rb001.start_operator()
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=True)
    wait_for(lambda: cluster.target_state("checkout-guard", "checkout").get(
        "lastHealthyRevision") == 2, timeout=60, what="revision 2 recorded as healthy")
    state = cluster.target_state("checkout-guard", "checkout")
    readiness = state["checks"]["readiness"]
    assert readiness["failures"] == 0 and readiness["lastOutcome"] == "Pass"
    # No metrics exist for checkout: the error-rate condition is unknown, not failing.
    assert state["checks"]["error-rate"]["lastOutcome"] == "Unknown"
    assert cluster.incidents() == []
    op.check_alive()


def test_no_known_healthy_release_means_no_rollback_and_escalation(rb001, cluster, receiver):
    cluster.create(rb001_policy())
    op = rb001.start_operator()
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0", ready=False))
    incident = cluster.one_incident()
    name = incident["metadata"]["name"]

    def escalated() -> dict | None:
        body = cluster.get("Incident", name)
        rollback = steps(body).get("rollback", {})
        return body if rollback.get("state") == "Skipped" and body["status"].get(
            "escalated") else None

    body = wait_for(escalated, timeout=60, what="the rollback skipped and escalated")
    assert "no known healthy release" in steps(body)["rollback"]["message"]
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["Escalated"]["status"] == "True"
    assert body["status"]["phase"] in ("Mitigating", "Failed")
    receiver.wait_for_requests("/incident-commander", 1, timeout=30)
    image = cluster.deployment("checkout").spec.template.spec.containers[0].image
    assert image == "shop/checkout:1.0"   # untouched
    op.check_alive()


def test_dry_run_opens_the_incident_and_changes_nothing(rb001, cluster, receiver):
    cluster.create(rb001_policy(mode="dryRun"))
    op = rb001.start_operator()
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    incident = cluster.one_incident()
    name = incident["metadata"]["name"]

    def planned() -> dict | None:
        body = cluster.get("Incident", name)
        by_id = steps(body)
        return body if all(by_id.get(s, {}).get("state") in ("Planned", "Succeeded")
                           for s in ("freeze", "rollback", "page")) else None

    body = wait_for(planned, timeout=60, what="every step planned")
    by_id = steps(body)
    assert body["status"]["mode"] == "dryRun" and body["spec"]["mode"] == "dryRun"
    assert by_id["freeze"]["state"] == "Planned" and by_id["rollback"]["state"] == "Planned"
    assert "would roll checkout back to revision 1" in by_id["rollback"]["message"]
    assert {p["outcome"] for p in body["status"]["pages"]} == {"planned"}
    dep = cluster.deployment("checkout")
    assert dep.spec.template.spec.containers[0].image == "shop/checkout:2.0"
    assert "missioncontrol.dev/frozen" not in (dep.metadata.labels or {})
    assert receiver.requests() == []
    op.check_alive()


def test_the_rollback_limit_stops_a_rollback_loop(rb001, cluster, receiver):
    cluster.create(rb001_policy(limits={"cooldown": "1s", "maxRemediations": 1,
                                        "window": "1h"}))
    op = rb001.start_operator()
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    first = cluster.one_incident()["metadata"]["name"]
    cluster.wait_phase(first, "Resolved", timeout=90)

    cluster.release("checkout", image="shop/checkout:3.0", ready=False)

    def second() -> dict | None:
        others = [i for i in cluster.incidents() if i["metadata"]["name"] != first]
        return others[0] if others and steps(others[0]).get("rollback", {}).get(
            "state") == "Skipped" and others[0]["status"].get("escalated") else None

    body = wait_for(second, timeout=90, what="a second incident, rollback skipped, escalated")
    assert "rollback limit reached" in steps(body)["rollback"]["message"]
    image = cluster.deployment("checkout").spec.template.spec.containers[0].image
    assert image == "shop/checkout:3.0"   # not rolled back a second time
    assert len(cluster.incidents()) == 2
    op.check_alive()


def test_the_freeze_rejects_deploys_lets_the_rollback_pass_and_lifts(rb001, cluster, env):
    cluster.create(rb001_policy())
    op = rb001.start_operator()
    rb001.healthy_checkout()
    # From now on recovery takes 10 minutes to confirm: the incident stays Mitigated and
    # its freeze holds while this test tries to deploy.
    cluster.patch("IncidentPolicy", "checkout-guard", {"spec": {"overrides": {
        "recovery": {"slo": "30m", "stableFor": "10m"}}}})
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    body = cluster.wait_phase(name, "Mitigated", timeout=60)
    by_id = steps(body)
    # The operator's own rollback went through the freeze it had just put up.
    assert by_id["freeze"]["state"] == "Succeeded" and by_id["rollback"]["state"] == "Succeeded"
    assert by_id["rollback"]["startedAt"] >= by_id["freeze"]["finishedAt"]
    ns = cluster.namespace

    denied = env.kubectl("set", "image", "deployment/checkout", "app=shop/checkout:3.0",
                         namespace=ns, check=False)
    assert denied.returncode != 0
    assert f"deployments of {ns}/checkout are frozen by incident {name}" in denied.stderr
    assert "liftFreeze" in denied.stderr and "revision 1" in denied.stderr
    # Scaling is not a release: it passes.
    env.kubectl("scale", "deployment/checkout", "--replicas=3", namespace=ns)
    # Neither is a return to the last healthy release, by hand.
    env.kubectl("rollout", "undo", "deployment/checkout", "--to-revision=3", namespace=ns)

    env.kubectl("patch", "incident", name, "--type=merge", "-p",
                '{"spec":{"liftFreeze":true}}', namespace=ns)
    wait_for(lambda: not cluster.get("Incident", name)["status"]["freeze"]["active"],
             timeout=30, what="the freeze to lift")
    labels = cluster.deployment("checkout").metadata.labels or {}
    assert "missioncontrol.dev/frozen" not in labels
    env.kubectl("set", "image", "deployment/checkout", "app=shop/checkout:3.0", namespace=ns)
    op.check_alive()


def test_a_killed_operator_resumes_without_repeating_steps(rb001, cluster, receiver):
    cluster.create(rb001_policy())
    first = rb001.start_operator()
    rb001.healthy_checkout()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = wait_for(lambda: cluster.incidents(), timeout=60, what="an incident")[0][
        "metadata"]["name"]
    first.kill()   # mid-incident, wherever it was
    at_kill = {s["id"]: s for s in (cluster.get("Incident", name).get("status") or {}).get(
        "steps") or []}

    rb001.start_operator()
    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    after = steps(resolved)
    for step_id, before in at_kill.items():
        if before["state"] in ("Succeeded", "Skipped", "Failed"):
            assert after[step_id] == before, f"{step_id} ran again after the restart"
    assert after["rollback"]["state"] == "Succeeded"
    assert len(cluster.incidents()) == 1
    # One rollback: revisions 1 (healthy), 2 (broken), 3 (the rollback) and no more.
    dep = cluster.deployment("checkout")
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    # Each person paged exactly once, whatever the restart: a page the kill cut short is sent
    # again under the same idempotency key, so the receiver sees one page, never none.
    for role in ("release-owner", "oncall-backend"):
        pages = [r for r in receiver.requests(f"/{role}") if r.json["kind"] == "page"]
        assert len({r.header("Idempotency-Key") for r in pages}) == 1, (role, len(pages))


def test_a_restart_between_steps_resumes_at_the_next_step(rb001, cluster, env):
    """The state a crash right after the freeze leaves behind, written as the operator
    writes it; a new operator must go on with the rollback and not freeze again."""
    from missioncontrol import incident as inc
    from missioncontrol import podtemplate
    from missioncontrol.records import to_dict

    cluster.create(rb001_policy())
    ns = cluster.namespace
    rb001.start_operator()
    rb001.healthy_checkout()
    healthy_rs = cluster.target_state("checkout-guard", "checkout")["lastHealthyReplicaSet"]
    healthy = env.api.sanitize_for_serialization(
        cluster.apps.read_namespaced_replica_set(healthy_rs, ns))
    # Stop guarding before the release, so that this test, not the operator, opens it.
    cluster.patch("IncidentPolicy", "checkout-guard", {"spec": {"mode": "dryRun"}})
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)

    now = time.time()
    freeze = inc.Freeze(active=True, scope="Namespace", since=now, reason="test",
                        objects=(f"Namespace/{ns}",),
                        allowed_template_hash=podtemplate.fingerprint(
                            healthy["spec"]["template"]))
    status = inc.opened(now=now, mode="enforce", slo=300, reason="readiness: simulated",
                        evidence=(), steps=(("freeze", "freezeDeployments"),
                                            ("blast-radius", "assessBlastRadius"),
                                            ("rollback", "rollback"), ("page", "notify")))
    status = inc.move(status, now, inc.MITIGATING, "running RB-001 first response")
    status = inc.update_step(status, "freeze", state=inc.SUCCEEDED, started_at=now,
                             finished_at=now, attempts=1, message="froze (before the crash)")
    status = replace(status, freeze=freeze, rollback=inc.RollbackRecord(
        from_revision=2, to_revision=1, to_replica_set=healthy_rs))
    env.kubectl("label", "namespace", ns, "missioncontrol.dev/frozen=true")
    name = "rb-001-checkout-r2"
    cluster.create({"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
                    "metadata": {"name": name, "labels": {
                        "missioncontrol.dev/policy": "checkout-guard",
                        "missioncontrol.dev/target": "checkout"}},
                    "spec": {"runbook": {"name": "rb-001", "id": "RB-001"},
                             "policy": "checkout-guard", "severity": "SEV2",
                             "target": {"kind": "Deployment", "namespace": ns,
                                        "name": "checkout"}, "mode": "enforce"}})
    cluster.custom.patch_namespaced_custom_object_status(
        "missioncontrol.dev", "v1alpha1", ns, "incidents", name, {"status": to_dict(status)})

    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    after = steps(resolved)
    assert after["freeze"]["attempts"] == 1
    assert after["freeze"]["message"] == "froze (before the crash)"
    assert after["rollback"]["state"] == "Succeeded" and after["rollback"]["attempts"] == 1
    assert cluster.deployment("checkout").spec.template.spec.containers[0].image == \
        "shop/checkout:1.0"
    assert "missioncontrol.dev/frozen" not in (cluster.core.read_namespace(ns).metadata.labels
                                               or {})
