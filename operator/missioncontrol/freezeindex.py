"""The active freezes every replica answers the freeze webhook from: a list-and-watch cache of
Incidents, kept by each replica whatever its part (leader or standby), with a live read of the
cluster to confirm a refusal.

Why not kopf's index: kopf stops feeding its indexes in a replica that peering pauses, and a
paused replica still answers admission calls (behind one Service any call may land there). This
cache belongs to no kopf handler, so a standby's answers are as current as the leader's."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import watch

from . import GROUP, VERSION
from .kube import ApiException, Kube

log = logging.getLogger("missioncontrol.freeze")

Entries = Mapping[str, list[dict]]   # "Deployment/ns/name" or "Namespace/ns" -> freezes

LIVE_READ_TIMEOUT = 2.0   # the API server gives the whole webhook call 5 s
WATCH_SECONDS = 50


def entries(body: Mapping[str, Any]) -> dict[str, dict]:
    """The objects an Incident freezes, each with what the webhook needs to judge a change."""
    status = body.get("status") or {}
    freeze = status.get("freeze") or {}
    if not freeze.get("active"):
        return {}
    entry = {"incident": body["metadata"]["name"], "namespace": body["metadata"]["namespace"],
             "allowed": freeze.get("allowedTemplateHash"),
             "toRevision": (status.get("rollback") or {}).get("toRevision")}
    return {obj: entry for obj in freeze.get("objects") or []}


def by_object(bodies: Iterable[Mapping[str, Any]]) -> dict[str, list[dict]]:
    return _merge(entries(body) for body in bodies)


def _merge(each: Iterable[dict[str, dict]]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for frozen in each:
        for obj, entry in frozen.items():
            found.setdefault(obj, []).append(entry)
    return found


class FreezeIndex:
    """Incidents by namespace/name, from one list-and-watch per watched namespace (or one for
    the cluster), each in its own thread: the blocking client's watch never touches the
    event loop, and admission answers read a snapshot without waiting."""

    def __init__(self, kube: Kube, namespaces: tuple[str, ...] = ()) -> None:
        self.kube = kube
        self.namespaces = namespaces
        # Only what the webhook needs of each incident: an Incident's status can be large.
        self._incidents: dict[tuple[str, str], dict[str, dict]] = {}
        self._lock = threading.Lock()
        self._synced: set[str | None] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()   # every scope listed once

    @property
    def synced(self) -> bool:
        scopes = set(self.namespaces) if self.namespaces else {None}
        return scopes <= self._synced

    def snapshot(self) -> dict[str, list[dict]]:
        with self._lock:
            return _merge(self._incidents.values())

    async def live(self, namespace: str) -> dict[str, list[dict]] | None:
        """The active freezes read from the cluster now (None if the read fails): the truth a
        refusal is checked against, since the watch may lag behind a freeze just set."""
        try:
            listing = await self.kube.call(
                self.kube.custom.list_namespaced_custom_object, GROUP, VERSION, namespace,
                "incidents", _request_timeout=LIVE_READ_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the cache's answer stands
            log.warning("freeze: live read of incidents in %s failed (%s); judging from the "
                        "cache", namespace, exc)
            return None
        return by_object(listing.get("items") or [])

    def start(self) -> FreezeIndex:
        for scope in self.namespaces or (None,):
            thread = threading.Thread(target=self._keep, args=(scope,), daemon=True,
                                      name=f"freeze-index-{scope or 'cluster'}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        # The threads are daemons blocked in a watch of at most WATCH_SECONDS: not joined.
        self._stop.set()

    async def wait_synced(self, within: float) -> bool:
        await asyncio.to_thread(self._ready.wait, within)
        return self.synced

    # -- the watch thread ---------------------------------------------------------------------
    def _lister(self, scope: str | None) -> tuple[Callable[..., Any], tuple]:
        custom = self.kube.custom
        if scope is None:
            return custom.list_cluster_custom_object, (GROUP, VERSION, "incidents")
        return custom.list_namespaced_custom_object, (GROUP, VERSION, scope, "incidents")

    def _keep(self, scope: str | None) -> None:
        fn, args = self._lister(scope)
        while not self._stop.is_set():
            try:
                listing = fn(*args, _request_timeout=30)
                self._replace(scope, listing.get("items") or [])
                self._synced.add(scope)
                if self.synced:
                    self._ready.set()
                version = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(fn, *args, resource_version=version,
                                              timeout_seconds=WATCH_SECONDS,
                                              _request_timeout=WATCH_SECONDS + 10)
                for event in stream:
                    if self._stop.is_set():
                        return
                    if event["type"] == "ERROR":
                        break   # 410 Gone and the like: list again
                    self._put(event["object"], deleted=event["type"] == "DELETED")
            except ApiException as exc:
                log.warning("freeze: watching incidents failed: API %s %s", exc.status,
                            exc.reason)
                self._stop.wait(2)
            except Exception as exc:  # noqa: BLE001 - keep the cache alive; list again
                log.warning("freeze: watching incidents failed: %s", exc)
                self._stop.wait(2)

    def _replace(self, scope: str | None, items: list[dict]) -> None:
        with self._lock:
            for key in [k for k in self._incidents if scope is None or k[0] == scope]:
                del self._incidents[key]
            for body in items:
                self._incidents[_key(body)] = entries(body)

    def _put(self, body: dict, *, deleted: bool) -> None:
        with self._lock:
            if deleted:
                self._incidents.pop(_key(body), None)
            else:
                self._incidents[_key(body)] = entries(body)


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]
