"""Bad or dangling references are reported, never crash the operator: Ready conditions with
a reason and a message on policies, runbooks and ownership maps, and Kubernetes events."""

from __future__ import annotations

import pytest

from e2e.conftest import ROLES, catalogue, events_for, ownership, rb001_policy, secret, wait_ready
from harness.procs import wait_for

pytestmark = pytest.mark.cluster


def test_policy_references_are_checked_and_reported(crds, cluster, receiver, operator_factory):
    op = operator_factory()
    cluster.create(rb001_policy())          # its runbook and ownership map do not exist yet
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "RunbookNotFound")
    assert f"Runbook {cluster.namespace}/rb-001 does not exist" in condition["message"]
    wait_for(lambda: any(e.startswith("RunbookNotFound") for e in events_for(
        cluster, "checkout-guard")), timeout=30, what="a RunbookNotFound event")

    cluster.create(catalogue("rb-001"))
    wait_ready(cluster, "Runbook", "rb-001", "True", "Valid")
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "OwnershipNotFound")
    assert "ServiceOwnership" in condition["message"] and "checkout" in condition["message"]

    # An ownership map that leaves roles the runbook pages without anybody.
    cluster.create(secret("pager-routes", **{r: receiver.url(f"/{r}") for r in ROLES}))
    cluster.create(ownership("checkout", {"release-owner": "release-owner"}))
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "RolesUnresolved")
    assert "oncall-backend" in condition["message"]
    assert "incident-commander" in condition["message"]

    cluster.patch("ServiceOwnership", "checkout", {"spec": {"roles": ownership(
        "checkout", {r: r for r in ROLES})["spec"]["roles"]}})
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Guarding")
    assert "RB-001" in condition["message"] and "enforce" in condition["message"]
    wait_ready(cluster, "ServiceOwnership", "checkout", "True", "Resolved")
    op.check_alive()


def test_objects_the_schema_accepts_but_cannot_work_are_reported(crds, cluster,
                                                                 operator_factory):
    op = operator_factory()
    cluster.create(catalogue("rb-001"))
    policy = rb001_policy()
    policy["spec"].pop("ownershipRef")
    policy["spec"]["overrides"]["conditions"].append({"name": "latency", "interval": "5s"})
    cluster.create(policy)
    condition = wait_ready(cluster, "IncidentPolicy", "checkout-guard", "False",
                           "RunbookInvalid")
    assert "spec.overrides.conditions[2].name" in condition["message"]
    assert "has no condition 'latency'" in condition["message"]

    # A route whose Secret is missing: the ownership map says which.
    cluster.create(ownership("checkout", {"release-owner": "release-owner"}))
    condition = wait_ready(cluster, "ServiceOwnership", "checkout", "False", "SecretMissing")
    assert "pager-routes" in condition["message"]

    # A runbook whose query uses a variable the operator does not know.
    bad = catalogue("rb-001")
    bad["metadata"]["name"] = "rb-001-typo"
    bad["spec"]["id"] = "RB-901"   # its own id: a second RB-001 would be reported as such
    bad["spec"]["trigger"]["anyOf"][1]["threshold"]["query"] = 'up{job="{{ .service }}"}'
    cluster.create(bad)
    condition = wait_ready(cluster, "Runbook", "rb-001-typo", "False", "InvalidTemplate")
    assert "service" in condition["message"]
    op.check_alive()
