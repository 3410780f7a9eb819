"""The RB-002 reference read service (examples/rb-002-read-service) and its load generator,
run as processes the way the exporter is, and scraped by the test Prometheus."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .postgres import Postgres
from .procs import Proc, free_port, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rb-002-read-service"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class ReadService:
    kubeconfig: Path
    namespace: str
    deployment: str
    postgres: Postgres
    logdir: Path
    port: int = 0
    procs: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReadService:
        self.port = free_port()
        env = dict(os.environ, PRIMARY_DSN=self.postgres.dsn("primary", "app"),
                   REPLICA_DSN=self.postgres.dsn("replica", "app"))
        proc = Proc("read-service", [
            sys.executable, str(EXAMPLE / "service.py"), "--namespace", self.namespace,
            "--deployment", self.deployment, "--port", str(self.port),
            "--kubeconfig", str(self.kubeconfig)], self.logdir / "read-service.log",
            env=env).start()
        self.procs.append(proc)
        try:
            wait_for(lambda: _get(f"{self.url}/contract"), timeout=90,
                     what="the read service to answer", alive=proc.check_alive)
        except BaseException:
            self.stop()
            raise
        return self

    def contract(self) -> dict:
        """What the service honours now: {"non-critical-reads": ..., "safe-mode-cache": ...}."""
        return _get(f"{self.url}/contract")

    def load(self, *, rate: float, duration: float, concurrency: int = 8) -> Proc:
        proc = Proc("load", [sys.executable, str(EXAMPLE / "load.py"), "--url", self.url,
                             "--rate", str(rate), "--duration", str(duration),
                             "--concurrency", str(concurrency)],
                    self.logdir / "load.log").start()
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        self.procs[0].check_alive()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
