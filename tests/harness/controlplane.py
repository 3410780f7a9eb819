"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and
kube-controller-manager built from the Go module proxy by hack/build-control-plane.sh."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from missioncontrol import tls

from .procs import HarnessError, Proc, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
CONTROLLERS = ",".join([
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "endpointslice-controller",
])


def _versions() -> dict[str, str]:
    """The pinned versions and binary folder: one definition, in hack/versions.sh."""
    out = subprocess.run(
        ["bash", "-c",
         f"source {REPO}/hack/versions.sh && echo $K8S_VERSION $MC_BIN $HELM_BIN"],
        check=True, capture_output=True, text=True,
    )
    version, bin_dir, helm_dir = out.stdout.split()
    return {"K8S_VERSION": version, "MC_BIN": os.environ.get("MC_BIN", bin_dir),
            "HELM_BIN": helm_dir}


VERSIONS = _versions()
K8S_VERSION = VERSIONS["K8S_VERSION"]


def binaries_dir() -> Path:
    """Where hack/build-control-plane.sh put the binaries."""
    return Path(VERSIONS["MC_BIN"])


def _kubeconfig(server: str, ca: tls.KeyPair, user: tls.KeyPair) -> dict:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "mission-control", "cluster": {
            "server": server, "certificate-authority-data": b64(ca.cert)}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": b64(user.cert), "client-key-data": b64(user.key)}}],
        "contexts": [{"name": "mission-control", "context": {
            "cluster": "mission-control", "user": "admin", "namespace": "default"}}],
        "current-context": "mission-control",
    }


@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path = field(default_factory=binaries_dir)
    procs: list[Proc] = field(default_factory=list)
    kubeconfig: Path | None = None
    server: str = ""
    apiserver: Proc | None = None
    # More kube-apiserver flags (the scale bench's audit log).
    apiserver_args: tuple[str, ...] = ()
    _admin_tls: ssl.SSLContext | None = None

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise HarnessError(
                f"{path} is missing: run hack/build-control-plane.sh (make test does it)")
        return str(path)

    def start(self) -> ControlPlane:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        ca = tls.make_ca(pki)
        serving = tls.issue(ca, pki, "apiserver", subject=tls.Subject("kube-apiserver", hosts=(
            "localhost", "127.0.0.1", "10.0.0.1", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")))
        admin = tls.issue(ca, pki, "admin",
                          subject=tls.Subject("admin", org="system:masters", client=True))
        sa = tls.make_signing_key(pki)

        etcd_port, etcd_peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = Proc("etcd", [
            self.binary("etcd"), "--name=node0", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=node0=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync=true", "--log-level=warn",
            f"--listen-metrics-urls=http://127.0.0.1:{free_port()}",
        ], logs / "etcd.log").start()
        self.procs.append(etcd)
        wait_for(lambda: _http_ok(f"{etcd_url}/health"), timeout=30, what="etcd /health",
                 alive=etcd.check_alive)

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        apiserver = Proc("kube-apiserver", [
            self.binary("kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            # No endpoint for the "kubernetes" Service: loopback cannot be advertised.
            "--endpoint-reconciler-type=none",
            f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert}",
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--profiling=false",
            "--v=1",
            *self.apiserver_args,
        ], logs / "kube-apiserver.log").start()
        self.procs.append(apiserver)
        self.apiserver = apiserver

        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(self.server, ca, admin)))
        self.kubeconfig.chmod(0o600)
        self._admin_tls = ssl.create_default_context(cafile=str(ca.cert))
        self._admin_tls.load_cert_chain(str(admin.cert), str(admin.key))
        self._wait_ready(timeout=120)

        kcm_port = free_port()
        kcm = Proc("kube-controller-manager", [
            self.binary("kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={ca.cert}",
            "--leader-elect=false",
            f"--controllers={CONTROLLERS}",
            "--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
            "--profiling=false",
            "--v=1",
        ], logs / "kube-controller-manager.log").start()
        self.procs.append(kcm)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its serving certificate is self-signed
        wait_for(lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure),
                 timeout=60, what="kube-controller-manager /healthz", alive=kcm.check_alive)

    def _wait_ready(self, *, timeout: float) -> None:
        # Short tries: the moment it is ready is measured by tests (see start_apiserver).
        wait_for(lambda: _http_ok(f"{self.server}/readyz", self._admin_tls, timeout=0.5),
                 timeout=timeout, what="kube-apiserver /readyz", interval=0.05,
                 alive=self.apiserver.check_alive)

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop the kube-apiserver alone (SIGTERM, or SIGKILL as a crash would): etcd, the
        controller manager and every client stay up and see it go."""
        assert self.apiserver is not None, "not started"
        if kill:
            self.apiserver.kill()
        else:
            # It stops listening at once, then may linger in its shutdown for a long while.
            self.apiserver.stop(timeout=5)

    def start_apiserver(self, *, timeout: float = 120) -> float:
        """Start it again with the same flags: same port, certificates and etcd, so the data
        and every kubeconfig stay valid. Returns when it answers /readyz again, with that
        moment (time.monotonic())."""
        assert self.apiserver is not None, "not started"
        self.apiserver.start()
        self._wait_ready(timeout=timeout)
        return time.monotonic()

    def check_alive(self) -> None:
        for proc in self.procs:
            proc.check_alive()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def _http_ok(url: str, context: ssl.SSLContext | None = None, *, timeout: float = 5) -> bool:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
        return response.status == 200
