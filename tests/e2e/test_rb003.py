"""RB-003 Webhook Retry Storm end to end, on a real Redis queue with the reference webhook
consumer (examples/rb-003-webhook-consumer) and the real Prometheus scraping it.

A storm (the downstream failing, the sender re-sending) opens an incident; a healthy burst of
the same size does not. The steps change the consumer contract and the consumer obeys; the
non-critical consumers pause (one by scale, the KEDA-scaled one by annotation) and come back;
the operator's adaptive backoff rises and decays; malformed events go to the dead-letter
stream; once the downstream recovers the queue drains, the incident resolves and everything is
put back. Every valid event sent is processed exactly once, or is still queued."""

from __future__ import annotations

import time

import pytest

from e2e.conftest import ROLES, Cluster, catalogue, ownership, secret
from harness import objects
from harness.procs import wait_for
from harness.webhooks import WebhookConsumer

pytestmark = pytest.mark.cluster

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

    def contract(self) -> dict:
        return self.cluster.core.read_namespaced_config_map(
            CONTRACT, self.cluster.namespace).data or {}


@pytest.fixture
def webhooks(env, cluster, redis_server, tmp_path, crds, receiver, operator_factory):
    staging = f"{cluster.namespace}-staging"
    cluster.core.create_namespace({"metadata": {"name": staging,
                                                "labels": {"mission-control/test": "1"}}})
    runbook, policy = rb003(staging)
    cluster.create(runbook)
    cluster.create(secret("pager-routes", **{role: receiver.url(f"/{role}") for role in ROLES}))
    cluster.create(ownership(TARGET, {role: role for role in ROLES}))
    cluster.core.create_namespaced_config_map(cluster.namespace, {
        "metadata": {"name": CONTRACT}, "data": dict(CONTRACT_BEFORE)})
    cluster.create(objects.deployment(TARGET, replicas=2))
    cluster.create(objects.deployment("analytics", replicas=3, labels=NON_CRITICAL))
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


def test_storm_remediated_drained_resolved_and_put_back_with_nothing_lost(webhooks, cluster,
                                                                          env, measured):
    consumer = webhooks.consumer
    webhooks.guarding()
    # Automation runs while the policy guards: dead-letter routing on before any storm.
    wait_for(lambda: webhooks.contract().get("dead-letter") == "on", timeout=30,
             what="dead-letter routing published")
    consumer.downstream.control(mode="fail")
    samples: list[tuple[float, str, int]] = []
    started = time.monotonic()

    def sample() -> None:
        samples.append((round(time.monotonic() - started, 1),
                        webhooks.contract().get("retry-backoff"), consumer.retry_depth()))

    sent = consumer.send(count=300, rate=300, duplicates=0.5, malformed=0.05, prefix="storm")
    name = cluster.one_incident(timeout=90)["metadata"]["name"]
    sample()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sample()
        steps = {s["id"]: s for s in cluster.get("Incident", name)["status"].get("steps") or []}
        if all(steps.get(i, {}).get("state") == "Succeeded"
               for i in ("rate-limit", "idempotency", "pause-consumers", "replay")):
            break
        time.sleep(0.5)
    contract = webhooks.contract()
    assert contract["retry-rate-limit"] == "50" and contract["idempotency-checks"] == "on", \
        cluster.describe(name)
    assert cluster.deployment("analytics").spec.replicas == 0
    # More re-sending while idempotency is on: those duplicates are not processed again.
    resent = consumer.send(count=300, rate=300, duplicates=1.0, prefix="storm", seed=2)
    for _ in range(10):
        sample()
        time.sleep(0.5)
    consumer.downstream.control(mode="ok")
    cluster.wait_phase(name, "Resolved", timeout=180)
    drained = wait_for(lambda: consumer.retry_depth() == 0 and consumer.inbound_depth() == 0,
                       timeout=60, what="the queue drained")
    assert drained
    for _ in range(6):
        sample()
        time.sleep(0.5)
    measured.append(f"rb003 samples (s, backoff, retry depth): {samples}")
    measured.append(f"sent {len(sent.valid)} valid, {sent.duplicates + resent.duplicates} dup")
    print(samples)
