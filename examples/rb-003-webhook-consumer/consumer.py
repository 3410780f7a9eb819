"""A reference webhook consumer that honours RB-003's consumer contract
(docs/contracts/rb-003-webhook-consumer.md).

One process: an aiohttp receiver that enqueues each delivery into a Redis stream, workers
(redis-py asyncio) that deliver events to a downstream, a retry queue (a sorted set scored by
the time each retry is due), a dead-letter stream, and a watch on the contract ConfigMap whose
keys steer all of it. Metrics for Prometheus on --metrics-port.

    python consumer.py --redis redis://127.0.0.1:6379/0 --namespace shop \\
        --deployment webhooks --downstream http://127.0.0.1:8081/deliver --port 8080 \\
        --metrics-port 9100 [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import Counter, Gauge, start_http_server

log = logging.getLogger("consumer")

INBOUND, RETRY, GROUP = "webhooks:inbound", "webhooks:retry", "workers"
SEEN_TTL = 3600   # seconds an event id is remembered for idempotency checks
LABELS = ("namespace", "deployment")
RETRY_DEPTH = Gauge("webhook_retry_queue_depth", "Deliveries waiting to be retried", LABELS)
INBOUND_DEPTH = Gauge("webhook_inbound_queue_depth", "Deliveries received, not yet worked on",
                      LABELS)
DUPLICATES = Counter("webhook_duplicate_deliveries", "Deliveries of an event id seen before",
                     LABELS)
DEAD = Counter("webhook_dead_lettered", "Malformed deliveries routed to the dead-letter stream",
               LABELS)
PROCESSED = Counter("webhook_processed", "Events the downstream accepted", LABELS)
RETRIES = Counter("webhook_retries", "Deliveries put on the retry queue", LABELS)
BACKOFF = Gauge("webhook_retry_backoff_seconds", "The retry backoff in force (the contract's)",
                LABELS)


# -- the contract -------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def duration(text: str | None, default: float) -> float:
    match = _DURATION.match(text or "")
    if not match:
        return default
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match[2]]


@dataclass(frozen=True)
class Contract:
    """The ConfigMap's keys as the consumer obeys them (defaults when a key is absent)."""
    retry_rate_limit: float | None = None   # retries/s admitted back into work; None: no limit
    idempotency: bool = False
    retry_backoff: float = 1.0              # seconds between a failure and its retry
    dead_letter: bool = False
    dead_letter_stream: str = "webhooks-dead-letter"

    @classmethod
    def parse(cls, data: dict[str, str] | None) -> Contract:
        data = data or {}
        try:
            rate = float(data["retry-rate-limit"]) if data.get("retry-rate-limit") else None
        except ValueError:
            rate = None
        return cls(retry_rate_limit=rate if rate is None or rate > 0 else None,
                   idempotency=data.get("idempotency-checks", "off") == "on",
                   retry_backoff=duration(data.get("retry-backoff"), 1.0),
                   dead_letter=data.get("dead-letter", "off") == "on",
                   dead_letter_stream=data.get("dead-letter-stream") or "webhooks-dead-letter")


