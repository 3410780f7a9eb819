"""The harness is real: a real API server and controllers, the simulated kubelet, real
Prometheus answering PromQL over scraped data."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from kubernetes import client

from harness import objects
from harness.controlplane import K8S_VERSION
from harness.procs import wait_for
from missioncontrol.signals.prometheus import Prometheus

pytestmark = pytest.mark.cluster


def replica_sets(apps: client.AppsV1Api, namespace: str, app: str) -> list[client.V1ReplicaSet]:
    items = apps.list_namespaced_replica_set(namespace, label_selector=f"app={app}").items
    return sorted(items, key=lambda rs: int(
        rs.metadata.annotations["deployment.kubernetes.io/revision"]))


def pods_of(core: client.CoreV1Api, namespace: str, rs: client.V1ReplicaSet) -> list:
    hash_ = rs.metadata.labels["pod-template-hash"]
    return core.list_namespaced_pod(namespace, label_selector=f"pod-template-hash={hash_}").items


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_the_api_server_is_the_real_one(env):
    info = client.VersionApi(env.api).get_code()
    if not os.environ.get("MC_TEST_KUBECONFIG"):
        assert info.git_version == f"v{K8S_VERSION}"
    out = env.kubectl("version", "-o", "json").stdout
    assert '"serverVersion"' in out


def test_deployment_gets_replicaset_and_ready_pods(env, namespace):
    apps, core = client.AppsV1Api(env.api), client.CoreV1Api(env.api)
    apps.create_namespaced_deployment(namespace, objects.deployment("web", replicas=3))

    def available() -> bool:
        d = apps.read_namespaced_deployment("web", namespace)
        return d.status.available_replicas == 3 and d.status.ready_replicas == 3

    wait_for(available, timeout=60, what="web to have 3 available replicas")
    (rs,) = replica_sets(apps, namespace, "web")
    pods = pods_of(core, namespace, rs)
    assert len(pods) == 3
    assert all(p.spec.node_name == "mission-control-sim" and p.status.phase == "Running"
               and is_ready(p) for p in pods)


def test_not_ready_release_gets_unhealthy_events_and_rollout_undo_restores(env, namespace):
    apps, core = client.AppsV1Api(env.api), client.CoreV1Api(env.api)
    apps.create_namespaced_deployment(namespace, objects.deployment("api", replicas=2))
    wait_for(lambda: apps.read_namespaced_deployment("api", namespace).status.ready_replicas == 2,
             timeout=60, what="api v1 ready")

    broken = objects.deployment("api", image="registry.example/app:2.0", replicas=2, ready=False)
    apps.patch_namespaced_deployment("api", namespace, {"spec": {"template":
                                                                 broken["spec"]["template"]}})
    wait_for(lambda: len(replica_sets(apps, namespace, "api")) == 2, timeout=30,
             what="a second ReplicaSet")
    old, new = replica_sets(apps, namespace, "api")

    def new_pods_running_not_ready() -> list:
        pods = pods_of(core, namespace, new)
        return pods if pods and all(
            p.status.phase == "Running" and not is_ready(p) for p in pods) else []

    new_pods = wait_for(new_pods_running_not_ready, timeout=30, what="new pods Running, NotReady")

    def unhealthy_events() -> list:
        names = {p.metadata.name for p in new_pods}
        events = core.list_namespaced_event(namespace, field_selector="reason=Unhealthy").items
        return [e for e in events if e.involved_object.name in names and (e.count or 0) >= 2]

    events = wait_for(unhealthy_events, timeout=30, what="repeated Unhealthy events")
    event = events[0]
    assert event.type == "Warning"
    assert event.message.startswith("Readiness probe failed:")
    assert event.source.component == "kubelet"
    assert event.involved_object.kind == "Pod"
    # The old release keeps serving: the rollout is stuck behind the unready pods.
    assert apps.read_namespaced_deployment("api", namespace).status.ready_replicas == 2

    env.kubectl("rollout", "undo", "deployment/api", namespace=namespace)

    def restored() -> bool:
        d = apps.read_namespaced_deployment("api", namespace)
        return (d.spec.template.spec.containers[0].image == "registry.example/app:1.0"
                and d.status.updated_replicas == 2 and d.status.ready_replicas == 2
                and not pods_of(core, namespace, new))

    wait_for(restored, timeout=60, what="rollout undo to restore v1")
    sets = replica_sets(apps, namespace, "api")
    # The old ReplicaSet is reused (its revision bumps to 3); no third ReplicaSet appears.
    assert {rs.metadata.name for rs in sets} == {old.metadata.name, new.metadata.name}
    assert sets[-1].metadata.name == old.metadata.name
    assert sets[-1].status.ready_replicas == 2


def test_job_pods_succeed_or_fail_as_told(env, namespace):
    batch = client.BatchV1Api(env.api)
    batch.create_namespaced_job(namespace, objects.job("ok"))
    batch.create_namespaced_job(namespace, objects.job("bad", exit_code=1))

    def status(name: str, kind: str) -> bool:
        job = batch.read_namespaced_job(name, namespace)
        return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])

    wait_for(lambda: status("ok", "Complete"), timeout=60, what="job ok to complete")
    wait_for(lambda: status("bad", "Failed"), timeout=60, what="job bad to fail")


def test_promql_answers_over_scraped_exporter_data(env):
    prom = Prometheus(env.prometheus_url)      # the operator's own client
    suffix = str(time.monotonic_ns())
    gauge = env.exporter.gauge("mc_test_queue_depth", {"run": suffix})
    latency = env.exporter.histogram("mc_test_latency_seconds", {"run": suffix})
    requests = env.exporter.counter("mc_test_requests", {"run": suffix})

    # Feed the exporter while Prometheus scrapes it every second; stop when PromQL sees it.
    depth = 0.0

    def answered() -> dict:
        nonlocal depth
        depth += 10
        gauge.set(depth)
        for _ in range(20):
            latency.observe(0.3)   # 95th percentile lands in the (0.25, 0.5] bucket
        requests.inc(5)
        result = {}
        for name, query in {
            "gauge": f'mc_test_queue_depth{{run="{suffix}"}}',
            "p95": f'histogram_quantile(0.95, sum(rate(mc_test_latency_seconds_bucket'
                   f'{{run="{suffix}"}}[5s])) by (le))',
            "rate": f'rate(mc_test_requests_total{{run="{suffix}"}}[5s])',
            "deriv": f'deriv(mc_test_queue_depth{{run="{suffix}"}}[5s])',
        }.items():
            answer = asyncio.run(prom.query(query))
            if not answer:
                return {}
            result[name] = float(answer[0]["value"][1])
        return result if result["rate"] > 0 and result["deriv"] > 0 else {}

    values = wait_for(answered, timeout=60, interval=0.5, what="PromQL answers")
    assert 0 < values["gauge"] <= depth
    assert 0.25 < values["p95"] <= 0.5
    assert values["rate"] > 0
    assert values["deriv"] > 0
