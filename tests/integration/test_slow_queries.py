"""identifySlowQueries against the real PostgreSQL primary, its DSN read from a real Secret:
the statement that is slow while it samples comes first; a database it cannot reach fails the
step quickly with the reason."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest
from kubernetes import client

from harness.procs import free_port
from missioncontrol import incident as inc
from missioncontrol.actions import ACTIONS
from missioncontrol.actions.base import StepContext
from missioncontrol.actions.slowqueries import identify_slow_queries
from missioncontrol.kube import Kube
from missioncontrol.model import Runbook

pytestmark = pytest.mark.cluster
SLOW = "SELECT id, total FROM orders WHERE customer_id = %s ORDER BY created_at DESC LIMIT 20"
FAST = "SELECT name FROM customers WHERE id = %s"


def context(env, namespace: str, kube: Kube) -> tuple[StepContext, object]:
    from e2e.conftest import catalogue
    runbook = Runbook.parse({**catalogue("rb-002"),
                             "metadata": {"name": "rb-002", "namespace": namespace}})
    incident = {"metadata": {"name": "rb-002-orders", "namespace": namespace},
                "spec": {"target": {"namespace": namespace, "name": "orders"}}}
    ctx = StepContext(kube=kube, prometheus=None, clock=time.time, incident=incident,
                      status=inc.IncidentStatus(), runbook=runbook, policy=None, dry_run=False,
                      page=None)
    return ctx, runbook.step("slow-queries")


class Load:
    """The service's reads on the primary while the step samples: a statement made slow (its
    index not used in this session) and a fast one, many more times."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.stopping = dsn, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET enable_indexscan = off")
            conn.execute("SET enable_bitmapscan = off")
            n = 0
            while not self.stopping.is_set():
                n += 1
                conn.execute(SLOW, (n % 1000 + 1,)).fetchall()
                for i in range(5):
                    conn.execute(FAST, (n * 5 + i,)).fetchall()

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(30)


def test_the_statement_slow_while_it_samples_comes_first(postgres, env, namespace):
    core = client.CoreV1Api(env.api)
    for body in postgres.secrets():
        core.create_namespaced_secret(namespace, body)
    kube = Kube(env.api)
    ctx, step = context(env, namespace, kube)
    with Load(postgres.dsn("primary", "app")):
        result = asyncio.run(identify_slow_queries(ctx, step, sample=3))
    assert result.state == "Succeeded", result.message
    found: inc.SlowQueries = result.updates["slow_queries"]
    first = found.statements[0]
    assert "FROM orders WHERE customer_id = $1" in first.query, found.statements
    assert first.calls > 0 and first.mean_ms > 1.0 and first.rows == 20 * first.calls
    fast = next(s for s in found.statements if "FROM customers" in s.query)
    assert fast.calls > first.calls and fast.mean_ms < first.mean_ms
    assert found.database == "orders-db" and found.checked_at - found.baseline_at >= 3
    # Its own reads are not among them.
    assert not any("pg_stat_statements" in s.query for s in found.statements)
    assert result.message.startswith(f"top {len(found.statements)} statements by time over 3s "
                                     f"of pg_stat_statements (database of Secret orders-db): "
                                     f"#1 queryid {first.queryid}: "), result.message
    # It gates the next steps: its sample must see the traffic before they move it.
    assert not ACTIONS["identifySlowQueries"].read_only


def test_an_unreachable_database_fails_the_step_quickly_with_the_reason(env, namespace):
    core = client.CoreV1Api(env.api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "orders-db"}, "stringData": {
        "dsn": f"postgresql://missioncontrol:secret@127.0.0.1:{free_port()}/orders"}})
    ctx, step = context(env, namespace, Kube(env.api))
    started = time.monotonic()
    result = asyncio.run(identify_slow_queries(ctx, step, sample=1))
    assert time.monotonic() - started < 10
    assert result.state == "Failed"
    assert result.message.startswith("cannot read pg_stat_statements in the database of Secret "
                                     "orders-db: OperationalError: connection failed: "), \
        result.message
    assert "Connection refused" in result.message and "secret" not in result.message
    core.delete_namespaced_secret("orders-db", namespace)
    result = asyncio.run(identify_slow_queries(ctx, step, sample=1))
    assert result.message == (f"cannot read pg_stat_statements: Secret {namespace}/orders-db "
                              f"does not exist")
