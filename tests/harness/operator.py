"""The operator under test, as a real process: `missionctl run` against the test cluster,
watching one namespace, with its own webhook configuration and free ports."""

from __future__ import annotations

import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Proc, free_port, wait_for


@dataclass
class OperatorProcess:
    kubeconfig: Path
    namespace: str
    log: Path
    prometheus_url: str | None = None
    extra: tuple[str, ...] = ()
    tick: float = 0.5
    # Short, so a test that kills an operator and starts another waits seconds for the Lease.
    lease_duration: str = "6s"
    proc: Proc | None = None
    liveness_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    webhook_port: int = field(default_factory=free_port)

    @property
    def webhook_config(self) -> str:
        return f"mission-control-freeze-{self.namespace}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> OperatorProcess:
        argv = [sys.executable, "-m", "missioncontrol", "run",
                "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace,
                "--instance", self.namespace, "--tick", str(self.tick),
                "--liveness-port", str(self.liveness_port),
                "--metrics-port", str(self.metrics_port),
                "--webhook-port", str(self.webhook_port),
                "--lease-duration", self.lease_duration, *self.extra]
        if self.prometheus_url:
            argv += ["--prometheus-url", self.prometheus_url]
        self.proc = Proc("missionctl", argv, self.log, env=dict(os.environ)).start()
        wait_for(lambda: _ok(f"http://127.0.0.1:{self.liveness_port}/healthz"), timeout=60,
                 what="the operator's liveness endpoint", alive=self.proc.check_alive)
        return self

    def check_alive(self) -> None:
        if self.proc:
            self.proc.check_alive()

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        """Stop it the hard way, as a crashed pod would."""
        if self.proc and self.proc.popen and self.proc.popen.poll() is None:
            self.proc.popen.kill()
            self.proc.popen.wait(10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200