class ContractWatch:
    """The contract ConfigMap, kept current by a Kubernetes watch (in a thread: the official
    client is blocking). Until it is read, the defaults apply."""

    def __init__(self, *, namespace: str, name: str, kubeconfig: str | None) -> None:
        self.namespace, self.name, self.kubeconfig = namespace, name, kubeconfig
        self.current = Contract()
        self.stopping = threading.Event()

    def start(self) -> ContractWatch:
        threading.Thread(target=self._run, daemon=True, name="contract-watch").start()
        return self

    def api(self):
        from kubernetes import client, config
        if self.kubeconfig:
            config.load_kube_config(self.kubeconfig)
        else:
            config.load_incluster_config()
        return client.CoreV1Api()

    def write_sample(self, events: list[str]) -> None:
        """The sample ConfigMap (<contract>-sample, key events: one event a line) the
        operator's replay step takes real events from."""
        from kubernetes.client import ApiException
        core, name = self.api(), f"{self.name}-sample"
        body = {"metadata": {"name": name}, "data": {"events": "\n".join(events)}}
        try:
            core.patch_namespaced_config_map(name, self.namespace, body, _request_timeout=10)
        except ApiException as exc:
            if exc.status != 404:
                raise
            core.create_namespaced_config_map(self.namespace, body, _request_timeout=10)

    def _run(self) -> None:
        from kubernetes import watch
        core = self.api()
        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(
                        core.list_namespaced_config_map, self.namespace,
                        field_selector=f"metadata.name={self.name}", timeout_seconds=30,
                        _request_timeout=40):
                    body = event["object"]
                    data = None if event["type"] == "DELETED" else body.data
                    contract = Contract.parse(data)
                    if contract != self.current:
                        log.info("contract: %s", contract)
                    self.current = contract
            except Exception as exc:  # noqa: BLE001 - the watch restarts on any failure
                log.warning("contract watch: %s; again in 1 s", exc)
                time.sleep(1)


# -- the queue ------------------------------------------------------------------------------------
REQUIRED = {"id": str, "type": str, "payload": dict}


def parse_event(raw: str) -> dict | None:
    """The event, or None when it breaks the schema (JSON object with a string id and type and
    an object payload)."""
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(event, dict) or not all(isinstance(event.get(key), kind) and event[key] != ""
                                              for key, kind in REQUIRED.items()):
        return None
    return event


