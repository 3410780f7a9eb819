"""A reference read service for RB-002's contract (docs/contracts/rb-002-read-routing.md).

An aiohttp service over PostgreSQL (psycopg 3, async) with a primary and a streaming replica:

  GET /customers/{id}   critical       always the primary
  GET /history/{id}     non-critical   the primary, or the replica while `db-routing` says
                                       non-critical-reads: replica
  GET /popular          non-critical   as /history; high traffic: served from an in-process
                                       cache (5 s) while `feature-flags` says
                                       safe-mode-cache: "on"
  GET /healthz, GET /metrics, GET /contract (what it honours now, as JSON)

The two ConfigMaps are followed with a Kubernetes watch (list, then watch from its
resourceVersion, again after each expiry), never read per request. Every query is observed in
the histogram db_query_duration_seconds{namespace, deployment, endpoint}; cache hits run no
query and are counted in read_requests_total{..., source="cache"}.

    python service.py --namespace shop --deployment orders --port 8080 \\
        [--kubeconfig FILE]    # the DSNs from PRIMARY_DSN and REPLICA_DSN
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
import time

import psycopg
from aiohttp import web
from kubernetes import client, config, watch
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("read-service")
ROUTING, FLAGS = "db-routing", "feature-flags"
ROUTING_KEY, CACHE_KEY = "non-critical-reads", "safe-mode-cache"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CACHE_TTL = 5.0
POOL = 6            # connections per server
QUERY_TIMEOUT = 10  # seconds: statement_timeout of the service's sessions

QUERIES = {
    "customers": "SELECT id, name, region FROM customers WHERE id = %s",
    "history": "SELECT id, status, total, created_at FROM orders WHERE customer_id = %s "
               "ORDER BY created_at DESC LIMIT 20",
    "popular": "SELECT id, name, sales FROM products ORDER BY sales DESC LIMIT 10",
}
CRITICAL = {"customers": True, "history": False, "popular": False}
CACHED = {"popular"}   # the high-traffic read path


class Contract:
    """What the two ConfigMaps say now, kept current by the watch thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routing = "primary"
        self.cache = False
        self.seen: dict[str, dict] = {}

    def update(self, name: str, data: dict | None) -> None:
        data = data or {}
        with self.lock:
            self.seen[name] = dict(data)
            if name == ROUTING:
                value = data.get(ROUTING_KEY, "primary")
                # Anything but the two values keeps the safe default: the primary.
                self.routing = value if value in ("primary", "replica") else "primary"
            elif name == FLAGS:
                self.cache = data.get(CACHE_KEY) == "on"

    def snapshot(self) -> dict:
        with self.lock:
            return {"non-critical-reads": self.routing, "safe-mode-cache": self.cache}


def follow(contract: Contract, core: client.CoreV1Api, namespace: str,
           stopping: threading.Event) -> None:
    """List the namespace's ConfigMaps, then watch them from that version (a new list after
    each expiry or error); only the contract's two are read."""
    while not stopping.is_set():
        try:
            listed = core.list_namespaced_config_map(namespace, _request_timeout=10)
            names = set()
            for cm in listed.items:
                if cm.metadata.name in (ROUTING, FLAGS):
                    names.add(cm.metadata.name)
                    contract.update(cm.metadata.name, cm.data)
            for gone in {ROUTING, FLAGS} - names:
                contract.update(gone, None)
            for event in watch.Watch().stream(core.list_namespaced_config_map, namespace,
                                              resource_version=listed.metadata.resource_version,
                                              timeout_seconds=60, _request_timeout=70):
                cm = event["object"]
                if cm.metadata.name in (ROUTING, FLAGS):
                    contract.update(cm.metadata.name,
                                    None if event["type"] == "DELETED" else cm.data)
                if stopping.is_set():
                    return
        except Exception as exc:  # noqa: BLE001 - the watch comes back; the last state holds
            log.warning("ConfigMap watch: %s; again in 1 s", exc)
            stopping.wait(1)


