"""The harness's PostgreSQL is real: a primary that streams to a hot-standby replica,
pg_stat_statements and HypoPG in its database, DSNs a Secret can hold, and nothing left
behind when it stops."""

from __future__ import annotations

import base64
import os
import uuid

import psycopg
import pytest
from kubernetes import client

from harness.postgres import Postgres
from harness.procs import wait_for

pytestmark = pytest.mark.cluster


def test_a_write_on_the_primary_streams_to_the_read_only_replica(postgres):
    marker = uuid.uuid4().hex
    postgres.execute("primary", "CREATE TABLE IF NOT EXISTS probe (v text)", role="app")
    postgres.execute("primary", f"INSERT INTO probe VALUES ('{marker}')", role="app")
    wait_for(lambda: postgres.query("replica", "SELECT v FROM probe WHERE v = %s", (marker,),
                                    role="app") == [(marker,)],
             timeout=30, what="the row on the replica")
    assert postgres.query("replica", "SELECT pg_is_in_recovery()") == [(True,)]
    (state,), = postgres.query("primary", "SELECT state FROM pg_stat_replication")
    assert state == "streaming"
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        postgres.execute("replica", "INSERT INTO probe VALUES ('no')", role="app")
    # The replica is a physical copy: the seeded data and its index are there too.
    assert postgres.query("replica", "SELECT count(*) FROM orders", role="app") == [(600_000,)]
    assert postgres.query("replica", "SELECT indexname FROM pg_indexes WHERE tablename = "
                          "'orders' AND indexname = 'orders_customer_id_idx'", role="app")


def test_statement_statistics_and_hypothetical_indexes_are_available(postgres):
    postgres.query("primary", "SELECT count(*) FROM orders WHERE status = %s", ("paid",),
                   role="app")
    # The operator's role sees every user's statements, with their text.
    rows = postgres.query("primary", "SELECT query, calls FROM pg_stat_statements WHERE query "
                          "LIKE 'SELECT count(*) FROM orders WHERE status%%'",
                          role="missioncontrol")
    assert rows and rows[0][1] >= 1 and "$1" in rows[0][0]
    with psycopg.connect(postgres.dsn("primary", "missioncontrol")) as conn:
        sql = "EXPLAIN SELECT * FROM orders WHERE total = 12.34"
        assert "Seq Scan on orders" in " ".join(r[0] for r in conn.execute(sql).fetchall())
        conn.execute("SELECT * FROM hypopg_create_index('CREATE INDEX ON orders (total)')")
        plan = " ".join(r[0] for r in conn.execute(sql).fetchall())
        assert "Seq Scan" not in plan and ">btree_orders_total" in plan, plan
        # ... but it may not write.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders WHERE id = 1")


def test_the_dsns_go_into_secrets_and_work_from_there(postgres, env, namespace):
    core = client.CoreV1Api(env.api)
    for body in postgres.secrets():
        core.create_namespaced_secret(namespace, body)
    data = core.read_namespaced_secret("orders-db", namespace).data
    dsn = base64.b64decode(data["dsn"]).decode()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("missioncontrol",)
    replica = base64.b64decode(core.read_namespaced_secret("orders-app-db", namespace)
                               .data["replica"]).decode()
    with psycopg.connect(replica) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_stopping_leaves_no_process_and_no_files():
    servers = Postgres().start()
    pids, workdir = servers.pids(), servers.workdir
    assert len(pids) == 2 and workdir.is_dir()
    assert workdir.stat().st_uid != 0   # owned by the postgres user, not root
    # Every process of both servers (postmasters and their backends, walsender, walreceiver).
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) in pids]
    assert children
    servers.stop()
    assert not workdir.exists()
    assert not [p for p in (*pids, *children) if os.path.exists(f"/proc/{p}")]


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
