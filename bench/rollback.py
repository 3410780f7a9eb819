"""`make bench`: how fast does RB-001 roll a failed release back?

Over repeated broken releases of one Deployment, measure the time from the third failed
readiness check (the check that fires RB-001) to the Deployment's pod template being
restored, as a client watching the Deployment sees it. See bench/README.md.

    .venv/bin/python bench/rollback.py [--iterations N] [--target SECONDS] [--tick SECONDS]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kubernetes import client, config, watch  # noqa: E402

from harness import kubectl, objects  # noqa: E402
from harness.cluster import LocalCluster  # noqa: E402
from harness.crds import install as install_crds  # noqa: E402
from harness.procs import HarnessError, Proc, free_port, wait_for  # noqa: E402
from harness.receiver import Receiver  # noqa: E402

GROUP, VERSION = "missioncontrol.dev", "v1alpha1"
NAMESPACE, APP, POLICY = "bench", "checkout", "checkout-guard"
HEALTHY = "shop/checkout:1.0"
ROLES = ("release-owner", "oncall-backend", "platform-lead", "integration-owner",
         "incident-commander")
STARTED = time.monotonic()


def log(text: str) -> None:
    now = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    print(f"{now} +{time.monotonic() - STARTED:6.1f}s  {text}", flush=True)


def epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class BenchFailed(RuntimeError):
    pass


def scratch(prefix: str) -> Path:
    """The bench's own folder for everything it starts (temp files too), and SIGTERM/SIGHUP
    made an interrupt, so that every way out stops what it started."""
    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    tempfile.tempdir = str(root)
    os.environ["TMPDIR"] = str(root)
    return root


def run_bench(bench: Any, root: Path, stages: Callable[[], None]) -> int:
    """Run the stages, then stop what `bench` started and remove `root`, however they end:
    0, 130 when interrupted, 1 when the bench or the harness failed (with the operator's last
    log lines)."""
    code = 0
    try:
        stages()
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
        code = 130
    except (BenchFailed, HarnessError) as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        if bench.operator:
            print(f"last lines of the operator's log:\n{bench.operator.tail(40)}",
                  file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            bench.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return code


# -- the objects --------------------------------------------------------------------------------
def policy() -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "IncidentPolicy",
        "metadata": {"name": POLICY, "namespace": NAMESPACE},
        "spec": {
            "runbookRef": {"name": "rb-001"},
            "targets": {"selector": {"matchLabels": {"app": APP}}},
            "severity": "SEV2", "mode": "enforce", "ownershipRef": {"name": APP},
            "overrides": {
                "conditions": [{"name": "readiness", "consecutiveFailures": 3,
                                "interval": "1s", "gracePeriod": "1s"}],
                "recovery": {"slo": "5m", "stableFor": "2s"},
                "afterReleaseWindow": "10m",
            },
            "limits": {"cooldown": "1s", "maxRemediations": 1000, "window": "1h"},
        },
    }


def ownership(receiver: Receiver) -> tuple[dict, dict]:
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "routes", "namespace": NAMESPACE},
              "stringData": {role: receiver.url(f"/{role}") for role in ROLES}}
    own = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ServiceOwnership",
           "metadata": {"name": APP, "namespace": NAMESPACE},
           "spec": {"service": APP, "roles": [
               {"role": role, "contacts": [{"name": f"{role}-person", "route": {
                   "type": "Webhook", "secretRef": {"name": "routes", "key": role}}}]}
               for role in ROLES]}}
    return secret, own


# -- the Deployment, as a watching client sees it -----------------------------------------------
class TemplateWatch:
    """Every event of the Deployment, stamped with this process's wall clock on arrival."""

    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self.events: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="template-watch")

    def start(self) -> TemplateWatch:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)

    def _run(self) -> None:
        version = None
        while not self.stopping.is_set():
            try:
                stream = watch.Watch().stream(
                    self.apps.list_namespaced_deployment, NAMESPACE,
                    field_selector=f"metadata.name={APP}", resource_version=version,
                    timeout_seconds=2)
                for event in stream:
                    at = time.time()
                    obj = event["object"]
                    if event["type"] == "ERROR" or isinstance(obj, dict):
                        version = None    # expired (410): list again from now
                        break
                    version = obj.metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        image = obj.spec.template.spec.containers[0].image
                        with self.lock:
                            self.events.append((at, image))
                    if self.stopping.is_set():
                        return
            except client.ApiException as exc:
                if exc.status == 410:     # expired: list again from now
                    version = None
                    continue
                self.error = exc
                return
            except Exception as exc:  # noqa: BLE001 - reported to the main thread
                if self.stopping.is_set():
                    return
                self.error = exc
                return

    def restored_after(self, released_at: float, broken: str) -> float | None:
        """When the template first went back to the healthy image after `broken` was seen."""
        with self.lock:
            events = list(self.events)
        seen_broken = False
        for at, image in events:
            if at < released_at:
                continue
            if image == broken:
                seen_broken = True
            elif seen_broken and image == HEALTHY:
                return at
        return None


