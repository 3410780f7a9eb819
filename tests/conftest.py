"""Fixtures: the real control plane and Prometheus for the session, a namespace per test.

Set MC_TEST_KUBECONFIG to run against an existing cluster (kind, say) instead of starting the
local control plane; Prometheus and its exporter are still started locally."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from harness import kubectl
from harness.alertmanager import Alertmanager
from harness.cluster import LocalCluster
from harness.controlplane import ControlPlane
from harness.exporter import Exporter
from harness.postgres import Postgres
from harness.procs import wait_for
from harness.prometheus import Prometheus
from harness.redis import RedisServer


@dataclass
class Env:
    """What a test needs to reach the cluster and Prometheus."""
    kubeconfig: Path
    prometheus_url: str
    exporter: Exporter
    prometheus: Prometheus
    api: client.ApiClient
    # The local control plane, to stop and start its API server; None on an external cluster.
    control_plane: ControlPlane | None = None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                namespace: str | None = None) -> subprocess.CompletedProcess:
        if namespace:
            args = (f"--namespace={namespace}", *args)
        result = kubectl.run(self.kubeconfig, *args, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result


@pytest.fixture(scope="session")
def env() -> Iterator[Env]:
    workdir = Path(tempfile.mkdtemp(prefix="mission-control-test-"))
    external = os.environ.get("MC_TEST_KUBECONFIG")
    if external:
        exporter = Exporter().start()
        prometheus = Prometheus(workdir / "prometheus", exporter.target).start()
        try:
            yield Env(Path(external), prometheus.url, exporter, prometheus,
                      config.new_client_from_config(external))
        finally:
            prometheus.stop()
            exporter.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        return
    cluster = LocalCluster(workdir).start()
    try:
        yield Env(cluster.kubeconfig, cluster.prometheus_url, cluster.exporter,
                  cluster.prometheus, config.new_client_from_config(str(cluster.kubeconfig)),
                  cluster.control_plane)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL primary and its streaming replica for the session, started the first time
    a test asks for them (harness/postgres.py), stopped with nothing left at the end."""
    servers = Postgres().start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def namespace(env: Env, _describe: None) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    core = client.CoreV1Api(env.api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"mission-control/test": "1"}}})
    wait_for(lambda: core.read_namespaced_service_account("default", name), timeout=30,
             what=f"the default ServiceAccount in {name}")
    yield name
    core.delete_namespace(name)


_ENVIRONMENT: list[str] = []


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Append a line here to have it shown in the run's summary. The lines travel in the
    test's report, so they reach the summary also from a pytest-xdist worker."""
    lines: list[str] = []
    yield lines
    request.node.user_properties.extend(("measured", line) for line in lines)


@pytest.fixture(scope="session")
def _describe(env: Env) -> None:
    info = client.VersionApi(env.api).get_code()
    _ENVIRONMENT.append(f"kube-apiserver {info.git_version} at {env.api.configuration.host}")
    _ENVIRONMENT.append(f"prometheus at {env.prometheus_url}")


@pytest.fixture(autouse=True)
def _environment_reported(request: pytest.FixtureRequest) -> Iterator[None]:
    """The first test of each process (each xdist worker has its own cluster) carries the
    environment it ran against in its report."""
    yield
    if _ENVIRONMENT and not getattr(_environment_reported, "done", False):
        _environment_reported.done = True
        request.node.user_properties.extend(("environment", line) for line in _ENVIRONMENT)


_SHOWN: dict[str, list[str]] = {"environment": [], "measured": []}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "teardown":
        return
    for key, line in report.user_properties:
        if key in _SHOWN and line not in _SHOWN[key]:
            _SHOWN[key].append(line)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if _SHOWN["environment"]:
        terminalreporter.write_sep("-", "integration environment")
        for line in _SHOWN["environment"]:
            terminalreporter.write_line(line)
    if _SHOWN["measured"]:
        terminalreporter.write_sep("-", "measured")
        for line in _SHOWN["measured"]:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real Redis per session, started only when a test asks for it."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def alertmanager(env: Env) -> Iterator[Alertmanager]:
    """One real Alertmanager per session, started the first time a test asks for it, that the
    session's Prometheus sends its alerts to; stopped with nothing left at the end."""
    with Alertmanager() as server:
        env.prometheus.add_alertmanager("session", server.target)
        try:
            yield server
        finally:
            env.prometheus.remove_alertmanager("session")
