"""A fleet runs the same Git revision in many clusters: the same namespace, Deployment and
so the same incident name in each. Two operators started with different --cluster-name, their
release owner paged through one PagerDuty routing key, give PagerDuty two alerts (two dedup
keys) that say which cluster they come from, not one alert that one resolve would close.

A second local control plane is started for this test alone, beside the session's."""

from __future__ import annotations

import pytest
from kubernetes import client, config

from e2e.conftest import GROUP, ROLES, Cluster, catalogue, rb001_policy, secret
from harness import objects
from harness.cluster import LocalCluster
from harness.crds import install as install_crds
from harness.operator import OperatorProcess
from harness.procs import wait_for

pytestmark = pytest.mark.cluster

ROUTING_KEY = "R0UT1NGKEY0000000000000000000002"


def guarded(cluster: Cluster, receiver) -> None:
    """RB-001 guarding checkout, its release owner on PagerDuty (the one routing key), the
    others on webhooks."""
    cluster.create(catalogue("rb-001"))
    cluster.create(secret("routes", pd=ROUTING_KEY,
                          **{role: receiver.url(f"/{role}") for role in ROLES}))
    roles = [{"role": "release-owner", "contacts": [{"name": "ada", "route": {
        "type": "PagerDuty", "secretRef": {"name": "routes", "key": "pd"},
        "url": receiver.url("/pd")}}]}]
    roles += [{"role": role, "contacts": [{"name": f"{role}-person", "route": {
        "type": "Webhook", "secretRef": {"name": "routes", "key": role}}}]}
        for role in ROLES[1:]]
    cluster.create({"apiVersion": f"{GROUP}/v1alpha1", "kind": "ServiceOwnership",
                    "metadata": {"name": "checkout"},
                    "spec": {"service": "checkout", "roles": roles}})
    cluster.create(rb001_policy(slo="30m"))


def test_two_clusters_paging_one_routing_key_make_two_alerts_that_name_their_cluster(
        env, crds, cluster, receiver, operator_factory, tmp_path):
    ns = cluster.namespace
    west = LocalCluster(tmp_path / "west").start()
    west_op = None
    try:
        api = config.new_client_from_config(str(west.kubeconfig))
        west_env = type(env)(west.kubeconfig, west.prometheus_url, west.exporter, west.prometheus,
                       api, west.control_plane)
        install_crds(west_env.kubectl, api)
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": ns}})   # the same namespace name
        wait_for(lambda: core.read_namespaced_service_account("default", ns), timeout=30,
                 what=f"the default ServiceAccount in {ns} of the second cluster")
        other = Cluster(west_env, ns)
        for each in (cluster, other):
            guarded(each, receiver)
        operator_factory("--cluster-name", "prod-east")
        west_op = OperatorProcess(west.kubeconfig, ns, tmp_path / "operator-west.log",
                                  prometheus_url=west.prometheus_url,
                                  extra=("--cluster-name", "prod-west")).start()
        # Broken from its first release in both: each opens the same incident, by name.
        for each in (cluster, other):
            each.create(objects.deployment("checkout", image="shop/checkout:1.0", ready=False))
        names = [each.one_incident()["metadata"]["name"] for each in (cluster, other)]
        assert names[0] == names[1], names

        triggers = wait_for(lambda: (found := [r.json for r in receiver.requests("/pd")
                                               if r.json.get("event_action") == "trigger"])
                            and len({t["dedup_key"] for t in found}) >= 2 and found,
                            timeout=90, what="a PagerDuty trigger from each cluster")
        assert {t["routing_key"] for t in triggers} == {ROUTING_KEY}
        by_key = {t["dedup_key"]: t for t in triggers}
        assert set(by_key) == {f"prod-east/{ns}/{names[0]}", f"prod-west/{ns}/{names[0]}"}
        for cluster_name in ("prod-east", "prod-west"):
            alert = by_key[f"{cluster_name}/{ns}/{names[0]}"]
            assert alert["payload"]["custom_details"]["cluster"] == cluster_name, alert
            assert cluster_name in alert["payload"]["source"], alert["payload"]
        assert other.get("Incident", names[0])["status"]["cluster"] == "prod-west"
        assert cluster.get("Incident", names[0])["status"]["cluster"] == "prod-east"
    finally:
        if west_op is not None:
            west_op.stop()
        west.stop()