@dataclass
class Sample:
    incident: str
    release_to_open: float
    third_check_to_restored: float
    third_check_to_rollback_recorded: float | None


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- the bench ----------------------------------------------------------------------------------
class Bench:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.cluster: LocalCluster | None = None
        self.receiver: Receiver | None = None
        self.operator: Proc | None = None
        self.watch: TemplateWatch | None = None
        self.api: client.ApiClient | None = None
        self.peak_rss_kib: int | None = None

    def alive(self) -> None:
        if self.cluster:
            self.cluster.check_alive()
        if self.operator:
            self.operator.check_alive()
        if self.watch and self.watch.error:
            raise BenchFailed(f"the Deployment watch failed: {self.watch.error}")

    def wait(self, condition: Callable[[], object], what: str, timeout: float) -> object:
        return wait_for(condition, timeout=timeout, what=what, alive=self.alive, interval=0.1)

    def kubectl(self, *args: str) -> None:
        result = kubectl.run(self.cluster.kubeconfig, *args,
                             cache_dir=self.root / "kubectl-cache", timeout=60)
        if result.returncode != 0:
            raise BenchFailed(f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}")

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def target(self) -> dict:
        body = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                        "incidentpolicies", POLICY)
        return next((t for t in (body.get("status") or {}).get("targets") or []
                     if t["name"] == APP), {})

    def incidents(self) -> list[dict]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                         "incidents")["items"]

    # -- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        log("starting the local cluster")
        self.cluster = LocalCluster(self.root / "cluster").start()
        self.api = config.new_client_from_config(str(self.cluster.kubeconfig))
        install_crds(self.kubectl, self.api)
        core = client.CoreV1Api(self.api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_for(lambda: core.read_namespaced_service_account("default", NAMESPACE),
                 timeout=60, what="the default ServiceAccount")
        self.kubectl("apply", "--server-side", "-n", NAMESPACE, "-f",
                     str(REPO / "runbooks" / "rb-001-failed-production-deployment.yaml"))
        self.receiver = Receiver().start()
        secret, own = ownership(self.receiver)
        core.create_namespaced_secret(NAMESPACE, secret)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                    "serviceownerships", own)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                    "incidentpolicies", policy())
        self.apps.create_namespaced_deployment(
            NAMESPACE, objects.deployment(APP, image=HEALTHY, replicas=3))
        self.watch = TemplateWatch(self.api).start()

        missionctl = Path(sys.executable).parent / "missionctl"
        command = [str(missionctl)] if missionctl.exists() else [
            sys.executable, "-m", "missioncontrol"]
        liveness = free_port()
        argv = [*command, "run", "--kubeconfig", str(self.cluster.kubeconfig),
                "--namespace", NAMESPACE, "--instance", "bench",
                "--prometheus-url", self.cluster.prometheus_url,
                "--webhook-port", str(free_port()), "--liveness-port", str(liveness),
                "--metrics-port", str(free_port())]
        if self.args.tick is not None:
            argv += ["--tick", str(self.args.tick)]
        env = dict(os.environ, TMPDIR=str(self.root))   # its webhook certificates
        self.operator = Proc("missionctl", argv, self.root / "operator.log", env=env).start()

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz",
                                        timeout=2) as answer:
                return answer.status == 200

        self.wait(healthy, "the operator's liveness endpoint", 60)
        log(f"operator running (pid {self.operator.popen.pid}); waiting for release 1 to be "
            f"recorded healthy")
        self.wait_settled(120)

    def wait_settled(self, timeout: float) -> None:
        """Healthy, fully rolled out, recorded as the last healthy release, no incident open:
        the next broken release starts from the same place as the first."""
        def settled() -> bool:
            dep = self.apps.read_namespaced_deployment(APP, NAMESPACE)
            status = dep.status
            if dep.spec.template.spec.containers[0].image != HEALTHY:
                return False
            if not ((status.ready_replicas or 0) == (status.updated_replicas or 0)
                    == (status.replicas or 0) == 3):
                return False
            target = self.target()
            if target.get("incident") or not target.get("lastHealthyReplicaSet"):
                return False
            if target.get("replicaSet") != target.get("lastHealthyReplicaSet"):
                return False
            return all((i.get("status") or {}).get("phase") in ("Resolved", "Closed")
                       for i in self.incidents())

        self.wait(settled, "the Deployment to settle healthy", timeout)

    # -- one broken release ---------------------------------------------------------------------
    def iteration(self, n: int, seen: set[str]) -> Sample:
        broken = f"shop/checkout:2.{n}"
        template = objects.deployment(APP, image=broken, ready=False)["spec"]["template"]
        released_at = time.time()
        self.apps.patch_namespaced_deployment(APP, NAMESPACE, {"spec": {"template": template}})

        def new_incident() -> dict | None:
            fresh = [i for i in self.incidents() if i["metadata"]["name"] not in seen]
            return fresh[0] if fresh else None

        name = self.wait(new_incident, f"an incident for {broken}",
                         self.args.timeout)["metadata"]["name"]
        seen.add(name)

        def resolved() -> dict | None:
            body = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                            "incidents", name)
            phase = (body.get("status") or {}).get("phase")
            if phase == "Failed":
                raise BenchFailed(f"incident {name} Failed: {body['status'].get('reason')}")
            return body if phase == "Resolved" else None

        body = self.wait(resolved, f"incident {name} to resolve", self.args.timeout)
        status = body["status"]
        fired = [e for e in status.get("evidence") or []
                 if e.get("condition") == "readiness" and e.get("outcome") == "Fail"]
        if not fired:
            raise BenchFailed(f"incident {name} has no failing readiness evidence: "
                              f"{status.get('evidence')}")
        third_check = epoch(fired[0]["at"])
        restored = self.wait(lambda: self.watch.restored_after(released_at, broken),
                             "the watch to see the healthy template back", 10)
        rollback = next((s for s in status.get("steps") or [] if s["id"] == "rollback"), {})
        if rollback.get("state") != "Succeeded":
            raise BenchFailed(f"incident {name}: rollback {rollback.get('state')}: "
                              f"{rollback.get('message')}")
        recorded = (epoch(rollback["finishedAt"]) - third_check
                    if rollback.get("finishedAt") else None)
        self.wait_settled(self.args.timeout)
        return Sample(name, epoch(status["detectedAt"]) - released_at, restored - third_check,
                      recorded)

    def read_peak_rss(self) -> None:
        try:
            for line in Path(f"/proc/{self.operator.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = int(line.split()[1])
        except (OSError, AttributeError):
            self.peak_rss_kib = None

    def stop(self) -> None:
        if self.watch:
            self.watch.stop()
        if self.operator:
            self.operator.stop()
        if self.receiver:
            self.receiver.stop()
        if self.cluster:
            self.cluster.stop()


def report(samples: list[Sample], target: float, peak_rss_kib: int | None) -> bool:
    print()
    print(f"{'#':>3}  {'incident':<22}  {'release→open':>12}  {'3rd check→restored':>18}  "
          f"{'(rollback recorded)':>19}")
    for i, s in enumerate(samples, 1):
        recorded = f"{s.third_check_to_rollback_recorded * 1000:.0f} ms" \
            if s.third_check_to_rollback_recorded is not None else "-"
        print(f"{i:>3}  {s.incident:<22}  {s.release_to_open:>10.2f} s  "
              f"{s.third_check_to_restored * 1000:>15.0f} ms  {recorded:>19}")
    restore = [s.third_check_to_restored for s in samples]
    opened = [s.release_to_open for s in samples]

    def row(label: str, values: list[float], unit: str, scale: float) -> None:
        print(f"  {label:<32} median {statistics.median(values) * scale:8.{0 if scale > 1 else 2}f}"
              f" {unit}   p95 {quantile(values, 0.95) * scale:8.{0 if scale > 1 else 2}f} {unit}"
              f"   min {min(values) * scale:8.{0 if scale > 1 else 2}f} {unit}"
              f"   max {max(values) * scale:8.{0 if scale > 1 else 2}f} {unit}")

    print(f"\nover {len(samples)} broken releases:")
    row("third failed check → restored", restore, "ms", 1000)
    row("release → incident open", opened, "s", 1)
    if peak_rss_kib is not None:
        print(f"  operator peak RSS (VmHWM)        {peak_rss_kib / 1024:.1f} MiB")
    met = max(restore) < target
    print(f"\ntarget: template restored under {target:g} s after the third failed check: "
          + ("MET" if met else "NOT MET")
          + f" (max {max(restore) * 1000:.0f} ms, p95 {quantile(restore, 0.95) * 1000:.0f} ms)")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10, help="broken releases (10)")
    parser.add_argument("--target", type=float, default=1.0,
                        help="seconds from the third failed check to the restore (1.0)")
    parser.add_argument("--tick", type=float, default=None,
                        help="the operator's --tick (default: the operator's own default)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds each stage of an iteration may take (120)")
    parser.add_argument("--fail-on-miss", action="store_true",
                        help="exit 3 when the target is not met")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")

    root = scratch("mission-control-bench-")
    bench = Bench(root, args)
    samples: list[Sample] = []

    def stages() -> None:
        bench.setup()
        seen: set[str] = set()
        for n in range(args.iterations):
            sample = bench.iteration(n, seen)
            samples.append(sample)
            log(f"release {n + 1}/{args.iterations}: {sample.incident} opened "
                f"{sample.release_to_open:.2f} s after the release; template restored "
                f"{sample.third_check_to_restored * 1000:.0f} ms after the third failed check")
        bench.read_peak_rss()

    code = run_bench(bench, root, stages)
    if code == 0:
        met = report(samples, args.target, bench.peak_rss_kib)
        if not met and args.fail_on_miss:
            code = 3
    return code


if __name__ == "__main__":
    sys.exit(main())
