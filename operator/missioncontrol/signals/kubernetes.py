"""Readiness signals from the cluster: Deployments, their ReplicaSets, pods and the kubelet's
readiness-probe events. Read from the operator's watch cache (watchcache.py) when it has one:
a guard pass then makes no API request at all; without one (tests, tools), one list call per
kind per namespace per pass."""

from __future__ import annotations

from dataclasses import dataclass

from .. import tenancy, timeutil
from ..detect.release import DeploymentReading
from ..detect.signals import PodReading, ProbeEvents, ReleaseReading
from ..kube import Kube
from ..model import Policy
from ..watchcache import WatchCache

REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Target:
    """A guarded Deployment as read this tick."""
    body: dict
    reading: DeploymentReading
    release: ReleaseReading | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.reading.namespace, self.reading.name)


async def target_namespaces(kube: Kube, policy: Policy, *,
                            cache: WatchCache | None = None) -> list[str]:
    """Every namespace the policy selects, protected ones included (read_targets drops
    those; the guard reports them)."""
    if policy.namespace_selector is None:
        return [policy.namespace]
    if cache is not None and cache.has("namespaces"):
        return sorted(ns["metadata"]["name"] for ns in cache.store("namespaces").every()
                      if policy.namespace_selector.matches(ns["metadata"].get("labels")))
    listing = await kube.json(kube.core.list_namespace,
                              label_selector=policy.namespace_selector.to_query())
    return sorted(ns["metadata"]["name"] for ns in listing["items"])


async def read_targets(kube: Kube, policy: Policy, namespaces: list[str] | None = None, *,
                       cache: WatchCache | None = None) -> list[Target]:
    """The policy's Deployments in `namespaces` (default: all it selects), never in a
    protected namespace, whoever passed the list."""
    if namespaces is None:
        namespaces = await target_namespaces(kube, policy, cache=cache)
    if cache is not None:
        return cached_targets(cache, policy, namespaces)
    targets: list[Target] = []
    for namespace in tenancy.split(namespaces)[0]:
        deployments = (await kube.json(kube.apps.list_namespaced_deployment, namespace,
                                       label_selector=policy.selector.to_query()))["items"]
        if not deployments:
            continue
        replica_sets = (await kube.json(kube.apps.list_namespaced_replica_set, namespace))["items"]
        pods = (await kube.json(kube.core.list_namespaced_pod, namespace))["items"]
        events = (await kube.json(kube.core.list_namespaced_event, namespace,
                                  field_selector="reason=Unhealthy"))["items"]
        targets.extend(targets_in(deployments, replica_sets, pods, events))
    return targets


def cached_targets(cache: WatchCache, policy: Policy, namespaces: list[str]) -> list[Target]:
    """read_targets from the watch cache: the same join, over memory."""
    deployments, replica_sets = cache.store("deployments"), cache.store("replicasets")
    pods, events = cache.store("pods"), cache.store("events")
    targets: list[Target] = []
    for namespace in tenancy.split(namespaces)[0]:
        selected = [d for d in deployments.items(namespace)
                    if policy.selector.matches(d["metadata"].get("labels"))]
        if selected:
            targets.extend(targets_in(selected, replica_sets.items(namespace),
                                      pods.items(namespace), events.items(namespace)))
    return targets


def targets_in(deployments: list[dict], replica_sets: list[dict], pods: list[dict],
               events: list[dict]) -> list[Target]:
    """Join one namespace's listings into per-Deployment readings (pure)."""
    by_owner: dict[str, list[dict]] = {}
    for rs in replica_sets:
        for ref in rs["metadata"].get("ownerReferences") or []:
            by_owner.setdefault(ref["uid"], []).append(rs)
    pods_by_owner: dict[str, list[dict]] = {}
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for ref in pod["metadata"].get("ownerReferences") or []:
            pods_by_owner.setdefault(ref["uid"], []).append(pod)
    probe_events: dict[str, list[ProbeEvents]] = {}
    for event in events:
        obj = event.get("involvedObject") or {}
        if obj.get("kind") == "Pod" and (event.get("message") or "").startswith("Readiness probe"):
            probe_events.setdefault(obj.get("uid") or obj.get("name"), []).append(ProbeEvents(
                pod=obj.get("name", ""), key=event["metadata"]["name"],
                count=int(event.get("count") or 1), message=event.get("message", "")))
    out = []
    for dep in deployments:
        revision = int((dep["metadata"].get("annotations") or {}).get(REVISION, 0) or 0)
        current = next((rs for rs in by_owner.get(dep["metadata"]["uid"], [])
                        if int((rs["metadata"].get("annotations") or {}).get(REVISION, -1))
                        == revision), None)
        reading = DeploymentReading(
            namespace=dep["metadata"]["namespace"], name=dep["metadata"]["name"],
            revision=revision, replica_set=current["metadata"]["name"] if current else None,
            complete=rolled_out(dep), replicas=int(dep["spec"].get("replicas", 1)),
            ready_replicas=int((dep.get("status") or {}).get("readyReplicas") or 0),
            available=int(((current or {}).get("status") or {}).get("availableReplicas") or 0),
            paused=bool(dep["spec"].get("paused")))
        release = None
        if current is not None:
            rs_pods = pods_by_owner.get(current["metadata"]["uid"], [])
            release = ReleaseReading(
                replica_set=current["metadata"]["name"],
                pods=tuple(pod_reading(p) for p in rs_pods),
                events=tuple(e for p in rs_pods
                             for e in probe_events.get(p["metadata"]["uid"], [])
                             + probe_events.get(p["metadata"]["name"], [])))
        out.append(Target(dep, reading, release))
    return out


def rolled_out(dep: dict) -> bool:
    """Fully rolled out and available: what `kubectl rollout status` waits for, and more."""
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    generation = dep["metadata"].get("generation", 0)
    return (status.get("observedGeneration", 0) >= generation
            and int(status.get("updatedReplicas") or 0) == want
            and int(status.get("replicas") or 0) == want
            and int(status.get("readyReplicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want)


def pod_reading(pod: dict) -> PodReading:
    conditions = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready", {})
    created = timeutil.parse(pod["metadata"].get("creationTimestamp")) or 0.0
    since = timeutil.parse(ready.get("lastTransitionTime")) or created
    return PodReading(name=pod["metadata"]["name"], ready=ready.get("status") == "True",
                      not_ready_since=max(created, since), created=created)
