"""RB-001 end to end on the real control plane: detect a failed release, freeze, roll back,
recover; and the safety rails."""

from __future__ import annotations

import pytest

from e2e.conftest import rb001_policy

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