class Pool:
    """A few open connections to one server, handed out one request at a time."""

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn, self.size = dsn, size
        self.free: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self.free.put_nowait(await self._connect())

    async def _connect(self) -> psycopg.AsyncConnection:
        # No server-side prepared statements (as behind a transaction-mode pooler): each
        # query is planned with the server's settings of the moment. (A cached generic plan
        # outlives a configuration change: seen when the tests' regression did not show.)
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True,
                                                     connect_timeout=5, prepare_threshold=None)
        await conn.execute(f"SET statement_timeout = {QUERY_TIMEOUT * 1000}")
        return conn

    async def fetch(self, sql: str, params: tuple) -> list[tuple]:
        conn = await self.free.get()
        try:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()
        except psycopg.OperationalError:
            await conn.close()
            conn = await self._connect()
            raise
        finally:
            self.free.put_nowait(conn)


class Service:
    def __init__(self, *, namespace: str, deployment: str, pools: dict[str, Pool],
                 contract: Contract) -> None:
        self.labels = {"namespace": namespace, "deployment": deployment}
        self.pools, self.contract = pools, contract
        self.cache: dict[tuple, tuple[float, list]] = {}
        self.registry = CollectorRegistry()
        self.duration = Histogram("db_query_duration_seconds",
                                  "Time of each database query, by endpoint",
                                  ("namespace", "deployment", "endpoint"), buckets=BUCKETS,
                                  registry=self.registry)
        self.requests = Counter("read_requests", "Reads served, by where they were served from",
                                ("namespace", "deployment", "endpoint", "source"),
                                registry=self.registry)

    async def read(self, endpoint: str, params: tuple) -> tuple[str, list]:
        now = self.contract.snapshot()
        if endpoint in CACHED and now["safe-mode-cache"]:
            hit = self.cache.get((endpoint, params))
            if hit is not None and time.monotonic() - hit[0] < CACHE_TTL:
                return "cache", hit[1]
        source = "primary" if CRITICAL[endpoint] else now["non-critical-reads"]
        started = time.monotonic()
        try:
            rows = await self.pools[source].fetch(QUERIES[endpoint], params)
        finally:
            self.duration.labels(**self.labels, endpoint=endpoint).observe(
                time.monotonic() - started)
        if endpoint in CACHED:
            self.cache[(endpoint, params)] = (time.monotonic(), rows)
        return source, rows

    def handler(self, endpoint: str):
        async def handle(request: web.Request) -> web.Response:
            params = (int(request.match_info["id"]),) if "id" in request.match_info else ()
            try:
                source, rows = await self.read(endpoint, params)
            except psycopg.Error as exc:
                return web.json_response({"error": str(exc).splitlines()[0]}, status=503)
            self.requests.labels(**self.labels, endpoint=endpoint, source=source).inc()
            return web.json_response({"source": source, "rows": len(rows)})
        return handle

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def contract_now(self, _: web.Request) -> web.Response:
        return web.json_response(self.contract.snapshot())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/customers/{id}", self.handler("customers"))
        app.router.add_get("/history/{id}", self.handler("history"))
        app.router.add_get("/popular", self.handler("popular"))
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/contract", self.contract_now)
        app.router.add_get("/healthz", lambda _: web.Response(text="ok"))
        return app


async def serve(args: argparse.Namespace) -> None:
    if args.kubeconfig:
        config.load_kube_config(args.kubeconfig)
    else:
        config.load_incluster_config()
    contract, stopping = Contract(), threading.Event()
    threading.Thread(target=follow, args=(contract, client.CoreV1Api(), args.namespace,
                                          stopping), daemon=True).start()
    pools = {"primary": Pool(os.environ["PRIMARY_DSN"], POOL),
             "replica": Pool(os.environ["REPLICA_DSN"], POOL)}
    for pool in pools.values():
        await pool.open()
    service = Service(namespace=args.namespace, deployment=args.deployment, pools=pools,
                      contract=contract)
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    log.info("serving on 127.0.0.1:%d", args.port)
    try:
        await asyncio.Event().wait()
    finally:
        stopping.set()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--kubeconfig")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
