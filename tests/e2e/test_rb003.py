"""RB-003 Webhook Retry Storm end to end, on a real Redis queue with the reference webhook
consumer (examples/rb-003-webhook-consumer) and the real Prometheus scraping it.

A storm (the downstream failing, the sender re-sending) opens an incident; a healthy burst of
the same size does not. The steps change the consumer contract and the consumer obeys (and
set ingress-nginx's rate limit on the webhooks' Ingress); the
non-critical consumers pause (one by scale, the KEDA-scaled one by annotation) and come back;
the operator's adaptive backoff rises and decays; malformed events go to the dead-letter
stream; once the downstream recovers the queue drains, the incident resolves and everything is
put back. Every valid event sent is processed exactly once, or is still queued."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kubernetes import client

from e2e.conftest import ROLES, Cluster, catalogue, ownership, secret
from harness import objects
from harness.crds import install_file
from harness.procs import wait_for
from harness.webhooks import WebhookConsumer

pytestmark = pytest.mark.cluster
KEDA_CRD = Path(__file__).resolve().parents[1] / "harness" / "keda" / "scaledobjects.yaml"
PAUSED = "autoscaling.keda.sh/paused"
LIMIT_RPS = "nginx.ingress.kubernetes.io/limit-rps"
INGRESS, LIMIT_BEFORE = "webhooks-public", "200"   # ingress-nginx's own limit before a storm

TARGET, POLICY, CONTRACT = "webhooks", "webhooks-guard", "webhook-ingress"
NON_CRITICAL = {"missioncontrol.dev/consumer-tier": "non-critical"}
CONTRACT_BEFORE = {"idempotency-checks": "off", "retry-rate-limit": "", "retry-backoff": "1s",
                   "dead-letter": "off"}


def rb003(staging: str, *, mode: str = "enforce") -> tuple[dict, dict]:
    """The catalogue's RB-003 with its windows in seconds and its replays in `staging`, and a
    policy guarding `webhooks`."""
    runbook = catalogue("rb-003")
    for step in runbook["spec"]["firstResponse"]["steps"]:
        if step["action"] == "replaySample":
            step["replaySample"].update(namespace=staging, sample=20)
        if step["action"] == "rateLimit":
            step["rateLimit"]["ingress"] = INGRESS
    conditions = runbook["spec"]["trigger"]["anyOf"]
    for condition in conditions:
        rises = condition["risesSharply"]
        rises.update(window="20s", interval="1s")
    conditions[0]["risesSharply"]["minIncrease"] = 40
    conditions[1]["risesSharply"]["query"] = conditions[1]["risesSharply"]["query"].replace(
        "[5m]", "[20s]")
    conditions[1]["risesSharply"]["minIncrease"] = 20
    runbook["spec"]["recovery"]["stable"].update(window="5s", below=0)
    runbook["spec"]["automation"]["adaptiveBackoff"].update(initial="1s", max="8s",
                                                             interval="1s")
    policy = {
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "IncidentPolicy",
        "metadata": {"name": POLICY},
        "spec": {"runbookRef": {"name": "rb-003"},
                 "targets": {"selector": {"matchLabels": {"app": TARGET}}},
                 "mode": mode, "ownershipRef": {"name": TARGET},
                 "overrides": {"recovery": {"slo": "5m", "stableFor": "5s"}},
                 "limits": {"cooldown": "1s", "maxRemediations": 3, "window": "1h"}},
    }
    return runbook, policy


class Rb003:
    def __init__(self, cluster: Cluster, consumer: WebhookConsumer, staging: str) -> None:
        self.cluster, self.consumer, self.staging = cluster, consumer, staging

    def guarding(self) -> None:
        try:
            wait_for(lambda: self.cluster.target_state(POLICY, TARGET).get("checks"),
                     timeout=60, what="the policy checking webhooks")
        except Exception as exc:
            status = self.cluster.get("IncidentPolicy", POLICY).get("status")
            raise AssertionError(f"{exc}: policy status {status}") from None

    def scaler_annotations(self) -> dict:
        body = client.CustomObjectsApi(self.cluster.env.api).get_namespaced_custom_object(
            "keda.sh", "v1alpha1", self.cluster.namespace, "scaledobjects", "indexer")
        return body["metadata"].get("annotations") or {}

    def contract(self) -> dict:
        return self.cluster.core.read_namespaced_config_map(
            CONTRACT, self.cluster.namespace).data or {}

    def ingress_limit(self) -> str | None:
        body = client.NetworkingV1Api(self.cluster.env.api).read_namespaced_ingress(
            INGRESS, self.cluster.namespace)
        return (body.metadata.annotations or {}).get(LIMIT_RPS)


@pytest.fixture
def mode() -> str:
    return "enforce"


@pytest.fixture
def webhooks(env, cluster, redis_server, tmp_path, crds, receiver, operator_factory, mode):
    staging = f"{cluster.namespace}-staging"
    cluster.core.create_namespace({"metadata": {"name": staging,
                                                "labels": {"mission-control/test": "1"}}})
    runbook, policy = rb003(staging, mode=mode)
    cluster.create(runbook)
    cluster.create(secret("pager-routes", **{role: receiver.url(f"/{role}") for role in ROLES}))
    cluster.create(ownership(TARGET, {role: role for role in ROLES}))
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": CONTRACT}, "data": dict(CONTRACT_BEFORE)})
    cluster.create(objects.deployment(TARGET, replicas=2))
    cluster.create(objects.deployment("analytics", replicas=3, labels=NON_CRITICAL))
    cluster.create(objects.deployment("indexer", replicas=2, labels=NON_CRITICAL))
    # The webhooks' Ingress, as ingress-nginx would serve it (no controller needed: the
    # operator only writes its annotation).
    client.NetworkingV1Api(env.api).create_namespaced_ingress(cluster.namespace, {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": INGRESS, "annotations": {LIMIT_RPS: LIMIT_BEFORE}},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "hooks.example", "http": {
            "paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                "name": TARGET, "port": {"number": 80}}}}]}}]}})
    install_file(env.kubectl, env.api, KEDA_CRD, "scaledobjects.keda.sh")
    client.CustomObjectsApi(env.api).create_namespaced_custom_object(
        "keda.sh", "v1alpha1", cluster.namespace, "scaledobjects", {
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "indexer"},
            "spec": {"scaleTargetRef": {"name": "indexer"}, "minReplicaCount": 1,
                     "triggers": [{"type": "cpu", "metricType": "Utilization",
                                   "metadata": {"value": "60"}}]}})
    consumer = WebhookConsumer(redis_server.port, env.kubeconfig, cluster.namespace, TARGET,
                               tmp_path / "consumer.log", env.prometheus).start()
    cluster.create(policy)
    operator_factory("--allow-reference-namespace", staging, "--namespace", staging)
    yield Rb003(cluster, consumer, staging)
    consumer.stop()
    cluster.core.delete_namespace(staging)


def test_a_healthy_burst_opens_nothing_and_a_storm_opens_rb003(webhooks, cluster, env):
    consumer = webhooks.consumer
    webhooks.guarding()
    sent = consumer.send(count=400, rate=400, prefix="healthy")
    wait_for(lambda: len(consumer.downstream.accepted) >= 400, timeout=60,
             what="the healthy burst processed")
    time.sleep(5)   # several checks (1 s apart) of a queue that never grew
    assert cluster.incidents() == []
    assert consumer.retry_depth() == 0
    assert sorted(i for i, _, _ in consumer.downstream.accepted) == sorted(sent.valid)

    consumer.downstream.control(mode="fail")
    consumer.send(count=400, rate=400, duplicates=0.5, malformed=0.05, prefix="storm")
    incident = cluster.one_incident(timeout=90)
    assert incident["spec"]["runbook"]["id"] == "RB-003"


class Sampler:
    """The published backoff and the queue depths, every half second, in a thread."""

    def __init__(self, webhooks: Rb003) -> None:
        self.webhooks, self.samples = webhooks, []
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                self.samples.append((round(time.monotonic() - self.started, 1),
                                     self.webhooks.contract().get("retry-backoff"),
                                     self.webhooks.consumer.retry_depth()))
            except Exception:  # noqa: BLE001 - a missed sample is only a gap
                continue

    def stop(self) -> list[tuple[float, str, int]]:
        self.stopping.set()
        self.thread.join(5)
        return self.samples


def seconds(value: str | None) -> float:
    return float((value or "0s").rstrip("s"))


def test_storm_remediated_drained_resolved_and_put_back_with_nothing_lost(
        webhooks, cluster, env, receiver, measured):
    consumer = webhooks.consumer
    webhooks.guarding()
    # Automation runs while the policy guards: dead-letter routing on before any storm.
    wait_for(lambda: webhooks.contract().get("dead-letter") == "on", timeout=30,
             what="dead-letter routing published")
    sampler = Sampler(webhooks)
    time.sleep(2)
    consumer.downstream.control(mode="fail")
    sent = consumer.send(count=300, rate=300, duplicates=0.5, malformed=0.05, prefix="storm")
    name = cluster.one_incident(timeout=90)["metadata"]["name"]
    opened_at = time.monotonic() - sampler.started

    def steps() -> dict:
        return {s["id"]: s for s in cluster.get("Incident", name)["status"].get("steps") or []}
    try:
        wait_for(lambda: all(steps().get(i, {}).get("state") == "Succeeded" for i in (
            "rate-limit", "idempotency", "pause-consumers", "replay")), timeout=60,
            what="the first response done")
    except Exception:
        raise AssertionError(cluster.describe(name)) from None
    contract = webhooks.contract()
    assert contract["retry-rate-limit"] == "50" and contract["idempotency-checks"] == "on"
    # The same limit in front of the consumer: ingress-nginx's annotation, its earlier value
    # recorded.
    assert webhooks.ingress_limit() == "50"
    assert ("Ingress", INGRESS, LIMIT_BEFORE, "50") in {
        (c["kind"], c["name"], c.get("from"), c["to"]) for c in steps()["rate-limit"]["changes"]}
    assert cluster.deployment("analytics").spec.replicas == 0
    paused = steps()["pause-consumers"]["changes"]
    assert {(c["kind"], c["name"], c.get("from"), c["to"]) for c in paused} == {
        ("Deployment", "analytics", "3", "0"), ("ScaledObject", "indexer", None, "true")}
    # The KEDA-scaled one is paused through KEDA: annotated, not scaled.
    assert webhooks.scaler_annotations().get(PAUSED) == "true"
    assert cluster.deployment("indexer").spec.replicas == 2
    # The replay Job: in staging, with the incident and real events drawn from the queue.
    job = client.BatchV1Api(env.api).read_namespaced_job(f"replay-{name}", webhooks.staging)
    variables = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert variables["INCIDENT"] == f"{cluster.namespace}/{name}"
    replayed = variables["SAMPLE_EVENTS"].splitlines()
    assert 0 < len(replayed) <= 20
    assert all(line.startswith('{"id": "storm-') or '"payload": "broken' in line
               for line in replayed), replayed[:3]
    wait_for(lambda: client.BatchV1Api(env.api).read_namespaced_job_status(
        f"replay-{name}", webhooks.staging).status.succeeded, timeout=60,
        what="the replay Job completed")
    # Escalation: the integration owner and the incident commander paged.
    wait_for(lambda: {"/integration-owner", "/incident-commander"} <= {
        r.path for r in receiver.requests()}, timeout=30, what="both roles paged")
    # More re-sending while idempotency is on: those duplicates are not processed again.
    resent = consumer.send(count=300, rate=300, duplicates=1.0, prefix="storm", seed=2)
    time.sleep(3)
    recovered_at = time.monotonic() - sampler.started
    consumer.downstream.control(mode="ok")
    cluster.wait_phase(name, "Resolved", timeout=180)
    resolved_at = time.monotonic() - sampler.started
    wait_for(lambda: consumer.retry_depth() == 0 and consumer.inbound_depth() == 0,
             timeout=60, what="the queue drained")
    wait_for(lambda: webhooks.contract().get("retry-backoff") == "1s", timeout=60,
             what="the backoff decayed to its initial 1s")
    time.sleep(1)
    samples = sampler.stop()

    # Put back: consumers at their replicas, the annotation gone, the flags as they were.
    wait_for(lambda: cluster.deployment("analytics").spec.replicas == 3, timeout=30,
             what="analytics back at 3 replicas")
    assert PAUSED not in webhooks.scaler_annotations()
    wait_for(lambda: all(steps().get(f"revert:{i}", {}).get("state") == "Succeeded" for i in (
        "rate-limit", "idempotency", "pause-consumers")), timeout=60, what="every step undone")
    contract = webhooks.contract()
    assert (contract["retry-rate-limit"], contract["idempotency-checks"]) == ("", "off")
    assert webhooks.ingress_limit() == LIMIT_BEFORE

    # The backoff rose during the storm and decayed after it.
    storm = [seconds(b) for t, b, _ in samples if t <= recovered_at]
    after = [seconds(b) for t, b, _ in samples if t > recovered_at]
    assert max(storm) > 1, samples
    assert after[-1] == 1 and max(after) > after[-1], samples

    # Accounting: every valid event processed once, or still queued; none lost; none
    # processed twice while idempotency checks were on.
    accepted = consumer.downstream.accepted
    processed: dict[str, int] = {}
    twice_while_on = 0
    for event_id, idempotency, _ in sorted(accepted, key=lambda a: a[2]):
        if processed.get(event_id) and idempotency == "on":
            twice_while_on += 1
        processed[event_id] = processed.get(event_id, 0) + 1
    valid = set(sent.valid) | set(resent.valid)
    queued = consumer.queued_ids()
    lost = valid - set(processed) - queued
    assert not lost, sorted(lost)[:10]
    assert twice_while_on == 0
    assert set(processed) <= valid
    dead = consumer.redis.xlen("webhooks-dead-letter")
    assert dead == sent.malformed
    twice_while_off = sum(1 for n in processed.values() if n > 1)
    depths = [d for _, _, d in samples]
    measured.append(
        f"RB-003 accounting: {len(valid)} valid events sent ({sent.duplicates} duplicates in "
        f"the storm, {resent.duplicates} re-sent with idempotency on, {sent.malformed} "
        f"malformed); processed {len(processed)} ({sum(processed.values())} deliveries), "
        f"still queued {len(queued)}, lost {len(lost)}; processed twice while idempotency "
        f"was off {twice_while_off}, while on {twice_while_on}; dead-lettered {dead}")
    measured.append(f"RB-003 retry queue depth: before {depths[0]}, peak {max(depths)}, after "
                    f"{depths[-1]}; incident opened at {opened_at:.1f}s, downstream recovered "
                    f"at {recovered_at:.1f}s, resolved at {resolved_at:.1f}s")
    measured.append(f"RB-003 (s, backoff, retry depth): {samples}")

    # The policy goes: the automation's values go back as they were before it.
    cluster.custom.delete_namespaced_custom_object(
        "missioncontrol.dev", "v1alpha1", cluster.namespace, "incidentpolicies", POLICY)
    wait_for(lambda: (webhooks.contract().get("dead-letter"),
                      webhooks.contract().get("retry-backoff")) == ("off", "1s"),
             timeout=60, what="the contract as it was before the policy")


@pytest.mark.parametrize("mode", ["dryRun"])
def test_dry_run_plans_it_all_and_changes_nothing(webhooks, cluster, env):
    consumer = webhooks.consumer
    webhooks.guarding()
    consumer.downstream.control(mode="fail")
    consumer.send(count=200, rate=300, duplicates=0.5, malformed=0.05, prefix="dry")
    name = cluster.one_incident(timeout=90)["metadata"]["name"]

    def planned() -> dict | None:
        steps = {s["id"]: s for s in cluster.get("Incident", name)["status"].get("steps") or []}
        return steps if all(steps.get(i, {}).get("state") == "Planned" for i in (
            "rate-limit", "idempotency", "pause-consumers", "replay")) else None
    try:
        steps = wait_for(planned, timeout=60, what="every step planned")
    except Exception:
        raise AssertionError(cluster.describe(name)) from None
    assert "would pause analytics (scaled to 0 from 3), indexer (KEDA ScaledObject" in steps[
        "pause-consumers"]["message"]
    assert f"and {LIMIT_RPS}=50 on Ingress {INGRESS}" in steps["rate-limit"]["message"]

    def automation_planned() -> dict | None:
        status = cluster.get("IncidentPolicy", POLICY).get("status") or {}
        targets = (status.get("automation") or {}).get("targets") or []
        return targets[0] if targets and targets[0].get("planned") else None
    entry = wait_for(automation_planned, timeout=30, what="the automation planned")
    assert entry["planned"]["dead-letter"] == "on" and entry["published"] == {}
    time.sleep(3)
    # Nothing changed: the contract, the consumers, the ScaledObject; no Job.
    assert webhooks.contract() == CONTRACT_BEFORE
    assert webhooks.ingress_limit() == LIMIT_BEFORE
    assert cluster.deployment("analytics").spec.replicas == 3
    assert PAUSED not in webhooks.scaler_annotations()
    assert client.BatchV1Api(env.api).list_namespaced_job(webhooks.staging).items == []
    assert consumer.redis.xlen("webhooks-dead-letter") == 0
