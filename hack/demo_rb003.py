"""`make demo DEMO=rb-003`: Mission Control handling RB-003 (Webhook Retry Storm) on a real
Redis queue with the reference webhook consumer (examples/rb-003-webhook-consumer).

The same local cluster as the RB-001 act, plus Redis (as the redis user when run as root) and
the consumer, scraped by Prometheus. A healthy burst opens nothing; then the downstream fails
and the sender re-sends: the retry queue rises, the backoff the operator publishes rises, an
RB-003 incident opens, the contract turns on the rate limit and idempotency checks, the
non-critical consumer pauses, a replay Job starts in staging; the downstream recovers, the
queue drains, the incident resolves and everything is put back. It ends with an accounting of
every event sent, and the backoff and queue depth over time."""

from __future__ import annotations

import threading
import time

import demo as base
from demo import GREEN, YELLOW, DemoFailed, block, say, stage
from kubernetes import client

from harness.crds import install as install_crds
from harness.objects import deployment
from harness.redis import RedisServer
from harness.webhooks import WebhookConsumer

NAMESPACE, STAGING, TARGET, POLICY = base.NAMESPACE, "staging", "webhooks", "webhooks-guard"
CONTRACT = "webhook-ingress"
ROLES = ("integration-owner", "incident-commander", "stakeholders")


