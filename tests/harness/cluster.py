"""The whole local environment: control plane, node simulator, exporter and Prometheus."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from .controlplane import ControlPlane
from .exporter import Exporter
from .procs import Proc, wait_for
from .prometheus import Prometheus

TESTS = Path(__file__).resolve().parents[1]


@dataclass
class LocalCluster:
    workdir: Path
    control_plane: ControlPlane | None = None
    nodesim: Proc | None = None
    exporter: Exporter | None = None
    prometheus: Prometheus | None = None
    keep_workdir: bool = False
    _errors: list[BaseException] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        assert self.control_plane and self.control_plane.kubeconfig
        return self.control_plane.kubeconfig

    @property
    def prometheus_url(self) -> str:
        assert self.prometheus
        return self.prometheus.url

    def start(self) -> LocalCluster:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            # Prometheus comes up while the API server starts: they share nothing.
            self.exporter = Exporter().start()
            self.prometheus = Prometheus(self.workdir / "prometheus", self.exporter.target)
            side = threading.Thread(target=self._start_prometheus)
            side.start()
            self.control_plane = ControlPlane(self.workdir / "control-plane").start()
            self._start_nodesim()
            side.join()
            if self._errors:
                raise self._errors[0]
        except BaseException:
            self.stop()
            raise
        return self

    def _start_prometheus(self) -> None:
        try:
            self.prometheus.start()
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._errors.append(exc)

    def _start_nodesim(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        self.nodesim = Proc("nodesim", [
            sys.executable, "-m", "harness.nodesim", "--kubeconfig", str(self.kubeconfig),
        ], self.workdir / "logs" / "nodesim.log", env=env).start()
        api = client.CoreV1Api(config.new_client_from_config(str(self.kubeconfig)))

        def node_ready() -> bool:
            node = api.read_node("mission-control-sim")
            return any(c.type == "Ready" and c.status == "True"
                       for c in node.status.conditions or [])

        wait_for(node_ready, timeout=30, what="the simulated node to be Ready",
                 alive=self.nodesim.check_alive)
        # Pods need the namespace's default ServiceAccount: wait for its controller.
        wait_for(lambda: api.read_namespaced_service_account("default", "default"),
                 timeout=60, what="the default ServiceAccount")

    def check_alive(self) -> None:
        if self.control_plane:
            self.control_plane.check_alive()
        if self.nodesim:
            self.nodesim.check_alive()
        if self.prometheus:
            self.prometheus.check_alive()

    def stop(self) -> None:
        if self.nodesim:
            self.nodesim.stop()
        if self.control_plane:
            self.control_plane.stop()
        if self.prometheus:
            self.prometheus.stop()
        if self.exporter:
            self.exporter.stop()
            self.exporter = None
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
