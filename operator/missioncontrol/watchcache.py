"""What the guard reads of the cluster, kept in memory from watches (informer-style).

One list, then one watch continued from the last resourceVersion, per resource per scope (the
cluster, or each watched namespace): a watch that ends on its timeout is resumed where it
stopped, and the resource is listed again only when the API server says the version is gone
(410) or a watch cannot be resumed. Each object is kept compact (`compact_*`: only the fields
the guard reads), so memory grows with the fleet by a few hundred bytes per object.

Safety: a scope whose watch is broken is not live; reading it raises `Unavailable`, the same
answer a failed list gave before, so the guard skips the pass instead of judging stale data
(no data is never health)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from . import GROUP, VERSION
from .kube import ApiException, Kube, Unavailable

log = logging.getLogger("missioncontrol.watch")

WATCH_SECONDS = 300          # the API server ends a watch after this; resumed at once
REVISION = "deployment.kubernetes.io/revision"
LAST_HEALTHY = "missioncontrol.dev/last-healthy-revision"
# A broken watch is tried again soon and often: a refused connection costs nothing, and the
# guard waits on the cache, so the cap is how late a returning API server is noticed.
RETRY_FIRST, RETRY_CAP = 0.25, 1.0
LIST_PAGE = 500              # objects per list request


# -- compact copies: only what signals/kubernetes.targets_in and the guard read -----------------
def _meta(body: dict, *, annotations: tuple[str, ...] = (), labels: bool = False) -> dict:
    meta = body.get("metadata") or {}
    out = {k: meta[k] for k in ("name", "namespace", "uid", "generation", "creationTimestamp",
                                "deletionTimestamp") if meta.get(k) is not None}
    kept = {k: v for k, v in (meta.get("annotations") or {}).items() if k in annotations}
    if kept:
        out["annotations"] = kept
    if labels and meta.get("labels"):
        out["labels"] = dict(meta["labels"])
    refs = [{"uid": r.get("uid"), "kind": r.get("kind"), "name": r.get("name")}
            for r in meta.get("ownerReferences") or [] if r.get("controller", True)]
    if refs:
        out["ownerReferences"] = refs
    return out


def compact_deployment(body: dict) -> dict:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return {"metadata": _meta(body, annotations=(REVISION, LAST_HEALTHY), labels=True),
            "spec": {k: spec[k] for k in ("replicas", "paused") if k in spec},
            "status": {k: status[k] for k in ("observedGeneration", "updatedReplicas",
                                              "replicas", "readyReplicas",
                                              "availableReplicas") if k in status}}


def compact_replica_set(body: dict) -> dict:
    status = body.get("status") or {}
    return {"metadata": _meta(body, annotations=(REVISION,)),
            "status": {"availableReplicas": status.get("availableReplicas") or 0}}


def compact_pod(body: dict) -> dict | None:
    meta = body.get("metadata") or {}
    if not any(r.get("kind") == "ReplicaSet" for r in meta.get("ownerReferences") or []):
        return None   # only pods of ReplicaSets are a Deployment's
    ready = [{k: c.get(k) for k in ("type", "status", "lastTransitionTime")}
             for c in (body.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"]
    return {"metadata": _meta(body), "status": {"conditions": ready}}


def compact_event(body: dict) -> dict | None:
    obj = body.get("involvedObject") or {}
    message = body.get("message") or ""
    if obj.get("kind") != "Pod" or not message.startswith("Readiness probe"):
        return None
    return {"metadata": {"name": (body.get("metadata") or {}).get("name"),
                         "namespace": (body.get("metadata") or {}).get("namespace")},
            "involvedObject": {"kind": "Pod", "name": obj.get("name"), "uid": obj.get("uid")},
            "count": body.get("count") or 1, "message": message[:500]}


def compact_namespace(body: dict) -> dict:
    return {"metadata": _meta(body, labels=True)}


def compact_incident(body: dict) -> dict:
    """What opening an incident reads of the others of its target: its labels and phase, and
    its rollback steps (the policy's limits count them: actions/rollback.limit_reason)."""
    status = body.get("status") or {}
    kept: dict = {k: status[k] for k in ("phase",) if k in status}
    rollbacks = [{k: s[k] for k in ("id", "action", "state", "finishedAt", "changes") if k in s}
                 for s in status.get("steps") or [] if s.get("action") == "rollback"]
    if rollbacks:
        kept["steps"] = rollbacks
    return {"metadata": _meta(body, labels=True), "status": kept}


def whole(body: dict) -> dict:
    return body


@dataclass(frozen=True)
class Resource:
    """One kind the cache keeps: how to list it (cluster-wide and in a namespace), with which
    field selector, and what of each object to keep (None: not kept)."""
    name: str
    cluster: Callable[[Kube], tuple[Callable[..., Any], tuple]]
    namespaced: Callable[[Kube, str], tuple[Callable[..., Any], tuple]] | None
    compact: Callable[[dict], dict | None]
    field_selector: str | None = None


def _custom(plural: str) -> tuple[Callable, Callable]:
    return (lambda k: (k.custom.list_cluster_custom_object, (GROUP, VERSION, plural)),
            lambda k, ns: (k.custom.list_namespaced_custom_object, (GROUP, VERSION, ns, plural)))


RESOURCES = (
    Resource("deployments", lambda k: (k.apps.list_deployment_for_all_namespaces, ()),
             lambda k, ns: (k.apps.list_namespaced_deployment, (ns,)), compact_deployment),
    Resource("replicasets", lambda k: (k.apps.list_replica_set_for_all_namespaces, ()),
             lambda k, ns: (k.apps.list_namespaced_replica_set, (ns,)), compact_replica_set),
    Resource("pods", lambda k: (k.core.list_pod_for_all_namespaces, ()),
             lambda k, ns: (k.core.list_namespaced_pod, (ns,)), compact_pod),
    Resource("events", lambda k: (k.core.list_event_for_all_namespaces, ()),
             lambda k, ns: (k.core.list_namespaced_event, (ns,)), compact_event,
             field_selector="reason=Unhealthy"),
    Resource("incidents", *_custom("incidents"), compact_incident),
    Resource("runbooks", *_custom("runbooks"), whole),
    Resource("serviceownerships", *_custom("serviceownerships"), whole),
)
# Namespaces are cluster-scoped: watched only by an operator that watches the cluster (the
# namespaced install may not list them; its policies cannot select namespaces anyway).
NAMESPACES = Resource("namespaces", lambda k: (k.core.list_namespace, ()), None,
                      compact_namespace)


class NotLive(Unavailable):
    """A watch of the cache is broken: the guard's pass waits for it (it is tried again every
    RETRY_CAP seconds at most), not for a backoff of its own."""


class Store:
    """The objects of one resource, by namespace then name; each scope live or not."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_namespace: dict[str, dict[str, dict]] = {}
        self.live: dict[str | None, bool] = {}

    def replace(self, scope: str | None, items: Iterable[dict]) -> None:
        with self.lock:
            if scope is None:
                self.by_namespace = {}
            else:
                self.by_namespace.pop(scope, None)
            for body in items:
                self._put(body)

    def apply(self, kind: str, body: dict) -> None:
        with self.lock:
            if kind == "DELETED":
                meta = body.get("metadata") or {}
                bucket = self.by_namespace.get(meta.get("namespace") or "")
                if bucket is not None:
                    bucket.pop(meta.get("name"), None)
            else:
                self._put(body)

    def _put(self, body: dict) -> None:
        meta = body.get("metadata") or {}
        self.by_namespace.setdefault(meta.get("namespace") or "", {})[meta.get("name")] = body

    def drop(self, namespace: str, name: str) -> None:
        with self.lock:
            (self.by_namespace.get(namespace) or {}).pop(name, None)

    def items(self, namespace: str) -> list[dict]:
        with self.lock:
            return list((self.by_namespace.get(namespace) or {}).values())

    def every(self) -> list[dict]:
        with self.lock:
            return [b for bucket in self.by_namespace.values() for b in bucket.values()]

    def get(self, namespace: str, name: str) -> dict | None:
        with self.lock:
            return (self.by_namespace.get(namespace) or {}).get(name)


class WatchCache:
    """The stores of every resource the guard reads, fed by one thread per resource and scope
    (the blocking client's watch never touches the event loop)."""

    def __init__(self, kube: Kube, namespaces: tuple[str, ...] = ()) -> None:
        self.scopes: tuple[str | None, ...] = tuple(namespaces) or (None,)
        self.resources = RESOURCES + (() if namespaces else (NAMESPACES,))
        # Connections of its own, one per watch: a watch holds its connection for minutes,
        # and in the operator's pool it would leave the guard's and the engine's calls none.
        watches = sum(len(self._scopes(r)) for r in self.resources)
        self.kube = Kube(_own_client(kube.api, pool=watches), workers=1) \
            if isinstance(getattr(kube, "api", None), client.ApiClient) else kube
        self.stores = {r.name: Store() for r in self.resources}
        self._stop = threading.Event()
        self._ready = threading.Event()   # every store listed once
        self._threads: list[threading.Thread] = []

    # -- reading ---------------------------------------------------------------------------------
    def store(self, resource: str) -> Store:
        """The store, if every scope of it is live; else Unavailable (the pass waits)."""
        store = self.stores[resource]
        spec = next(r for r in self.resources if r.name == resource)
        if not all(store.live.get(scope) for scope in self._scopes(spec)):
            raise NotLive(f"the watch of {resource} is not live", answered=False)
        return store

    def has(self, resource: str) -> bool:
        return resource in self.stores

    @property
    def synced(self) -> bool:
        return all(all(s.live.get(scope) for scope in self._scopes(r))
                   for r, s in zip(self.resources, self.stores.values(), strict=True))

    def _scopes(self, resource: Resource) -> tuple[str | None, ...]:
        return (None,) if resource.namespaced is None else self.scopes

    async def wait_synced(self, within: float) -> bool:
        """Wait (up to `within` seconds) until every store has been listed once."""
        await asyncio.to_thread(self._ready.wait, within)
        return self.synced

    # -- keeping ---------------------------------------------------------------------------------
    def start(self) -> WatchCache:
        for resource in self.resources:
            for scope in self._scopes(resource):
                thread = threading.Thread(target=self._keep, args=(resource, scope),
                                          daemon=True,
                                          name=f"watch-{resource.name}-{scope or 'cluster'}")
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        # Daemon threads blocked in a watch of at most WATCH_SECONDS: not joined.
        self._stop.set()

    def _lister(self, resource: Resource, scope: str | None) -> tuple[Callable[..., Any], tuple]:
        if scope is None:
            return resource.cluster(self.kube)
        return resource.namespaced(self.kube, scope)

    def _keep(self, resource: Resource, scope: str | None) -> None:
        feed = _Feed(resource, self.stores[resource.name], scope, *self._lister(resource, scope))
        version: str | None = None
        delay = RETRY_FIRST
        while not self._stop.is_set():
            try:
                if version is None:
                    version = feed.list()
                    if self.synced:
                        self._ready.set()
                version = feed.watch(version, self._stop)
                delay = RETRY_FIRST
            except Exception as exc:  # noqa: BLE001 - keep the cache alive; try again
                feed.store.live[scope] = False
                reason = exc.reason if isinstance(exc, ApiException) else exc
                log.warning("watching %s%s failed: %s; again in %.1f s", resource.name,
                            f" in {scope}" if scope else "", str(reason)[:200], delay)
                self._stop.wait(delay)
                delay = min(RETRY_CAP, delay * 2)


@dataclass(frozen=True)
class _Feed:
    """One resource in one scope: its list and its watch, into its store."""
    resource: Resource
    store: Store
    scope: str | None
    fn: Callable[..., Any]
    args: tuple

    @property
    def extra(self) -> dict:
        selector = self.resource.field_selector
        return {"field_selector": selector} if selector else {}

    def list(self) -> str:
        """The whole scope, LIST_PAGE objects a request (limit/continue), each page compacted
        before the next is read: memory follows the compact copies, not the largest list."""
        kept: list[dict] = []
        token: str | None = None
        while True:
            paging = {"limit": LIST_PAGE, **({"_continue": token} if token else {})}
            response = _checked(self.fn(*self.args, _preload_content=False,
                                        _request_timeout=(5.0, 60.0), **paging, **self.extra))
            listing = json.loads(response.data)
            kept += [c for c in (self.resource.compact(b) for b in listing.get("items") or [])
                     if c is not None]
            token = (listing.get("metadata") or {}).get("continue")
            del listing["items"], response
            if not token:
                break
        self.store.replace(self.scope, kept)
        self.store.live[self.scope] = True
        # The version of the last page is the list's (the API server keeps one snapshot
        # across the pages of a list); an expired token is a 410: listed again from the top.
        return listing["metadata"]["resourceVersion"]

    def watch(self, version: str, stop: threading.Event) -> str | None:
        """One watch from `version`; the version to resume from (None: list again)."""
        response = _checked(self.fn(*self.args, watch=True, resource_version=version,
                                    allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS,
                                    _preload_content=False,
                                    _request_timeout=(5.0, WATCH_SECONDS + 30), **self.extra))
        self.store.live[self.scope] = True   # the watch is taken: nothing is missed from here
        try:
            for line in iter_resp_lines(response):
                if stop.is_set():
                    return version
                if not line:
                    continue
                event = json.loads(line)
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if body.get("code") != 410:
                        log.warning("watch of %s: %s", self.resource.name, body.get("message"))
                    return None   # 410 Gone (expired): list again, as informers do
                version = (body.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                kept = self.resource.compact(body)
                if kept is None:   # no longer one we keep (or never was)
                    meta = body.get("metadata") or {}
                    self.store.drop(meta.get("namespace") or "", meta.get("name"))
                else:
                    self.store.apply(kind, kept)
        finally:
            response.release_conn()
        return version


def _own_client(api: client.ApiClient, *, pool: int) -> client.ApiClient:
    configuration = copy.copy(api.configuration)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def _checked(response: Any) -> Any:
    """A raw response (`_preload_content=False` skips the client's own status check)."""
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=response.reason)
    return response
