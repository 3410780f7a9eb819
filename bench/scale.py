"""`make bench-scale`: what does guarding a fleet cost, and does the rollback stay fast in it?

Builds a fleet of guarded Deployments on the local control plane (the test harness), starts
one operator watching the whole cluster, waits for every target to be recorded healthy, then
measures over an idle window: the operator's RSS (and peak), its CPU, its API requests by verb
and resource (from the API server's audit log, under an identity of its own) and the PromQL
queries Prometheus answered; then releases broken versions of a few Deployments of the fleet
and measures third failed check → template restored. See bench/README.md.

    .venv/bin/python bench/scale.py --deployments 1000 --namespaces 100 --policies 20
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "operator"))

from kubernetes import client, config, watch  # noqa: E402
from rollback import BenchFailed, epoch, quantile, run_bench, scratch  # noqa: E402

from harness import kubectl, objects  # noqa: E402
from harness.cluster import LocalCluster  # noqa: E402
from harness.controlplane import ControlPlane  # noqa: E402
from harness.crds import install as install_crds  # noqa: E402
from harness.procs import Proc, free_port, wait_for  # noqa: E402
from missioncontrol import tls  # noqa: E402

GROUP, VERSION = "missioncontrol.dev", "v1alpha1"
HOME = "bench"                       # the runbook and the policies (a cluster-policy namespace)
GROUP_LABEL = "bench.missioncontrol.dev/group"
OPERATOR_USER = "mission-control-bench"
HEALTHY = "shop/app:1.0"
STARTED = time.monotonic()


def log(text: str) -> None:
    now = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"{now} +{time.monotonic() - STARTED:6.1f}s  {text}", flush=True)


# -- the fleet ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fleet:
    deployments: int
    namespaces: int
    policies: int

    def namespace(self, i: int) -> str:
        return f"fleet-{i:04d}"

    def group(self, namespace_index: int) -> int:
        return namespace_index % self.policies

    def members(self) -> list[tuple[str, str]]:
        """(namespace, name) of every Deployment, spread evenly over the namespaces."""
        return [(self.namespace(i % self.namespaces), f"app-{i:05d}")
                for i in range(self.deployments)]


def policy(index: int, interval: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "IncidentPolicy",
        "metadata": {"name": f"guard-{index:03d}", "namespace": HOME},
        "spec": {
            "runbookRef": {"name": "rb-001"},
            "targets": {"namespaceSelector": {"matchLabels": {GROUP_LABEL: str(index)}},
                        "selector": {"matchLabels": {"bench": "fleet"}}},
            "severity": "SEV2", "mode": "enforce",
            "overrides": {
                "conditions": [
                    {"name": "readiness", "consecutiveFailures": 3, "interval": interval,
                     "gracePeriod": interval},
                    {"name": "error-rate", "interval": interval}],
                "recovery": {"slo": "20m", "stableFor": "2s"},
                "afterReleaseWindow": "30m",
            },
            "limits": {"cooldown": "1s", "maxRemediations": 1000, "window": "1h"},
        },
    }


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


# -- what the operator costs --------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def audit_counts(path: Path, start: float, end: float) -> collections.Counter:
    """The operator's requests received in [start, end), by verb and resource: a watch counts
    when it starts, any other request when it completes."""
    counts: collections.Counter = collections.Counter()
    for name in sorted(path.parent.glob(path.name + "*")):
        with open(name, encoding="utf-8") as stream:
            for line in stream:
                event = json.loads(line)
                watching = event.get("verb") == "watch"
                if event.get("stage") != ("ResponseStarted" if watching else "ResponseComplete"):
                    continue
                at = epoch(event["requestReceivedTimestamp"])
                if not start <= at < end:
                    continue
                ref = event.get("objectRef") or {}
                resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                counts[(event["verb"], resource)] += 1
    return counts


def promql_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(int(float(m.group(1))) for m in re.finditer(
        r'^prometheus_http_requests_total\{[^}]*handler="/api/v1/query(?:_range)?"[^}]*\} (\S+)',
        text, re.M))


# -- the bench ----------------------------------------------------------------------------------
@dataclass
class Figures:
    rss_kib: int = 0
    peak_kib: int = 0
    idle_cpu: float = 0.0
    requests: collections.Counter = field(default_factory=collections.Counter)
    per: float = 10.0
    window: float = 0.0
    promql: int = 0
    startup: float = 0.0
    restores: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root, self.args = root, args
        self.fleet = Fleet(args.deployments, args.namespaces, args.policies)
        self.cluster: LocalCluster | None = None
        self.operator: Proc | None = None
        self.api: client.ApiClient | None = None
        self.audit = root / "audit" / "audit.log"
        self.figures = Figures(per=args.per)

    def alive(self) -> None:
        if self.cluster:
            self.cluster.check_alive()
        if self.operator:
            self.operator.check_alive()

    def kubectl(self, *args: str) -> None:
        result = kubectl.run(self.cluster.kubeconfig, *args,
                             cache_dir=self.root / "kubectl-cache", timeout=120)
        if result.returncode != 0:
            raise BenchFailed(f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}")

    def start_cluster(self) -> None:
        self.audit.parent.mkdir(parents=True)
        audit_policy = self.root / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        cluster = LocalCluster(self.root / "cluster")
        original = ControlPlane.__init__

        # The harness's control plane, with an audit log of the operator's requests.
        def with_audit(plane: ControlPlane, *a: object, **kw: object) -> None:
            original(plane, *a, **kw)
            plane.apiserver_args = (f"--audit-policy-file={audit_policy}",
                                    f"--audit-log-path={self.audit}",
                                    "--audit-log-maxsize=200", "--audit-log-mode=batch",
                                    "--audit-log-batch-max-wait=1s")
        ControlPlane.__init__ = with_audit
        try:
            log("starting the local cluster (audit log on)")
            self.cluster = cluster.start()
        finally:
            ControlPlane.__init__ = original
        self.api = config.new_client_from_config(str(self.cluster.kubeconfig))

    def operator_kubeconfig(self) -> Path:
        """The admin kubeconfig, but for a user of the operator's own (the audit log's key)."""
        pki = self.root / "cluster" / "control-plane" / "pki"
        ca = tls.KeyPair(pki / "ca.crt", pki / "ca.key")
        pair = tls.issue(ca, self.root, "operator", subject=tls.Subject(
            OPERATOR_USER, org="system:masters", client=True))
        kubeconfig = yaml.safe_load(self.cluster.kubeconfig.read_text())
        user = kubeconfig["users"][0]["user"]
        user["client-certificate-data"] = base64.b64encode(pair.cert.read_bytes()).decode()
        user["client-key-data"] = base64.b64encode(pair.key.read_bytes()).decode()
        path = self.root / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        path.chmod(0o600)
        return path

    def build_fleet(self) -> None:
        install_crds(self.kubectl, self.api)
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)
        core.create_namespace({"metadata": {"name": HOME}})
        self.kubectl("apply", "--server-side", "-n", HOME, "-f",
                     str(REPO / "runbooks" / "rb-001-failed-production-deployment.yaml"))
        for i in range(self.fleet.namespaces):
            core.create_namespace({"metadata": {"name": self.fleet.namespace(i), "labels": {
                GROUP_LABEL: str(self.fleet.group(i))}}})
        for namespace in map(self.fleet.namespace, range(self.fleet.namespaces)):
            wait_for(lambda n=namespace: core.read_namespaced_service_account("default", n),
                     timeout=120, what="the default ServiceAccounts")
        log(f"creating {self.fleet.deployments} Deployments in {self.fleet.namespaces} "
            f"namespaces")

        def create(member: tuple[str, str]) -> None:
            namespace, name = member
            body = objects.deployment(name, image=HEALTHY, replicas=1, probe_period=10,
                                      labels={"bench": "fleet"})
            apps.create_namespaced_deployment(namespace, body)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, self.fleet.members()))
        begun = time.monotonic()

        def all_ready() -> bool:
            ready = sum(1 for d in apps.list_deployment_for_all_namespaces(
                label_selector="bench=fleet").items if (d.status.ready_replicas or 0) == 1)
            if int(time.monotonic() - begun) % 15 == 0:
                log(f"  {ready}/{self.fleet.deployments} Deployments ready")
            return ready == self.fleet.deployments

        wait_for(all_ready, timeout=self.args.timeout, what="the fleet to be Ready",
                 alive=self.alive, interval=2)
        log(f"fleet ready in {time.monotonic() - begun:.0f} s")
        for i in range(self.fleet.policies):
            custom.create_namespaced_custom_object(GROUP, VERSION, HOME, "incidentpolicies",
                                                   policy(i, self.args.interval))

    def start_operator(self) -> None:
        missionctl = Path(sys.executable).parent / "missionctl"
        command = [str(missionctl)] if missionctl.exists() else [
            sys.executable, "-m", "missioncontrol"]
        liveness = free_port()
        argv = [*command, "run", "--kubeconfig", str(self.operator_kubeconfig()),
                "--instance", "bench", "--cluster-policy-namespace", HOME,
                "--prometheus-url", self.cluster.prometheus_url,
                "--webhook-port", str(free_port()), "--liveness-port", str(liveness),
                "--metrics-port", str(free_port())]
        env = dict(os.environ, TMPDIR=str(self.root))
        started = time.monotonic()
        self.operator = Proc("missionctl", argv, self.root / "operator.log", env=env).start()
        custom = client.CustomObjectsApi(self.api)

        def recorded_healthy() -> bool:
            healthy = 0
            for body in custom.list_namespaced_custom_object(
                    GROUP, VERSION, HOME, "incidentpolicies")["items"]:
                for target in (body.get("status") or {}).get("targets") or []:
                    if target.get("replicaSet") and \
                            target.get("lastHealthyReplicaSet") == target.get("replicaSet"):
                        healthy += 1
            return healthy >= self.fleet.deployments

        wait_for(recorded_healthy, timeout=self.args.timeout,
                 what="every target recorded healthy", alive=self.alive, interval=0.5)
        self.figures.startup = time.monotonic() - started
        log(f"operator (pid {self.operator.popen.pid}): all {self.fleet.deployments} targets "
            f"recorded healthy {self.figures.startup:.1f} s after its start")

    def measure_idle(self) -> None:
        pid = self.operator.popen.pid
        log(f"settling {self.args.settle:.0f} s, then measuring an idle window of "
            f"{self.args.window:.0f} s")
        time.sleep(self.args.settle)
        self.alive()
        promql, cpu, start = promql_count(self.cluster.prometheus_url), cpu_seconds(pid), \
            time.time()
        time.sleep(self.args.window)
        end = time.time()
        self.figures.idle_cpu = (cpu_seconds(pid) - cpu) / (end - start)
        self.figures.promql = promql_count(self.cluster.prometheus_url) - promql
        self.figures.window = end - start
        status = proc_status(pid)
        self.figures.rss_kib, self.figures.peak_kib = status["VmRSS"], status["VmHWM"]
        time.sleep(3)   # the audit log is written in batches of up to a second
        self.figures.requests = audit_counts(self.audit, start, end)

    def broken_releases(self) -> None:
        """Break a few Deployments of different policies at once, staggered by a second, and
        time each from its third failed check to the healthy template seen back by a watch."""
        members = self.fleet.members()
        chosen, groups = [], set()
        for namespace, name in members:
            group = self.fleet.group(int(namespace.split("-")[1]))
            if group not in groups:
                groups.add(group)
                chosen.append((namespace, name))
            if len(chosen) == self.args.broken:
                break
        apps = client.AppsV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)
        seen: dict[tuple[str, str], list[tuple[float, str]]] = {m: [] for m in chosen}
        stopping = threading.Event()

        def follow(member: tuple[str, str]) -> None:
            namespace, name = member
            while not stopping.is_set():
                try:
                    for event in watch.Watch().stream(
                            apps.list_namespaced_deployment, namespace,
                            field_selector=f"metadata.name={name}", timeout_seconds=5):
                        image = event["object"].spec.template.spec.containers[0].image
                        seen[member].append((time.time(), image))
                except Exception:  # noqa: BLE001 - watch again
                    time.sleep(0.2)

        threads = [threading.Thread(target=follow, args=(m,), daemon=True) for m in chosen]
        for thread in threads:
            thread.start()
        time.sleep(2)
        released = {}
        for n, (namespace, name) in enumerate(chosen):
            broken = f"shop/app:2.{n}"
            template = objects.deployment(name, image=broken, ready=False,
                                          labels={"bench": "fleet"})["spec"]["template"]
            released[(namespace, name)] = (time.time(), broken)
            apps.patch_namespaced_deployment(name, namespace, {"spec": {"template": template}})
            time.sleep(1)
        log(f"released {len(chosen)} broken versions; waiting for the rollbacks")

        def restored(member: tuple[str, str]) -> float | None:
            at, broken = released[member]
            was_broken = False
            for when, image in list(seen[member]):
                if when < at:
                    continue
                was_broken = was_broken or image == broken
                if was_broken and image == HEALTHY:
                    return when
            return None

        try:
            for member in chosen:
                when = wait_for(lambda m=member: restored(m), timeout=self.args.timeout,
                                what=f"{member[0]}/{member[1]} restored", alive=self.alive,
                                interval=0.2)
                incidents = custom.list_namespaced_custom_object(
                    GROUP, VERSION, member[0], "incidents",
                    label_selector=f"missioncontrol.dev/target={member[1]}")["items"]
                fired = [e for i in incidents for e in (i.get("status") or {}).get(
                    "evidence") or [] if e.get("condition") == "readiness"
                    and e.get("outcome") == "Fail"]
                if not fired:
                    raise BenchFailed(f"{member}: no failing readiness evidence")
                self.figures.restores.append(when - epoch(fired[0]["at"]))
                log(f"  {member[0]}/{member[1]}: restored "
                    f"{self.figures.restores[-1] * 1000:.0f} ms after the third failed check")
        finally:
            stopping.set()

    def stop(self) -> None:
        if self.operator:
            self.operator.stop()
            if self.args.keep_log:
                shutil.copyfile(self.root / "operator.log", self.args.keep_log)
        if self.cluster:
            self.cluster.stop()


def report(fleet: Fleet, figures: Figures) -> None:
    per = figures.per
    scale = per / figures.window if figures.window else 0.0
    print(f"\n{fleet.deployments} Deployments / {fleet.namespaces} namespaces / "
          f"{fleet.policies} policies")
    print(f"  operator RSS                       {figures.rss_kib / 1024:.1f} MiB "
          f"(peak {figures.peak_kib / 1024:.1f} MiB)")
    print(f"  idle CPU (one core)                {figures.idle_cpu * 100:.1f} % "
          f"over {figures.window:.0f} s")
    total = sum(figures.requests.values())
    print(f"  operator API requests per {per:g} s    {total * scale:.1f}")
    for (verb, resource), count in sorted(figures.requests.items(), key=lambda i: -i[1]):
        print(f"      {verb:<7} {resource:<36} {count * scale:8.1f}")
    print(f"  PromQL queries per {per:g} s          {figures.promql * scale:.1f}")
    print(f"  startup → all recorded healthy     {figures.startup:.1f} s")
    if figures.restores:
        ms = [r * 1000 for r in figures.restores]
        print(f"  third check → restored             median {statistics.median(ms):.0f} ms, "
              f"p95 {quantile(ms, 0.95):.0f} ms, max {max(ms):.0f} ms "
              f"(over {len(ms)} broken releases)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--policies", type=int, default=5)
    parser.add_argument("--interval", default="10s", help="the guard's check interval (10s)")
    parser.add_argument("--window", type=float, default=60, help="idle window, seconds (60)")
    parser.add_argument("--settle", type=float, default=20,
                        help="seconds after startup before the window (20)")
    parser.add_argument("--per", type=float, default=10,
                        help="report requests per this many seconds (10)")
    parser.add_argument("--broken", type=int, default=5,
                        help="broken releases among the fleet, one per policy (5)")
    parser.add_argument("--timeout", type=float, default=900, help="per stage, seconds (900)")
    parser.add_argument("--keep-log", type=Path, default=None, metavar="FILE",
                        help="copy the operator's log here at the end")
    args = parser.parse_args()
    if not 1 <= args.policies <= args.namespaces <= args.deployments:
        parser.error("need 1 <= policies <= namespaces <= deployments")

    root = scratch("mission-control-scale-")
    bench = Bench(root, args)

    def stages() -> None:
        bench.start_cluster()
        bench.build_fleet()
        bench.start_operator()
        bench.measure_idle()
        bench.broken_releases()

    code = run_bench(bench, root, stages)
    if bench.figures.window:
        report(bench.fleet, bench.figures)
    return code


if __name__ == "__main__":
    sys.exit(main())