class Rb003Demo(base.Demo):
    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)
        self.policy = POLICY
        self.redis: RedisServer | None = None
        self.consumer: WebhookConsumer | None = None
        self.samples: list[tuple[float, str, int]] = []
        self.sampling = threading.Event()

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def run(self) -> None:
        self.start_cluster()
        self.install_rb003()
        self.start_operator_rb003()
        self.healthy_burst()
        name = self.storm()
        self.follow(name)
        self.report_rb003(name)

    def install_rb003(self) -> None:
        stage("Installing the CRDs, RB-003, a guarded webhook consumer and its contract")
        install_crds(self.kubectl, self.api)
        self.receiver = base.Receiver().start()
        for namespace in (NAMESPACE, STAGING):
            self.core.create_namespace({"metadata": {"name": namespace}})
        self.wait(lambda: self.core.read_namespaced_service_account("default", NAMESPACE),
                  "the default ServiceAccount")
        runbook = next(d for d in [base.yaml.safe_load(p.read_text()) for p in
                                   (base.REPO / "runbooks").glob("rb-003-*.yaml")])
        for condition in runbook["spec"]["trigger"]["anyOf"]:   # minutes to seconds
            condition["risesSharply"].update(window="20s", interval="1s")
            condition["risesSharply"]["query"] = condition["risesSharply"]["query"].replace(
                "[5m]", "[20s]")
        runbook["spec"]["trigger"]["anyOf"][0]["risesSharply"]["minIncrease"] = 40
        runbook["spec"]["trigger"]["anyOf"][1]["risesSharply"]["minIncrease"] = 20
        runbook["spec"]["recovery"].update(stableFor="5s")
        runbook["spec"]["recovery"]["stable"].update(window="5s", below=0)
        runbook["spec"]["automation"]["adaptiveBackoff"].update(max="8s", interval="1s")
        routes = {role: self.receiver.url(f"/page/{role}") for role in ROLES}
        objects = [
            runbook,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "routes"},
             "stringData": routes},
            {"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "ServiceOwnership",
             "metadata": {"name": TARGET}, "spec": {"service": TARGET, "roles": [
                 {"role": role, "contacts": [{"name": f"{role} on call", "route": {
                     "type": "Webhook", "secretRef": {"name": "routes", "key": role}}}]}
                 for role in ROLES]}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONTRACT},
             "data": {"idempotency-checks": "off", "retry-rate-limit": "",
                      "retry-backoff": "1s", "dead-letter": "off"}},
            deployment(TARGET, replicas=2),
            deployment("analytics", replicas=3,
                       labels={"missioncontrol.dev/consumer-tier": "non-critical"}),
            {"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "IncidentPolicy",
             "metadata": {"name": POLICY},
             "spec": {"runbookRef": {"name": "rb-003"}, "mode": "enforce",
                      "targets": {"selector": {"matchLabels": {"app": TARGET}}},
                      "ownershipRef": {"name": TARGET},
                      "overrides": {"recovery": {"slo": "5m", "stableFor": "5s"}}}},
        ]
        for step in runbook["spec"]["firstResponse"]["steps"]:
            if step["action"] == "replaySample":
                step["replaySample"]["sample"] = 20
        self.kubectl("apply", "--server-side", "-n", NAMESPACE, "-f", "-",
                     input=base.yaml.safe_dump_all(objects), show=True)
        # Redis runs as the redis user when we are root: it must pass through our folder.
        self.root.chmod(0o711)
        self.redis = RedisServer().start()
        say(f"redis-server on 127.0.0.1:{self.redis.port}", GREEN)
        self.consumer = WebhookConsumer(self.redis.port, self.cluster.kubeconfig, NAMESPACE,
                                        TARGET, self.root / "consumer.log",
                                        self.cluster.prometheus).start()
        say(f"reference consumer receiving at {self.consumer.url}, its metrics scraped", GREEN)

    def start_operator_rb003(self) -> None:
        # The replay Job runs in staging: watched, and a namespace the policy may refer to.
        self.operator_args = ["--namespace", STAGING, "--allow-reference-namespace", STAGING]
        self.start_operator()

    def policy_target(self) -> dict:
        body = self.custom.get_namespaced_custom_object(base.GROUP, base.VERSION, NAMESPACE,
                                                        "incidentpolicies", POLICY)
        targets = (body.get("status") or {}).get("targets") or []
        return next((t for t in targets if t["name"] == TARGET), {})

    def contract(self) -> dict:
        return self.core.read_namespaced_config_map(CONTRACT, NAMESPACE).data or {}

    def _sample(self) -> None:
        started = time.monotonic()
        while not self.sampling.wait(1.0):
            try:
                self.samples.append((round(time.monotonic() - started),
                                     self.contract().get("retry-backoff", "?"),
                                     self.consumer.retry_depth()))
            except Exception:  # noqa: BLE001 - a missed sample is a gap
                continue

    def healthy_burst(self) -> None:
        stage("A healthy burst: 300 events, the downstream accepting them")
        self.wait(lambda: (self.policy_target() or {}).get("checks"), "the policy checking")
        sent = self.consumer.send(count=300, rate=300, prefix="healthy")
        self.wait(lambda: len(self.consumer.downstream.accepted) >= 300, "the burst processed")
        time.sleep(4)
        if self.incidents():
            raise DemoFailed("a healthy burst opened an incident")
        say(f"{len(sent.valid)} processed, retry queue {self.consumer.retry_depth()}, "
            f"no incident", GREEN)

    def storm(self) -> str:
        stage("A storm: the downstream fails and the sender re-sends (half duplicates, 5 % "
              "malformed)")
        threading.Thread(target=self._sample, daemon=True).start()
        self.consumer.downstream.control(mode="fail")
        self.sent = self.consumer.send(count=300, rate=300, duplicates=0.5, malformed=0.05,
                                       prefix="storm")
        incident = self.wait(lambda: (found := self.incidents()) and found[0],
                             "an RB-003 incident")
        name = incident["metadata"]["name"]
        say(f"incident {name} opened: {incident['spec']['summary'][:150]}", YELLOW)
        return name

    def follow(self, name: str) -> None:
        stage("First response")

        def done() -> dict | None:
            steps = {s["id"]: s for s in self.incident(name)["status"].get("steps") or []}
            return steps if all(steps.get(i, {}).get("state") in ("Succeeded", "Failed")
                                for i in ("rate-limit", "idempotency", "pause-consumers",
                                          "replay")) else None
        for step in self.wait(done, "the first response").values():
            say(f"{step['id']:<16} {step['state']:<10} {step.get('message', '')[:100]}")
        say(f"contract now: {self.contract()}")
        self.resent = self.consumer.send(count=300, rate=300, duplicates=1.0, prefix="storm",
                                         seed=2)
        say("the sender re-sends every event again: idempotency checks drop them")
        stage("The downstream recovers")
        self.consumer.downstream.control(mode="ok")
        self.wait(lambda: self.incident(name)["status"]["phase"] == "Resolved",
                  "the incident to resolve")
        self.wait(lambda: self.consumer.retry_depth() == 0, "the queue drained")
        self.wait(lambda: self.contract().get("retry-backoff") == "1s", "the backoff decayed")
        self.wait(lambda: self.contract().get("retry-rate-limit") == "", "the steps undone")
        self.wait(lambda: self.apps.read_namespaced_deployment(
            "analytics", NAMESPACE).spec.replicas == 3, "analytics back at 3 replicas")
        self.sampling.set()
        say(f"resolved; contract back: {self.contract()}", GREEN)

    def report_rb003(self, name: str) -> None:
        stage("Backoff published and retry queue depth over time (s, backoff, depth)")
        block("  ".join(f"{t}s:{b}/{d}" for t, b, d in self.samples))
        stage("Accounting")
        processed: dict[str, int] = {}
        twice_on = 0
        for event_id, idempotency, _ in sorted(self.consumer.downstream.accepted,
                                               key=lambda a: a[2]):
            if processed.get(event_id) and idempotency == "on":
                twice_on += 1
            processed[event_id] = processed.get(event_id, 0) + 1
        valid = set(self.sent.valid) | set(self.resent.valid)
        storm = {i for i in processed if i.startswith("storm-")}
        lost = valid - storm - self.consumer.queued_ids()
        dead = self.consumer.redis.xlen("webhooks-dead-letter")
        block(f"storm events sent {len(valid)} (+{self.sent.duplicates + self.resent.duplicates}"
              f" duplicate deliveries, {self.sent.malformed} malformed)\n"
              f"processed {len(storm)}, lost {len(lost)}, processed twice while idempotency "
              f"was on {twice_on}, dead-lettered {dead}")
        if lost or twice_on or dead != self.sent.malformed:
            raise DemoFailed("the accounting does not add up")
        out = self.kubectl("get", "incidents", "-n", NAMESPACE, show=True)
        block(out.stdout)

    def stop(self) -> None:
        if self.consumer:
            self.consumer.stop()
        super().stop()
        if self.redis:
            self.redis.stop()
