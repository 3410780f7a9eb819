"""A real PostgreSQL primary and a streaming hot-standby replica (Debian's postgresql 15), for
RB-002: started as the package's non-root `postgres` user (PostgreSQL refuses to run as root,
and the tests run as root) on free loopback ports, in a temporary folder that user owns.

The primary preloads pg_stat_statements; the replica is made from it with `pg_basebackup -R`
(a physical copy that streams the primary's WAL). The database `orders` has the schema the
reference read service (examples/rb-002-read-service) queries, with enough rows that losing
its index makes a sequential scan hurt, and the hypopg and pg_stat_statements extensions.

Roles, as a team would set them up:
- `app`: the service's own login, owner of the tables;
- `missioncontrol`: what the operator's Secret names: pg_read_all_stats (pg_stat_statements
  of every user) and pg_read_all_data (EXPLAIN of the application's statements), nothing else;
- `replicator`: the replica's streaming login.

`stop()` stops both servers (fast shutdown) and removes the folder: no process, no files."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .procs import HarnessError, Proc, free_port, wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"
DATABASE = "orders"
ROWS = 600_000   # orders rows: a sequential scan of them costs tens of milliseconds
CUSTOMERS = 20_000

SCHEMA = f"""
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text NOT NULL);
INSERT INTO customers SELECT i, 'customer ' || i, (ARRAY['eu','us','apac'])[1 + i % 3]
  FROM generate_series(1, {CUSTOMERS}) i;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
                     total numeric(10,2) NOT NULL, created_at timestamptz NOT NULL,
                     note text NOT NULL);
