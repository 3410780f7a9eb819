"""The watch cache the guard reads (watchcache.py): compact copies that join into the same
readings as the full objects, a store that follows watch events, no reading of a scope whose
watch is broken, and a guard pass that makes no list call when the cache holds the cluster."""

from __future__ import annotations

import asyncio
import copy
import json
import time

import pytest
from test_guard import FakeKube, broken_release, policy_body
from test_signals import listings

from missioncontrol import guard, watchcache
from missioncontrol.kube import Unavailable
from missioncontrol.signals.kubernetes import targets_in


def compacted(deployments, replica_sets, pods, events):
    def keep(compact, bodies):
        return [c for c in (compact(copy.deepcopy(b)) for b in bodies) if c is not None]

    return (keep(watchcache.compact_deployment, deployments),
            keep(watchcache.compact_replica_set, replica_sets),
            keep(watchcache.compact_pod, pods), keep(watchcache.compact_event, events))


def test_compact_copies_join_into_the_same_readings() -> None:
    full = targets_in(*listings())
    small = targets_in(*compacted(*listings()))
    assert [(t.reading, t.release) for t in small] == [(t.reading, t.release) for t in full]


def test_compact_copies_keep_only_what_the_guard_reads() -> None:
    deployments, _, pods, events = listings()
    deployments[0]["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-"
                                              "configuration"] = "x" * 10_000
    kept = watchcache.compact_deployment(deployments[0])
    assert "template" not in kept["spec"] and len(str(kept)) < 1000
    assert [c["type"] for c in watchcache.compact_pod(pods[0])["status"]["conditions"]] \
        == ["Ready"]
    # Liveness events and events of other kinds are not kept at all.
    assert [watchcache.compact_event(e) is not None for e in events] == [
        True, True, False, True, False, True]
    orphan = {"metadata": {"name": "p", "namespace": "shop", "uid": "p"}}
    assert watchcache.compact_pod(orphan) is None


def test_the_store_follows_watch_events() -> None:
    store = watchcache.Store()
    store.replace("shop", [{"metadata": {"name": "a", "namespace": "shop", "v": 1}}])
    store.apply("ADDED", {"metadata": {"name": "b", "namespace": "shop"}})
    store.apply("MODIFIED", {"metadata": {"name": "a", "namespace": "shop", "v": 2}})
    store.apply("DELETED", {"metadata": {"name": "b", "namespace": "shop"}})
    assert store.items("shop") == [{"metadata": {"name": "a", "namespace": "shop", "v": 2}}]
    store.replace("shop", [])   # a relist replaces the scope whole
    assert store.items("shop") == [] and store.get("shop", "a") is None


def test_a_scope_whose_watch_is_not_live_is_not_read() -> None:
    cache = watchcache.WatchCache(FakeKube({}), ("shop",))
    with pytest.raises(watchcache.NotLive, match="watch of pods is not live"):
        cache.store("pods")
    assert not cache.synced and not cache.has("namespaces")   # namespaced: never watched


def filled_cache(objects: dict[str, list[dict]]) -> watchcache.WatchCache:
    """A cache as its watches would have filled it (no threads: the stores set by hand)."""
    for pod in objects.get("pods", []):   # as the API server has them (the kind kept)
        for ref in pod["metadata"].get("ownerReferences") or []:
            ref.setdefault("kind", "ReplicaSet")
    cache = watchcache.WatchCache(FakeKube({}), ("shop",))
    compactors = {r.name: r.compact for r in cache.resources}
    named = {"Runbook": "runbooks"}
    for resource in cache.stores:
        bodies = objects.get(resource) or objects.get(
            next((k for k, v in named.items() if v == resource), ""), [])
        items = [compactors[resource](copy.deepcopy(b)) for b in bodies]
        for body in items:
            if body is not None:
                body["metadata"].setdefault("namespace", "shop")
        cache.stores[resource].replace("shop", [b for b in items if b is not None])
        cache.stores[resource].live["shop"] = True
    return cache


async def test_a_guard_pass_reads_the_cache_and_lists_nothing() -> None:
    objects = broken_release()
    kube = FakeKube(objects)

    def refused(*_: object, **__: object) -> None:
        raise AssertionError("a guard pass with a watch cache must not list")

    for api, name in ((kube.apps, "list_namespaced_deployment"),
                      (kube.apps, "list_namespaced_replica_set"),
                      (kube.core, "list_namespaced_pod"), (kube.core, "list_namespaced_event")):
        setattr(api, name, refused)
    got = []
    original_get = kube.get

    async def get(kind: str, namespace: str, name: str) -> dict | None:
        got.append(kind)
        return await original_get(kind, namespace, name)

    kube.get = get
    ctx = guard.Context(kube, None, time.time, cache=filled_cache(objects))
    status = {}
    for _ in range(20):   # readiness every second: the third failure opens the incident
        result = await guard.tick(ctx, {**policy_body(), "status": status
                                        or policy_body()["status"]})
        status = result.status
        if result.opened:
            break
        await asyncio.sleep(result.wait)
    assert result.ready.ok, result.ready
    assert result.opened == ["rb-001-checkout-r2"]
    # The Runbook came from the cache: the only reads are of the incident being opened.
    assert "Runbook" not in got, got


async def test_a_broken_watch_skips_the_pass() -> None:
    objects = broken_release()
    cache = filled_cache(objects)
    cache.stores["pods"].live["shop"] = False
    ctx = guard.Context(FakeKube(objects), None, time.time, cache=cache)
    with pytest.raises(Unavailable):
        await guard.tick(ctx, policy_body())


class _Response:
    def __init__(self, body: dict) -> None:
        self.status, self.reason = 200, "OK"
        self.data = json.dumps(body).encode()


def test_a_list_is_read_in_pages_and_kept_compact(monkeypatch) -> None:
    monkeypatch.setattr(watchcache, "LIST_PAGE", 2)
    pods = [{"metadata": {"name": f"p{i}", "namespace": "shop", "uid": f"u{i}",
                          "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": "r"}],
                          "annotations": {"big": "x" * 1000}},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
            for i in range(5)]
    asked = []

    def list_pods(namespace, **kwargs):
        asked.append((kwargs["limit"], kwargs.get("_continue")))
        start = int(kwargs.get("_continue") or 0)
        page = pods[start:start + kwargs["limit"]]
        more = start + kwargs["limit"] < len(pods)
        return _Response({"items": page, "metadata": {
            "resourceVersion": "42", **({"continue": str(start + 2)} if more else {})}})

    pods_resource = next(r for r in watchcache.RESOURCES if r.name == "pods")
    store = watchcache.Store()
    feed = watchcache._Feed(pods_resource, store, "shop", list_pods, ("shop",))
    assert feed.list() == "42"
    assert asked == [(2, None), (2, "2"), (2, "4")]
    assert sorted(p["metadata"]["name"] for p in store.items("shop")) == [
        "p0", "p1", "p2", "p3", "p4"]
    assert all("annotations" not in p["metadata"] for p in store.items("shop"))
    assert store.live["shop"] is True