class TokenBucket:
    """`rate` tokens a second, at most `rate` (one second's worth) saved up."""

    def __init__(self) -> None:
        self.tokens, self.stamp = 0.0, time.monotonic()

    def take(self, rate: float | None) -> bool:
        if rate is None:
            return True
        now = time.monotonic()
        self.tokens = min(max(rate, 1.0), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Delivery:
    raw: str
    attempt: int = 0
    claimed: bool = False   # this copy holds the event id's idempotency key


class Consumer:
    def __init__(self, *, redis: aioredis.Redis, contract: ContractWatch, downstream: str,
                 labels: dict[str, str]) -> None:
        self.redis, self.contract, self.downstream = redis, contract, downstream
        self.labels = labels
        self.bucket = TokenBucket()
        self.http: aiohttp.ClientSession | None = None

    async def setup(self) -> None:
        with contextlib.suppress(aioredis.ResponseError):   # the group exists already
            await self.redis.xgroup_create(INBOUND, GROUP, id="0", mkstream=True)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def receive(self, request: web.Request) -> web.Response:
        await self.redis.xadd(INBOUND, {"body": await request.text()})
        return web.Response(status=202)

    async def worker(self, name: str) -> None:
        while True:
            try:
                retry = await self._due_retry()
                if retry is not None:
                    await self.handle(retry)
                    continue
                answer = await self.redis.xreadgroup(GROUP, name, {INBOUND: ">"}, count=1,
                                                     block=200)
                for _, entries in answer or ():
                    for entry_id, fields in entries:
                        await self.handle(Delivery(fields[b"body"].decode()))
                        await self.redis.xack(INBOUND, GROUP, entry_id)
                        await self.redis.xdel(INBOUND, entry_id)
            except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("%s: redis: %s", name, exc)
                await asyncio.sleep(0.5)

    async def _due_retry(self) -> Delivery | None:
        """One retry whose time has come, if the rate limit lets one through. ZREM claims it,
        so two workers never take the same one."""
        due = await self.redis.zrangebyscore(RETRY, "-inf", time.time(), start=0, num=1)
        if not due or not self.bucket.take(self.contract.current.retry_rate_limit):
            return None
        if not await self.redis.zrem(RETRY, due[0]):
            return None
        item = json.loads(due[0])
        return Delivery(item["raw"], item["attempt"], item["claimed"])

    async def handle(self, delivery: Delivery) -> None:
        contract = self.contract.current
        event = parse_event(delivery.raw)
        if event is None:
            if contract.dead_letter:
                await self.redis.xadd(contract.dead_letter_stream,
                                      {"body": delivery.raw, "reason": "schema"})
                DEAD.labels(**self.labels).inc()
            else:   # a poison event: it fails every time, as without routing it would
                await self.retry(delivery)
            return
        if not delivery.claimed:
            first = await self.redis.set(f"webhooks:seen:{event['id']}", 1, nx=True,
                                         ex=SEEN_TTL)
            if not first:
                DUPLICATES.labels(**self.labels).inc()
                if contract.idempotency:
                    return
            delivery.claimed = bool(first)
        if await self._deliver(event, contract):
            PROCESSED.labels(**self.labels).inc()
        else:
            await self.retry(delivery)

    async def _deliver(self, event: dict, contract: Contract) -> bool:
        headers = {"X-Idempotency-Checks": "on" if contract.idempotency else "off"}
        try:
            async with self.http.post(self.downstream, json=event, headers=headers) as response:
                return response.status < 300
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def retry(self, delivery: Delivery) -> None:
        item = json.dumps({"raw": delivery.raw, "attempt": delivery.attempt + 1,
                           "claimed": delivery.claimed, "nonce": uuid.uuid4().hex})
        await self.redis.zadd(RETRY, {item: time.time() + self.contract.current.retry_backoff})
        RETRIES.labels(**self.labels).inc()

    async def sample(self, every: float = 2.0, size: int = 100) -> None:
        """Keep a sample of real events waiting for a retry or dead-lettered in the sample
        ConfigMap, newest first, rewritten only when it changes."""
        written: list[str] | None = None
        while True:
            await asyncio.sleep(every)
            try:
                retries = await self.redis.zrevrange(RETRY, 0, size - 1)
                dead = await self.redis.xrevrange(self.contract.current.dead_letter_stream,
                                                  count=size)
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                continue
            events = [json.loads(m)["raw"] for m in retries]
            events += [fields[b"body"].decode() for _, fields in dead]
            events = events[:size]
            if events and events != written:
                try:
                    await asyncio.to_thread(self.contract.write_sample, events)
                    written = events
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.warning("sample not written: %s", exc)

    async def gauges(self) -> None:
        while True:
            with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError):
                RETRY_DEPTH.labels(**self.labels).set(await self.redis.zcard(RETRY))
                INBOUND_DEPTH.labels(**self.labels).set(await self.redis.xlen(INBOUND))
            BACKOFF.labels(**self.labels).set(self.contract.current.retry_backoff)
            await asyncio.sleep(0.25)


async def serve(args: argparse.Namespace) -> None:
    labels = {"namespace": args.namespace, "deployment": args.deployment}
    for metric in (DUPLICATES, DEAD, PROCESSED, RETRIES):
        metric.labels(**labels)
    watch = ContractWatch(namespace=args.namespace, name=args.configmap,
                          kubeconfig=args.kubeconfig).start()
    redis = aioredis.Redis.from_url(args.redis, socket_timeout=5)
    consumer = Consumer(redis=redis, contract=watch, downstream=args.downstream, labels=labels)
    await consumer.setup()
    start_http_server(args.metrics_port, addr="127.0.0.1")
    app = web.Application()
    app.router.add_post("/webhooks", consumer.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    tasks = [asyncio.create_task(consumer.worker(f"w{i}")) for i in range(args.workers)]
    tasks.append(asyncio.create_task(consumer.gauges()))
    tasks.append(asyncio.create_task(consumer.sample()))
    log.info("consuming on :%d, metrics on :%d", args.port, args.metrics_port)
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--configmap", default="webhook-ingress")
    parser.add_argument("--downstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kubeconfig")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
