"""RB-003's reference webhook consumer (examples/rb-003-webhook-consumer) run for a test: the
consumer as a process against the session's Redis (a database of its own) and the cluster's
contract ConfigMap, the downstream it delivers to in this process, its metrics scraped by the
session's Prometheus, and the bounded sender."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .procs import Proc, free_port, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rb-003-webhook-consumer"
sys.path.insert(0, str(EXAMPLE))

from consumer import parse_event  # noqa: E402
from downstream import Downstream  # noqa: E402
from sender import Sent, send  # noqa: E402

# Redis has 16 databases: one per consumer of the session, so tests never see each other's.
_DATABASES = itertools.count(1)


@dataclass
class WebhookConsumer:
    redis_port: int
    kubeconfig: Path
    namespace: str
    deployment: str
    log: Path
    prometheus: object | None = None     # harness.prometheus.Prometheus
    configmap: str = "webhook-ingress"
    downstream: Downstream = field(default_factory=Downstream)
    proc: Proc | None = None
    port: int = 0
    metrics_port: int = 0
    db: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, db=self.db, socket_timeout=5,
                           decode_responses=True)

    def start(self) -> WebhookConsumer:
        self.db = next(_DATABASES) % 16
        self.redis.flushdb()
        self.downstream.start()
        self.port, self.metrics_port = free_port(), free_port()
        self.proc = Proc("webhook-consumer", [
            sys.executable, str(EXAMPLE / "consumer.py"),
            "--redis", f"redis://127.0.0.1:{self.redis_port}/{self.db}",
            "--namespace", self.namespace, "--deployment", self.deployment,
            "--configmap", self.configmap, "--kubeconfig", str(self.kubeconfig),
            "--downstream", f"{self.downstream.url}/deliver", "--port", str(self.port),
            "--metrics-port", str(self.metrics_port)], self.log).start()
        wait_for(self._metrics, timeout=30, what="the webhook consumer's metrics",
                 alive=self.proc.check_alive)
        if self.prometheus is not None:
            self.prometheus.add_target(f"webhooks-{self.namespace}",
                                       f"127.0.0.1:{self.metrics_port}")
        return self

    def _metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str) -> float:
        """A metric of this consumer as it exports it now (0 if absent)."""
        for line in self._metrics().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def send(self, **kw: object) -> Sent:
        return asyncio.run(send(self.url, **kw))

    def retry_depth(self) -> int:
        return self.redis.zcard("webhooks:retry")

    def inbound_depth(self) -> int:
        return self.redis.xlen("webhooks:inbound")

    def queued_ids(self) -> set[str]:
        """The event ids still waiting (inbound or for a retry)."""
        ids = set()
        for _, fields in self.redis.xrange("webhooks:inbound"):
            event = _event(fields.get("body", ""))
            if event:
                ids.add(event)
        for member in self.redis.zrange("webhooks:retry", 0, -1):
            event = _event(json.loads(member)["raw"])
            if event:
                ids.add(event)
        return ids

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        if self.prometheus is not None:
            self.prometheus.remove_target(f"webhooks-{self.namespace}")
        self.downstream.stop()
        try:
            self.redis.flushdb()
        except redis.RedisError:
            pass


def _event(raw: str) -> str | None:
    event = parse_event(raw)
    return event["id"] if event else None