INSERT INTO orders SELECT i, 1 + (i::bigint * 7919) % {CUSTOMERS},
       (ARRAY['new','paid','shipped','returned'])[1 + i % 4], (i % 10000) / 100.0,
       now() - make_interval(secs => i), repeat('x', 60)
  FROM generate_series(1, {ROWS}) i;
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, sales int NOT NULL);
INSERT INTO products SELECT i, 'product ' || i, (i * 31) % 5000 FROM generate_series(1, 2000) i;
CREATE INDEX products_sales_idx ON products (sales);
ANALYZE;
"""


def postgres_available() -> str | None:
    """Why PostgreSQL cannot run here, or None."""
    if not (PG_BIN / "postgres").exists():
        return f"PostgreSQL 15 is not installed ({PG_BIN}): `make deps` installs it"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"there is no {USER} user to run PostgreSQL as"
    if not (PG_BIN.parent.parent.parent / "share/postgresql/15/extension/hypopg.control"
            ).exists() and not Path("/usr/share/postgresql/15/extension/hypopg.control").exists():
        return "postgresql-15-hypopg is not installed: `make deps` installs it"
    return None


@dataclass
class Server:
    name: str
    port: int
    datadir: Path
    proc: Proc | None = None

    def dsn(self, user: str, password: str, database: str = DATABASE) -> str:
        return (f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"
                f"?connect_timeout=5")


@dataclass
class Postgres:
    """The primary and its replica. `dsns` maps (server, role) to a DSN with its password."""
    workdir: Path | None = None
    primary: Server | None = None
    replica: Server | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    def start(self) -> Postgres:
        reason = postgres_available()
        if reason:
            raise HarnessError(reason)
        account = pwd.getpwnam(USER)
        # Its own folder, owned by postgres, in a temporary folder that user can reach (the
        # demo's and the tests' own folders are root's, 0700).
        parent = tempfile.gettempdir()
        if not os.stat(parent).st_mode & 0o001:
            parent = "/tmp"
        self.workdir = Path(tempfile.mkdtemp(prefix="mission-control-pg-", dir=parent))
        os.chown(self.workdir, account.pw_uid, account.pw_gid)
        self.passwords = {role: secrets.token_hex(12)
                          for role in ("postgres", "app", "missioncontrol", "replicator")}
        try:
            self._start_primary()
            self._start_replica()
        except BaseException:
            self.stop()
            raise
        return self

    # -- as the postgres user ------------------------------------------------------------------
    def _as_postgres(self, argv: list[str]) -> list[str]:
        # setpriv execs in place (no forking wrapper): the Proc's pid is the server's own, so
        # signals reach it directly.
        return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", *argv]

    def _env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{PG_BIN}:/usr/bin:/bin", "HOME": str(self.workdir), "LC_ALL": "C.UTF-8",
                **extra}

    def _run(self, argv: list[str], **env: str) -> None:
        result = subprocess.run(self._as_postgres(argv), env=self._env(**env), cwd=self.workdir,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise HarnessError(f"{argv[0]} failed ({result.returncode}): "
                               f"{result.stdout}{result.stderr}")

    def _launch(self, server: Server, *options: str) -> None:
        argv = [str(PG_BIN / "postgres"), "-D", str(server.datadir), "-c", f"port={server.port}",
                *options]
        server.proc = Proc(f"postgres-{server.name}", self._as_postgres(argv),
                           self.workdir / f"{server.name}.log", env=self._env()).start()

        def accepting() -> bool:
            with psycopg.connect(server.dsn("postgres", self.passwords["postgres"], "postgres"),
                                 connect_timeout=2):
                return True
        wait_for(accepting, timeout=60, what=f"PostgreSQL {server.name} to accept connections",
                 alive=server.proc.check_alive)

    def _start_primary(self) -> None:
        assert self.workdir is not None
        self.primary = Server("primary", free_port(), self.workdir / "primary")
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.passwords["postgres"] + "\n")
        shutil.chown(pwfile, USER, USER)
        self._run([str(PG_BIN / "initdb"), "-D", str(self.primary.datadir), "-U", "postgres",
                   f"--pwfile={pwfile}", "--auth-local=peer", "--auth-host=scram-sha-256",
                   "--encoding=UTF8", "--no-sync"])
        pwfile.unlink()
        with (self.primary.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\n".join([
                "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{self.workdir}'",
                "shared_preload_libraries = 'pg_stat_statements'",
                "pg_stat_statements.track = all",
                "shared_buffers = 64MB",
                "max_connections = 60",
                # A test database: durability buys nothing here and costs the shared disk.
                "fsync = off", "synchronous_commit = off", "full_page_writes = off",
                "wal_level = replica", "max_wal_senders = 4", "hot_standby = on",
                "logging_collector = off", "log_min_messages = warning", ""]))
        with (self.primary.datadir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication replicator 127.0.0.1/32 scram-sha-256\n")
        self._launch(self.primary)
        with psycopg.connect(self.primary.dsn("postgres", self.passwords["postgres"],
                                              "postgres"), autocommit=True) as conn:
            for role, grants in (("app", ""), ("missioncontrol", ""),
                                 ("replicator", " REPLICATION")):
                conn.execute(f"CREATE ROLE {role} LOGIN{grants} PASSWORD "
                             f"'{self.passwords[role]}'")
            conn.execute("GRANT pg_read_all_stats, pg_read_all_data TO missioncontrol")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER app")
        with psycopg.connect(self.primary.dsn("postgres", self.passwords["postgres"]),
                             autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION hypopg")
        with psycopg.connect(self.dsn("primary", "app"), autocommit=True) as conn:
            conn.execute(SCHEMA)

    def _start_replica(self) -> None:
        assert self.workdir is not None and self.primary is not None
        self.replica = Server("replica", free_port(), self.workdir / "replica")
        self._run([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p",
                   str(self.primary.port), "-U", "replicator", "-D", str(self.replica.datadir),
                   "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
                  PGPASSWORD=self.passwords["replicator"])
        self._launch(self.replica)
        wait_for(lambda: self.query("replica", "SELECT pg_is_in_recovery()") == [(True,)],
                 timeout=30, what="the replica in recovery (a hot standby)")

    # -- for tests -----------------------------------------------------------------------------
    def server(self, which: str) -> Server:
        server = {"primary": self.primary, "replica": self.replica}[which]
        assert server is not None, f"{which} not started"
        return server

    def dsn(self, which: str, role: str) -> str:
        return self.server(which).dsn(role, self.passwords[role])

    def query(self, which: str, sql: str, params: tuple = (), *,
              role: str = "postgres") -> list[tuple]:
        with psycopg.connect(self.dsn(which, role), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def execute(self, which: str, sql: str, *, role: str = "postgres") -> None:
        with psycopg.connect(self.dsn(which, role), autocommit=True) as conn:
            conn.execute(sql)

    def wait_replayed(self, timeout: float = 30) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        (lsn,), = self.query("primary", "SELECT pg_current_wal_lsn()::text")
        wait_for(lambda: self.query("replica", "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                    (lsn,)) == [(True,)],
                 timeout=timeout, what=f"the replica to replay up to {lsn}")

    def secrets(self) -> list[dict]:
        """The Secrets a team keeps for this database: the operator's read-only DSN of the
        primary (`orders-db`), the service's own DSNs of the primary and the replica."""
        def secret(name: str, **data: str) -> dict:
            return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                    "stringData": data}
        return [secret("orders-db", dsn=self.dsn("primary", "missioncontrol")),
                secret("orders-app-db", primary=self.dsn("primary", "app"),
                       replica=self.dsn("replica", "app"))]

    def pids(self) -> list[int]:
        return [s.proc.popen.pid for s in (self.primary, self.replica)
                if s is not None and s.proc is not None and s.proc.popen is not None]

    def stop(self) -> None:
        # The replica first: stopped after its primary it would keep retrying to stream.
        for server in (self.replica, self.primary):
            if server is None or server.proc is None or server.proc.popen is None:
                continue
            popen = server.proc.popen
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)   # fast shutdown: clients are cut off
                try:
                    popen.wait(30)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(15)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
