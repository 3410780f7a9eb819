"""`make demo`: Mission Control handling RB-001 (Failed Production Deployment) end to end.

What it does, printing each stage with a timestamp:

  1. starts its own local cluster in a temporary folder (etcd, kube-apiserver,
     kube-controller-manager, the node simulator, the exporter and Prometheus: the same
     harness the tests use), on free ports, so it never touches a cluster started with
     `make cluster-up`, nor your ~/.kube;
  2. installs the CRDs (server-side apply, waits for Established) and, in namespace `shop`,
     the runbook catalogue and demo/shop.yaml: Deployment `checkout` 1.0 (3 replicas), a
     ServiceOwnership whose routes are webhooks to a receiver this script runs, and an
     IncidentPolicy enforcing RB-001 with its checks sped up;
  3. runs the operator (`missionctl run`) and waits until release 1 is recorded healthy;
  4. releases checkout 2.0, whose pods never become Ready, and follows what happens: the
     readiness checks failing, the incident opening, the deploy freeze (a deploy attempt
     refused by the admission webhook), the automatic rollback, recovery and resolution;
  5. prints the status board (`kubectl get incidents -n shop`), the incident's timeline and
     every message the receiver got.

Everything it starts is stopped on exit, on Ctrl-C and on failure, and its temporary folder
(cluster state, logs, the operator's webhook certificates, kubectl's cache) is removed.
It exits non-zero when the story does not complete within --deadline seconds.

    .venv/bin/python hack/demo.py [--deadline SECONDS] [--keep-logs]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kubernetes import client, config  # noqa: E402

from harness import kubectl  # noqa: E402
from harness.cluster import LocalCluster  # noqa: E402
from harness.crds import install as install_crds  # noqa: E402
from harness.procs import HarnessError, Proc, free_port, wait_for  # noqa: E402
from harness.receiver import Receiver  # noqa: E402

GROUP, VERSION = "missioncontrol.dev", "v1alpha1"
NAMESPACE, APP, POLICY = "shop", "checkout", "checkout-guard"
HEALTHY, BROKEN, NEXT = "shop/checkout:1.0", "shop/checkout:2.0", "shop/checkout:2.1"
READY_ANNOTATION = "sim.missioncontrol.dev/ready"
CRD_PLURALS = ("runbooks", "incidentpolicies", "incidents", "serviceownerships")

# -- output -------------------------------------------------------------------------------------
STARTED = time.monotonic()
BOLD, DIM, RED, GREEN, YELLOW, RESET = (
    ("\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[33m", "\033[0m")
    if sys.stdout.isatty() else ("",) * 6)


def _stamp() -> str:
    now = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    return f"{now} +{time.monotonic() - STARTED:5.1f}s"


def stage(text: str) -> None:
    print(f"\n{DIM}{_stamp()}{RESET} {BOLD}== {text}{RESET}", flush=True)


def say(text: str, color: str = "") -> None:
    print(f"{DIM}{_stamp()}{RESET}    {color}{text}{RESET if color else ''}", flush=True)


def block(text: str, indent: str = "      ") -> None:
    print(textwrap.indent(text.rstrip("\n"), indent), flush=True)


class DemoFailed(RuntimeError):
    pass


class Deadline:
    """One deadline for the whole run: every wait gets what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def wait(self, condition: Callable[[], object], what: str, *,
             alive: Callable[[], None] | None = None, interval: float = 0.2) -> object:
        if self.left() <= 0:
            raise DemoFailed(f"the demo did not complete within {self.seconds:.0f} s "
                             f"(was about to wait for {what})")
        try:
            return wait_for(condition, timeout=self.left(), what=what, interval=interval,
                            alive=alive)
        except HarnessError as exc:
            _, _, detail = str(exc).partition(" (last error: ")
            raise DemoFailed(f"the demo did not complete within {self.seconds:.0f} s: gave up "
                             f"waiting for {what}"
                             + (f" (last error: {detail}" if detail else "")) from exc


def hms(iso: str | None) -> str:
    """An RFC 3339 time from the cluster, as local HH:MM:SS.mmm."""
    if not iso:
        return "-"
    moment = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    return moment.strftime("%H:%M:%S.%f")[:-3]


def epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the demo -----------------------------------------------------------------------------------
class Demo:
    def __init__(self, root: Path, deadline: Deadline) -> None:
        self.root = root
        self.deadline = deadline
        self.cluster: LocalCluster | None = None
        self.receiver: Receiver | None = None
        self.operator: Proc | None = None
        self.api: client.ApiClient | None = None
        self.released_at = 0.0
        self.policy = POLICY
        self.operator_args: list[str] = []   # more `missionctl run` options (another act's)

    # -- plumbing -------------------------------------------------------------------------------
    def alive(self) -> None:
        if self.cluster:
            self.cluster.check_alive()
        if self.operator:
            self.operator.check_alive()

    def wait(self, condition: Callable[[], object], what: str, **kw: object) -> object:
        return self.deadline.wait(condition, what, alive=self.alive, **kw)

    def kubectl(self, *args: str, show: bool = False, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        if show:
            say(f"$ kubectl {shlex.join(args)}", DIM)
        result = kubectl.run(self.cluster.kubeconfig, *args, input=input,
                             cache_dir=self.root / "kubectl-cache", timeout=60)
        if check and result.returncode != 0:
            raise DemoFailed(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
        return result

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def policy_target(self) -> dict:
        body = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                        "incidentpolicies", self.policy)
        targets = (body.get("status") or {}).get("targets") or []
        return next((t for t in targets if t["name"] == APP), {})

    def incidents(self) -> list[dict]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                         "incidents")["items"]

    def incident(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                        "incidents", name)

    def deployment(self) -> client.V1Deployment:
        return self.apps.read_namespaced_deployment(APP, NAMESPACE)

    # -- stages ---------------------------------------------------------------------------------
    def run(self) -> None:
        self.start_cluster()
        self.install()
        self.start_operator()
        self.wait_healthy_release()
        name = self.release_broken()
        self.follow_freeze(name)
        self.follow_rollback(name)
        self.follow_recovery(name)
        self.report(name)

    def start_cluster(self) -> None:
        stage("Starting a local cluster: etcd, kube-apiserver, kube-controller-manager, "
              "node simulator, Prometheus")
        say(f"state and logs in {self.root} (removed on exit)")
        self.cluster = LocalCluster(self.root / "cluster").start()
        self.api = config.new_client_from_config(str(self.cluster.kubeconfig))
        version = client.VersionApi(self.api).get_code().git_version
        say(f"kube-apiserver {version} at {self.api.configuration.host}; "
            f"Prometheus at {self.cluster.prometheus_url}", GREEN)

    def install(self) -> None:
        stage("Installing Mission Control's CRDs and the runbook catalogue")
        say("$ kubectl apply --server-side -k crds/", DIM)
        install_crds(self.kubectl, self.api)
        say(f"CRDs Established: {', '.join(CRD_PLURALS)} ({GROUP}/{VERSION})", GREEN)

        self.receiver = Receiver().start()
        say(f"a local receiver stands in for the pagers and chat at {self.receiver.url()}")
        docs = [d for d in yaml.safe_load_all(string.Template(
            (REPO / "demo" / "shop.yaml").read_text()).safe_substitute(
            RECEIVER=self.receiver.url("").rstrip("/"))) if d]
        namespaces = [d for d in docs if d["kind"] == "Namespace"]
        rest = [d for d in docs if d["kind"] != "Namespace"]
        self.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(namespaces))
        core = client.CoreV1Api(self.api)
        self.wait(lambda: core.read_namespaced_service_account("default", NAMESPACE),
                  f"the default ServiceAccount of namespace {NAMESPACE}")
        catalogue = sorted(str(p.relative_to(REPO)) for p in (REPO / "runbooks").glob("rb-*.yaml"))
        args = [a for path in catalogue for a in ("-f", path)]
        out = self.kubectl("apply", "--server-side", "-n", NAMESPACE, *args, show=True)
        block(out.stdout)
        say("$ kubectl apply --server-side -f demo/shop.yaml   "
            "(namespace, routes Secret, ServiceOwnership, IncidentPolicy, Deployment)", DIM)
        out = self.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(rest))
        block(out.stdout)

    def start_operator(self) -> None:
        stage("Starting the operator")
        missionctl = Path(sys.executable).parent / "missionctl"
        command = [str(missionctl)] if missionctl.exists() else [
            sys.executable, "-m", "missioncontrol"]
        liveness = free_port()
        argv = [*command, "run", "--kubeconfig", str(self.cluster.kubeconfig),
                "--namespace", NAMESPACE, "--instance", "demo",
                "--prometheus-url", self.cluster.prometheus_url,
                "--webhook-port", str(free_port()), "--liveness-port", str(liveness),
                "--metrics-port", str(free_port()), "--tick", "0.5", *self.operator_args]
        shown = ["missionctl", *argv[len(command):]]
        say("$ " + " ".join(shown), DIM)
        # The operator writes its webhook certificates under $TMPDIR: keep them in our folder.
        env = dict(os.environ, TMPDIR=str(self.root))
        self.operator = Proc("missionctl", argv, self.root / "operator.log", env=env).start()
        import urllib.request

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz",
                                        timeout=2) as answer:
                return answer.status == 200

        self.wait(healthy, "the operator's liveness endpoint")
        say(f"operator running (pid {self.operator.popen.pid}), watching namespace "
            f"{NAMESPACE}, serving the freeze admission webhook", GREEN)

        def policy_ready() -> str | None:
            body = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE,
                                                            "incidentpolicies", self.policy)
            for c in (body.get("status") or {}).get("conditions") or []:
                if c["type"] == "Ready" and c["status"] == "True":
                    return c.get("message", "")
            return None

        message = self.wait(policy_ready, f"IncidentPolicy {self.policy} to be Ready")
        say(f"IncidentPolicy {self.policy}: {message}", GREEN)

    def wait_healthy_release(self) -> None:
        stage(f"Waiting for release 1 of {APP} ({HEALTHY}) to be up and recorded healthy")

        def rolled_out() -> bool:
            d = self.deployment()
            return (d.status.ready_replicas or 0) == 3 and (d.status.updated_replicas or 0) == 3

        self.wait(rolled_out, f"{APP} to have 3 Ready replicas")
        say(f"{APP}: 3/3 pods Ready")
        target = self.wait(lambda: (t := self.policy_target()).get(
            "lastHealthyRevision") == 1 and t, "revision 1 recorded as last known healthy")
        say(f"revision 1 ({target['lastHealthyReplicaSet']}) recorded as the last known "
            f"healthy release", GREEN)

    def release_broken(self) -> str:
        stage(f"Releasing {BROKEN}: a broken release whose pods never become Ready")
        patch = {"spec": {"template": {
            "metadata": {"annotations": {READY_ANNOTATION: "false"}},
            "spec": {"containers": [{"name": "app", "image": BROKEN}]}}}}
        self.released_at = time.time()
        self.kubectl("patch", "deployment", APP, "-n", NAMESPACE, "-p", json.dumps(patch),
                     show=True)
        say("(the annotation tells the node simulator to fail the new pods' readiness probes)",
            DIM)
        seen = {"failures": 0, "message": ""}

        def opened() -> dict | None:
            check = (self.policy_target().get("checks") or {}).get("readiness") or {}
            failures = check.get("failures") or 0
            if failures > seen["failures"]:
                message = check.get("lastMessage", "")
                say(f"readiness check failed ({failures} of 3 in a row)"
                    + (f": {message}" if message != seen["message"] else ""), YELLOW)
                seen["message"] = message
            seen["failures"] = failures
            found = self.incidents()
            return found[0] if found else None

        body = self.wait(opened, "the incident to open")
        name = body["metadata"]["name"]
        fired = next((e for e in (body.get("status") or {}).get("evidence") or []
                      if e.get("condition") == "readiness" and e.get("outcome") == "Fail"), None)
        if fired and seen["failures"] < 3:
            say(f"readiness check failed (3 of 3 in a row) at {hms(fired.get('at'))}: "
                f"RB-001's trigger fires", YELLOW)
        stage(f"Incident {name} opened")
        spec, status = body["spec"], body.get("status") or {}
        detected = status.get("detectedAt")
        after = f" ({epoch(detected) - self.released_at:.1f} s after the release)" \
            if detected else ""
        say(f"{spec['runbook']['id']} on {spec['target']['kind']} "
            f"{spec['target']['namespace']}/{spec['target']['name']}, severity "
            f"{spec['severity']}, owner {spec.get('owner', '?')}{after}", RED)
        for evidence in status.get("evidence") or []:
            if evidence.get("outcome") == "Fail":
                message = evidence["message"]
                say(f"evidence: {evidence['condition']} {evidence['outcome']} at "
                    f"{hms(evidence.get('at'))}"
                    + (f": {message}" if message != seen["message"] else
                       " (the third failed check)"), RED)
        return name

    def follow_freeze(self, name: str) -> None:
        def frozen() -> dict | None:
            freeze = ((self.incident(name).get("status") or {}).get("freeze")) or {}
            return freeze if freeze.get("active") else None

        freeze = self.wait(frozen, "the deploy freeze")
        stage(f"Deploys frozen ({freeze.get('scope')}: {', '.join(freeze.get('objects') or [])})")
        say(f"frozen since {hms(freeze.get('since'))}: {freeze.get('reason', '')}")
        say("someone tries to ship a fix forward while the incident is open:")
        attempt = self.kubectl("set", "image", f"deployment/{APP}", f"app={NEXT}",
                               "-n", NAMESPACE, show=True, check=False)
        if attempt.returncode == 0:
            raise DemoFailed(f"the deploy went through the freeze: {attempt.stdout}")
        say(f"refused by the admission webhook (kubectl exit code {attempt.returncode}):", GREEN)
        block("\n".join(textwrap.fill(line, 100, subsequent_indent="  ")
                        for line in attempt.stderr.strip().splitlines()))

    def follow_rollback(self, name: str) -> None:
        def rollback_done() -> dict | None:
            body = self.incident(name)
            steps = {s["id"]: s for s in (body.get("status") or {}).get("steps") or []}
            step = steps.get("rollback") or {}
            return body if step.get("state") in ("Succeeded", "Failed", "Skipped") else None

        body = self.wait(rollback_done, "the automatic rollback")
        step = next(s for s in body["status"]["steps"] if s["id"] == "rollback")
        stage("Automatic rollback")
        if step["state"] != "Succeeded":
            raise DemoFailed(f"the rollback {step['state']}: {step.get('message')}")
        say(f"rollback {step['state']} at {hms(step.get('finishedAt'))}: {step.get('message')}",
            GREEN)
        image = self.wait(lambda: (i := self.deployment().spec.template.spec.containers[0]
                                   .image) == HEALTHY and i,
                          "the pod template to be restored")
        revision = self.deployment().metadata.annotations.get(
            "deployment.kubernetes.io/revision")
        say(f"{APP}'s pod template is back on {image} (now revision {revision})", GREEN)
        blast = (body["status"].get("blastRadius") or {}).get("summary")
        if blast:
            say(f"blast radius: {blast}")

    def follow_recovery(self, name: str) -> None:
        stage("Recovery")

        def recovered() -> bool:
            d = self.deployment()
            return (d.spec.template.spec.containers[0].image == HEALTHY
                    and (d.status.ready_replicas or 0) == 3
                    and (d.status.updated_replicas or 0) == 3
                    and (d.status.replicas or 0) == 3)

        self.wait(recovered, f"{APP} to run 3 Ready pods of {HEALTHY}")
        say(f"{APP}: 3/3 pods Ready on {HEALTHY}; the broken pods are gone", GREEN)

        def phase_is(*phases: str) -> Callable[[], dict | None]:
            def check() -> dict | None:
                body = self.incident(name)
                return body if (body.get("status") or {}).get("phase") in phases else None
            return check

        body = self.wait(phase_is("Mitigated", "Resolved"), f"incident {name} to be Mitigated")
        say(f"incident {name}: Mitigated at {hms(body['status'].get('mitigatedAt'))}; "
            f"confirming stable service before resolving")
        body = self.wait(phase_is("Resolved"), f"incident {name} to be Resolved")
        status = body["status"]
        took = epoch(status["resolvedAt"]) - epoch(status["detectedAt"])
        say(f"incident {name}: Resolved at {hms(status.get('resolvedAt'))}, "
            f"{took:.1f} s after detection; SLO: {(status.get('slo') or {}).get('status')}",
            GREEN)
        self.wait(lambda: not ((self.incident(name).get("status") or {}).get("freeze")
                               or {}).get("active"), "the freeze to lift")
        say("deploy freeze lifted", GREEN)

    def report(self, name: str) -> None:
        # Resolution notices go out in the background: give them a moment, but do not
        # fail the demo for them.
        try:
            wait_for(lambda: any((r.json or {}).get("phase") == "Resolved"
                                 for r in self.receiver.requests()),
                     timeout=min(5.0, max(0.1, self.deadline.left())),
                     what="the resolution notice")
        except HarnessError:
            say("(no all-clear message reached the receiver within 5 s of the resolution)",
                DIM)
        stage("The status board")
        out = self.kubectl("get", "incidents", "-n", NAMESPACE, show=True)
        block(out.stdout)

        stage(f"Timeline of {name}")
        body = self.incident(name)
        rows = [(hms(e.get("at")), e.get("type", ""), e.get("message", ""))
                for e in body["status"].get("timeline") or []]
        width = max([len("TYPE"), *(len(r[1]) for r in rows)])
        block(f"{'TIME':<12}  {'TYPE':<{width}}  MESSAGE")
        for at, kind, message in rows:
            lines = textwrap.wrap(message, 96 - width) or [""]
            block(f"{at:<12}  {kind:<{width}}  {lines[0]}")
            for more in lines[1:]:
                block(f"{'':<12}  {'':<{width}}  {more}")

        stage("Messages the receiver got (pagers, incident channel, stakeholder updates)")
        got = self.receiver.requests()
        if not got:
            raise DemoFailed("the receiver got nothing: no page was delivered")
        block(f"{'TIME':<12}  {'TO':<28}  {'KIND':<8}  {'PHASE':<10}  SUMMARY")
        for r in got:
            data = r.json if isinstance(r.json, dict) else {}
            when = hms(data.get("timestamp")) if data.get("timestamp") else "-"
            summary = textwrap.shorten(str(data.get("summary", r.raw[:80])), 60)
            block(f"{when:<12}  {r.path:<28}  {data.get('kind', '?'):<8}  "
                  f"{data.get('phase', ''):<10}  {summary}")
        pages = [r for r in got if (r.json or {}).get("kind") == "page"]
        if not pages:
            raise DemoFailed("no page was delivered")

    def stop(self) -> None:
        if self.operator:
            self.operator.stop()
        if self.receiver:
            self.receiver.stop()
        if self.cluster:
            self.cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadline", type=float, default=240,
                        help="seconds for the whole demo, cluster start included (default 240)")
    parser.add_argument("--demo", choices=("rb-001", "rb-003"), default="rb-001",
                        help="which runbook's story (default rb-001; rb-003: a webhook retry "
                             "storm on a real Redis queue, hack/demo_rb003.py)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="on failure, copy the operator's and the cluster's logs to "
                             "./demo-logs before cleaning up")
    args = parser.parse_args()

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGINT too: a shell starting us in the background leaves it ignored, and Python then
    # installs no KeyboardInterrupt handler of its own.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    root = Path(tempfile.mkdtemp(prefix="mission-control-demo-"))
    # Everything this process puts in temporary files (the kubernetes client writes the
    # cluster's certificates there) goes under root too, and goes with it.
    tempfile.tempdir = str(root)
    os.environ["TMPDIR"] = str(root)
    if args.demo == "rb-003":
        from demo_rb003 import Rb003Demo
        demo = Rb003Demo(root, Deadline(args.deadline))
    else:
        demo = Demo(root, Deadline(args.deadline))
    code = 0
    try:
        demo.run()
        stage(f"Demo complete in {time.monotonic() - STARTED:.0f} s")
    except KeyboardInterrupt:
        print(f"\n{_stamp()} interrupted: stopping everything", flush=True)
        code = 130
    except (DemoFailed, HarnessError) as exc:
        print(f"\n{RED}{_stamp()} DEMO FAILED: {exc}{RESET}", file=sys.stderr, flush=True)
        if demo.operator:
            print(f"last lines of the operator's log:\n{demo.operator.tail(25)}",
                  file=sys.stderr)
        if args.keep_logs:
            shutil.copytree(root, Path("demo-logs"), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("etcd*", "*.db", "wal", "snap"))
            print("logs copied to ./demo-logs", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not leave processes behind: finish stopping first.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            demo.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    # hack/demo_rb003.py builds on this module: it must get this copy, not a second one.
    sys.modules.setdefault("demo", sys.modules["__main__"])
    sys.exit(main())
