"""A node simulator: the kubelet's part of the pod lifecycle, for a control plane with no kubelet.

One fake Node, always Ready. Unscheduled pods are bound to it (no scheduler runs) and
reported Running and Ready, unless the pod carries `sim.missioncontrol.dev/ready: "false"`:
then it stays Running but NotReady and gets readiness-probe `Unhealthy` events at the probe's
period, aggregated the way the kubelet's event recorder does (one Event, count + lastTimestamp).
A pod with `sim.missioncontrol.dev/ready-after: "SECONDS"` is a slow start: NotReady with its
probe failing at the probe's period for that long after the simulator first runs it, then
Ready (the last failure comes before the Ready condition, as with a kubelet).
Pods owned by a Job finish Succeeded, or Failed with `sim.missioncontrol.dev/exit-code`.
Pods being deleted are removed at once, as the kubelet would after the containers stop.

Run: python -m harness.nodesim --kubeconfig PATH [--node NAME]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import signal
import threading
import time
import uuid
from dataclasses import dataclass

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NODE = "mission-control-sim"
READY = "sim.missioncontrol.dev/ready"
EXIT_CODE = "sim.missioncontrol.dev/exit-code"
PROBE_MESSAGE = "sim.missioncontrol.dev/probe-message"
READY_AFTER = "sim.missioncontrol.dev/ready-after"
DEFAULT_PROBE_MESSAGE = "HTTP probe failed with statuscode: 503"
log = logging.getLogger("nodesim")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Probe:
    """A failing readiness probe of one container, and its aggregated Event."""
    namespace: str
    pod: str
    uid: str
    container: str
    period: float
    message: str
    event_name: str | None = None
    count: int = 0
    first: datetime.datetime | None = None
    due: float = 0.0
    ready_at: float | None = None    # monotonic: a slow start turns Ready then


class Simulator:
    def __init__(self, api: client.CoreV1Api, node: str = NODE) -> None:
        self.api = api
        self.node = node
        self.probes: dict[tuple[str, str], Probe] = {}  # (pod uid, container) -> probe
        self.ready_at: dict[str, float] = {}   # pod uid -> when its slow start ends (monotonic)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.next_ip = 2

    # -- the node ---------------------------------------------------------------------------
    def ensure_node(self) -> None:
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node, "labels": {
                "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
                "type": "mission-control-sim"}},
        }
        try:
            self.api.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        moment = stamp(now())
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}
        self.api.patch_node_status(self.node, {"status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.node}],
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "simulated kubelet is posting ready status",
                "lastHeartbeatTime": moment, "lastTransitionTime": moment}],
            "nodeInfo": {"kubeletVersion": "v0.0.0-sim", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "sim://1",
                         "kernelVersion": "", "osImage": "simulated", "kubeProxyVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        }})

    # -- pods -------------------------------------------------------------------------------
    def reconcile(self, pod: client.V1Pod) -> None:
        meta, spec = pod.metadata, pod.spec
        if meta.deletion_timestamp is not None:
            self.forget(meta.uid)
            self.ready_at.pop(meta.uid, None)
            if spec.node_name in (None, self.node):
                self._delete_now(pod)
            return
        if spec.node_name is None:
            self._bind(pod)
            return  # the binding produces a MODIFIED event; the status comes then
        if spec.node_name != self.node:
            return
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            self.forget(meta.uid)
            return
        annotations = meta.annotations or {}
        if _owned_by_job(pod):
            self._finish(pod, int(annotations.get(EXIT_CODE, "0")))
            return
        ready = annotations.get(READY, "true").lower() != "false"
        ready_at = None
        if ready and annotations.get(READY_AFTER):
            # Remembered from the first sight on: later updates of the pod do not restart it.
            ready_at = self.ready_at.setdefault(
                meta.uid, time.monotonic() + float(annotations[READY_AFTER]))
            ready = time.monotonic() >= ready_at
        self._run(pod, ready)
        if ready:
            self.forget(meta.uid)
        else:
            self._track_probes(pod, annotations.get(PROBE_MESSAGE, DEFAULT_PROBE_MESSAGE),
                               ready_at)

    def forget(self, uid: str) -> None:
        with self.lock:
            for key in [k for k in self.probes if k[0] == uid]:
                del self.probes[key]

    def _bind(self, pod: client.V1Pod) -> None:
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=pod.metadata.name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=self.node))
        try:
            # _preload_content=False: the client cannot deserialize the Status this returns.
            self.api.create_namespaced_pod_binding(
                pod.metadata.name, pod.metadata.namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _delete_now(self, pod: client.V1Pod) -> None:
        try:
            self.api.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0,
                    preconditions=client.V1Preconditions(uid=pod.metadata.uid)))
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _ip(self) -> str:
        self.next_ip += 1
        return f"10.244.{self.next_ip // 250}.{self.next_ip % 250 + 2}"

    def _patch_status(self, pod: client.V1Pod, status: dict) -> None:
        try:
            self.api.patch_namespaced_pod_status(
                pod.metadata.name, pod.metadata.namespace, {"status": status})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _run(self, pod: client.V1Pod, ready: bool) -> None:
        current = pod.status
        conditions = {c.type: c.status for c in (current.conditions or [])}
        want = "True" if ready else "False"
        if current.phase == "Running" and conditions.get("Ready") == want:
            return
        moment = stamp(now())
        started = stamp(current.start_time) if current.start_time else moment
        reason = {} if ready else {"reason": "ContainersNotReady",
                                   "message": "containers with unready status"}

        def condition(kind: str, status: str, extra: dict | None = None) -> dict:
            return {"type": kind, "status": status, "lastTransitionTime": moment,
                    "lastProbeTime": None, **(extra or {})}

        self._patch_status(pod, {
            "phase": "Running",
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": current.pod_ip or self._ip(),
            "startTime": started,
            "conditions": [
                condition("PodReadyToStartContainers", "True"),
                condition("Initialized", "True"),
                condition("ContainersReady", want, reason),
                condition("Ready", want, reason),
            ],
            "containerStatuses": [{
                "name": c.name, "image": c.image, "imageID": f"sim://{c.image}",
                "containerID": f"sim://{pod.metadata.uid}/{c.name}",
                "ready": ready, "started": True, "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            } for c in pod.spec.containers],
        })

    def _finish(self, pod: client.V1Pod, exit_code: int) -> None:
        moment = stamp(now())
        succeeded = exit_code == 0
        self._patch_status(pod, {
            "phase": "Succeeded" if succeeded else "Failed",
            "hostIP": "127.0.0.1", "podIP": pod.status.pod_ip or self._ip(),
            "startTime": moment,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": moment},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": moment}],
            "containerStatuses": [{
                "name": c.name, "image": c.image, "imageID": f"sim://{c.image}",
                "containerID": f"sim://{pod.metadata.uid}/{c.name}",
                "ready": False, "started": False, "restartCount": 0,
                "state": {"terminated": {
                    "exitCode": exit_code, "reason": "Completed" if succeeded else "Error",
                    "startedAt": moment, "finishedAt": moment}},
            } for c in pod.spec.containers],
        })

    def _track_probes(self, pod: client.V1Pod, message: str, ready_at: float | None) -> None:
        with self.lock:
            for c in pod.spec.containers:
                key = (pod.metadata.uid, c.name)
                if key in self.probes:
                    continue
                probe = c.readiness_probe
                period = float((probe.period_seconds if probe else None) or 10)
                delay = float((probe.initial_delay_seconds if probe else None) or 0)
                self.probes[key] = Probe(
                    namespace=pod.metadata.namespace, pod=pod.metadata.name,
                    uid=pod.metadata.uid, container=c.name, period=period,
                    message=f"Readiness probe failed: {message}",
                    due=time.monotonic() + delay, ready_at=ready_at)

    # -- readiness-probe events, as the kubelet's recorder writes them ------------------------
    def probe_tick(self) -> None:
        moment = time.monotonic()
        with self.lock:
            started = {p.uid: p for p in self.probes.values()
                       if p.ready_at is not None and p.ready_at <= moment}
            due = [p for p in self.probes.values() if p.due <= moment and p.uid not in started]
            for probe in due:
                probe.due = moment + probe.period
        for probe in started.values():
            self._become_ready(probe)
        for probe in due:
            try:
                self._record_unhealthy(probe)
            except ApiException as exc:
                if exc.status == 404:
                    self.forget(probe.uid)
                elif exc.status != 409:
                    log.warning("event for %s/%s failed: %s", probe.namespace, probe.pod, exc)

    def _become_ready(self, probe: Probe) -> None:
        """A slow start is over: the probe passes, the pod turns Ready. Forgotten only once
        that is written, so a failed write is tried again at the next tick."""
        try:
            pod = self.api.read_namespaced_pod(probe.pod, probe.namespace)
        except ApiException as exc:
            if exc.status == 404:
                self.forget(probe.uid)
            else:
                log.warning("reading %s/%s failed: %s", probe.namespace, probe.pod, exc)
            return
        if pod.metadata.uid == probe.uid and pod.metadata.deletion_timestamp is None:
            self._run(pod, True)
        self.forget(probe.uid)

    def _record_unhealthy(self, probe: Probe) -> None:
        moment = now()
        probe.count += 1
        if probe.event_name is None:
            probe.first = moment
            probe.event_name = f"{probe.pod}.{uuid.uuid4().hex[:16]}"
            self.api.create_namespaced_event(probe.namespace, {
                "metadata": {"name": probe.event_name, "namespace": probe.namespace},
                "involvedObject": {
                    "kind": "Pod", "apiVersion": "v1", "namespace": probe.namespace,
                    "name": probe.pod, "uid": probe.uid,
                    "fieldPath": f"spec.containers{{{probe.container}}}"},
                "type": "Warning", "reason": "Unhealthy", "message": probe.message,
                "source": {"component": "kubelet", "host": self.node},
                "reportingComponent": "kubelet", "reportingInstance": self.node,
                "firstTimestamp": stamp(moment), "lastTimestamp": stamp(moment),
                "count": probe.count,
            })
        else:
            self.api.patch_namespaced_event(probe.event_name, probe.namespace, {
                "count": probe.count, "lastTimestamp": stamp(moment)})

    # -- loops ------------------------------------------------------------------------------
    def watch_pods(self) -> None:
        resource_version = None
        while not self.stopping.is_set():
            try:
                if resource_version is None:
                    listing = self.api.list_pod_for_all_namespaces()
                    for pod in listing.items:
                        self._safe_reconcile(pod)
                    resource_version = listing.metadata.resource_version
                stream = watch.Watch().stream(
                    self.api.list_pod_for_all_namespaces, resource_version=resource_version,
                    timeout_seconds=30, allow_watch_bookmarks=True)
                for event in stream:
                    if self.stopping.is_set():
                        return
                    pod = event["object"]
                    resource_version = pod.metadata.resource_version
                    if event["type"] == "DELETED":
                        self.forget(pod.metadata.uid)
                        self.ready_at.pop(pod.metadata.uid, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._safe_reconcile(pod)
            except ApiException as exc:
                if exc.status == 410:  # the resource version is too old: list again
                    resource_version = None
                    continue
                log.warning("pod watch failed: %s", exc)
                self.stopping.wait(1)
            except Exception as exc:  # noqa: BLE001 - keep simulating whatever went wrong
                log.warning("pod watch broke: %s", exc)
                resource_version = None
                self.stopping.wait(1)

    def _safe_reconcile(self, pod: client.V1Pod) -> None:
        try:
            self.reconcile(pod)
        except Exception:  # noqa: BLE001
            log.exception("reconciling %s/%s", pod.metadata.namespace, pod.metadata.name)

    def probe_loop(self) -> None:
        while not self.stopping.wait(0.2):
            try:
                self.probe_tick()
            except Exception:  # noqa: BLE001
                log.exception("probe tick")


def _owned_by_job(pod: client.V1Pod) -> bool:
    return any(ref.kind == "Job" for ref in (pod.metadata.owner_references or []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default=NODE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    sim = Simulator(client.CoreV1Api(), args.node)
    signal.signal(signal.SIGTERM, lambda *_: sim.stopping.set())
    sim.ensure_node()
    log.info("node %s is Ready", args.node)
    threading.Thread(target=sim.probe_loop, daemon=True).start()
    threading.Thread(target=sim.watch_pods, daemon=True).start()
    try:
        sim.stopping.wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
