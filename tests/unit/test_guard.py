"""One policy tick's orchestration (guard.tick) over a fake cluster and a Prometheus that
accepts connections and never answers: readiness keeps its pace and fires, the PromQL
condition waits for its own query and then reads Unknown with the reason."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from types import SimpleNamespace

import yaml
from aiohttp import web

from harness.silent import SilentServer
from missioncontrol import guard, timeutil
from missioncontrol.signals.kubernetes import REVISION
from missioncontrol.signals.prometheus import Prometheus

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
LONG_AGO = "2024-05-01T10:00:00Z"


class FakeKube:
    """The calls guard.tick makes, answered from one namespace's objects in memory."""

    def __init__(self, objects: dict[str, list[dict]]) -> None:
        self.objects = objects
        self.created: list[dict] = []
        listing = lambda kind: lambda *_, **__: {"items": copy.deepcopy(objects[kind])}  # noqa: E731
        self.apps = SimpleNamespace(list_namespaced_deployment=listing("deployments"),
                                    list_namespaced_replica_set=listing("replicasets"),
                                    patch_namespaced_deployment=lambda *_: None,
                                    read_namespaced_replica_set=lambda name, _: {
                                        "metadata": {"name": name},
                                        "spec": {"template": {"spec": {}}}})
        self.core = SimpleNamespace(list_namespaced_pod=listing("pods"),
                                    list_namespaced_event=listing("events"),
                                    read_namespace=lambda name: {"metadata": {"name": name}})

    async def json(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    async def call(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        found = [o for o in self.objects.get(kind, []) + self.created
                 if o["kind"] == kind and o["metadata"]["name"] == name]
        return copy.deepcopy(found[0]) if found else None

    async def list(self, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict]:
        return [o for o in self.created if o["kind"] == kind]

    async def create(self, kind: str, namespace: str, body: dict) -> dict:
        self.created.append(copy.deepcopy(body))
        return body

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        for body in self.created:
            if body["kind"] == kind and body["metadata"]["name"] == name:
                body["status"] = status
        return {"status": status}


def broken_release() -> dict[str, list[dict]]:
    """checkout at revision 2, whose one pod has been not Ready for long; revision 1 had
    been healthy (recorded in the policy status by the caller)."""
    (path,) = RUNBOOKS.glob("rb-001-*.yaml")
    runbook = yaml.safe_load(path.read_text())
    runbook["metadata"]["namespace"] = "shop"
    owner = [{"kind": "Deployment", "uid": "dep"}]
    return {
        "Runbook": [runbook],
        "deployments": [{
            "metadata": {"name": "checkout", "namespace": "shop", "uid": "dep", "generation": 2,
                         "annotations": {REVISION: "2"}, "labels": {"app": "checkout"}},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
                       "readyReplicas": 1, "availableReplicas": 1}}],
        "replicasets": [
            {"metadata": {"name": "checkout-a", "uid": "rs-a", "ownerReferences": owner,
                          "annotations": {REVISION: "1"}}, "status": {"availableReplicas": 1}},
            {"metadata": {"name": "checkout-b", "uid": "rs-b", "ownerReferences": owner,
                          "annotations": {REVISION: "2"}}}],
        "pods": [{"metadata": {"name": "checkout-b-1", "uid": "pod-b", "creationTimestamp":
                               LONG_AGO, "ownerReferences": [{"uid": "rs-b"}]},
                  "status": {"conditions": [{"type": "Ready", "status": "False",
                                             "lastTransitionTime": LONG_AGO}]}}],
        "events": [],
    }


def policy_body() -> dict:
    return {
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "IncidentPolicy",
        "metadata": {"name": "checkout-guard", "namespace": "shop", "generation": 1},
        "spec": {"runbookRef": {"name": "rb-001"}, "mode": "enforce",
                 "targets": {"selector": {"matchLabels": {"app": "checkout"}}},
                 "overrides": {"conditions": [
                     {"name": "readiness", "consecutiveFailures": 3, "interval": "1s",
                      "gracePeriod": "1s"},
                     {"name": "error-rate", "interval": "1s"}]}},
        "status": {"targets": [{
            "namespace": "shop", "name": "checkout", "revision": 1, "replicaSet": "checkout-a",
            "lastHealthyRevision": 1, "lastHealthyReplicaSet": "checkout-a",
            "lastHealthyAt": LONG_AGO}]},
    }


async def guard_until(ctx: guard.Context, body: dict, *, opened: bool,
                      until: float) -> tuple[dict, list[float]]:
    """Tick as the policy daemon does (status carried over, the tick's own wait honoured)
    until an incident is opened (or not wanted) and `until` seconds have passed."""
    started, ticks, status = time.monotonic(), [], {}
    while True:
        result = await guard.tick(ctx, {**body, "status": status or body["status"]})
        ticks.append(time.monotonic() - started)
        status = result.status
        if (result.opened or not opened) and ticks[-1] >= until:
            return status, ticks
        await asyncio.sleep(result.wait)


async def test_a_hung_prometheus_never_delays_the_readiness_trigger() -> None:
    kube = FakeKube(broken_release())
    with SilentServer() as silent:
        ctx = guard.Context(kube, Prometheus(silent.url, timeout=4.0, connect_timeout=1.0),
                            time.time)
        started = time.time()
        status, ticks = await asyncio.wait_for(
            guard_until(ctx, policy_body(), opened=True, until=0.0), timeout=15)
        (incident,) = kube.created
        detected = timeutil.parse(incident["status"]["detectedAt"]) - started
        # Readiness checked at ~0, 1, 2 s: the third failure fires, while the PromQL query
        # (its deadline 4 s) has not answered.
        assert detected < 2.0 + 0.5, (detected, ticks)
        assert silent.accepted >= 1
        (state,) = status["targets"]
        assert state["checks"]["readiness"]["failures"] == 3
        assert "error-rate" not in state["checks"]        # still waiting for its answer
        assert [e["condition"] for e in incident["status"]["evidence"]] == ["readiness"]
        # Ticks keep the readiness pace: one per interval, however long the query takes.
        assert all(b - a < 1.3 for a, b in zip(ticks, ticks[1:], strict=False)), ticks

        # Its deadline passed: the condition reads Unknown, saying why.
        status, _ = await asyncio.wait_for(
            guard_until(ctx, {**policy_body(), "status": status}, opened=False, until=3.0),
            timeout=15)
    error_rate = status["targets"][0]["checks"]["error-rate"]
    assert error_rate["lastOutcome"] == "Unknown"
    assert error_rate["lastMessage"] == ("prometheus query failed: no answer within 4s: "
                                         "outcome unknown")


# -- risesSharply: one query per condition per policy ------------------------------------------
class RecordingPrometheus:
    """A loopback HTTP server that answers the Prometheus query API from `series` (metric
    name -> the result's series) and keeps every query it is asked."""

    def __init__(self, series: dict[str, list[dict]]) -> None:
        self.series = series
        self.queries: list[str] = []

    async def __aenter__(self) -> RecordingPrometheus:
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()

    async def _query(self, request: web.Request) -> web.Response:
        query = request.query["query"]
        self.queries.append(query)
        result = next((s for name, s in self.series.items() if name in query), [])
        return web.json_response({"status": "success",
                                  "data": {"resultType": "vector", "result": result}})


def reading(deployment: str, part: str, value: float) -> dict:
    return {"metric": {"namespace": "shop", "deployment": deployment,
                       "missioncontrol_reading": part}, "value": [0, str(value)]}


def queue_targets() -> dict[str, list[dict]]:
    """RB-003 (its replay step left out: it needs another namespace) guarding two consumers
    in shop, each at revision 1."""
    (path,) = RUNBOOKS.glob("rb-003-*.yaml")
    runbook = yaml.safe_load(path.read_text())
    runbook["metadata"]["namespace"] = "shop"
    steps = runbook["spec"]["firstResponse"]["steps"]
    steps[:] = [s for s in steps if s["action"] != "replaySample"]
    deployments, replica_sets = [], []
    for name in ("billing", "webhooks"):
        deployments.append({
            "metadata": {"name": name, "namespace": "shop", "uid": f"dep-{name}",
                         "generation": 1, "annotations": {REVISION: "1"},
                         "labels": {"tier": "queue"}},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                       "readyReplicas": 1, "availableReplicas": 1}})
        replica_sets.append({"metadata": {"name": f"{name}-a", "uid": f"rs-{name}",
                                          "annotations": {REVISION: "1"},
                                          "ownerReferences": [{"kind": "Deployment",
                                                               "uid": f"dep-{name}"}]},
                             "status": {"availableReplicas": 1}})
    return {"Runbook": [runbook], "deployments": deployments, "replicasets": replica_sets,
            "pods": [], "events": []}


def queue_policy() -> dict:
    return {"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "IncidentPolicy",
            "metadata": {"name": "queue-guard", "namespace": "shop", "generation": 1},
            "spec": {"runbookRef": {"name": "rb-003"}, "mode": "enforce",
                     "targets": {"selector": {"matchLabels": {"tier": "queue"}}}},
            "status": {}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def answered_tick(ctx: guard.Context, status: dict) -> dict:
    """A tick that starts the queries due, then (once they have answered) the tick that
    takes their answers, at the same instant; the status after both."""
    result = await guard.tick(ctx, {**queue_policy(), "status": status})
    running = list(ctx.queries.tasks.values())
    if running:
        await asyncio.wait_for(asyncio.wait(running), timeout=10)
    return (await guard.tick(ctx, {**queue_policy(), "status": result.status})).status


STORM = {
    # webhooks: 900 now, 100 at the lowest of the window: a sharp rise (x9, +800).
    # billing: 800 now, and no lowest (its series began after the window's last step).
    "webhook_retry_queue_depth": [reading("webhooks", "now", 900.0),
                                  reading("webhooks", "lowest", 100.0),
                                  reading("billing", "now", 800.0)],
    "webhook_duplicate_deliveries_total": [reading("webhooks", "now", 5.0),
                                           reading("webhooks", "lowest", 5.0)],
}


def checks_of(status: dict) -> dict[str, dict]:
    return {t["name"]: t["checks"] for t in status["targets"]}


async def test_rises_sharply_asks_one_query_per_condition_per_policy() -> None:
    kube, clock = FakeKube(queue_targets()), FakeClock()
    async with RecordingPrometheus(STORM) as prom:
        ctx = guard.Context(kube, Prometheus(prom.url, timeout=5.0), clock)
        status = await answered_tick(ctx, {})
        # Two conditions, two targets: two queries, each for both targets, each asking for the
        # value now and the window's lowest.
        assert len(prom.queries) == 2, prom.queries
        for query in prom.queries:
            assert 'deployment=~"billing|webhooks"' in query
            assert query.count('"missioncontrol_reading", "now"') == 1
            assert query.count('"missioncontrol_reading", "lowest"') == 1
            assert "min_over_time((sum by (namespace, deployment)" in query
            assert "[300s:30s])" in query
        checks = checks_of(status)
        assert checks["webhooks"]["retry-queue"]["lastOutcome"] == "Fail"
        assert checks["webhooks"]["duplicate-deliveries"]["lastOutcome"] == "Pass"
        (incident,) = kube.created
        assert incident["spec"]["target"]["name"] == "webhooks"

        # Nothing is due before the interval (30 s) has passed: no query.
        clock.now += 29.0
        status = await answered_tick(ctx, status)
        assert len(prom.queries) == 2
        # The next interval: one query per condition again, for both targets.
        clock.now += 1.0
        await answered_tick(ctx, status)
        assert len(prom.queries) == 4, prom.queries


async def test_rises_sharply_without_its_baseline_is_unknown() -> None:
    kube, clock = FakeKube(queue_targets()), FakeClock()
    async with RecordingPrometheus(STORM) as prom:
        ctx = guard.Context(kube, Prometheus(prom.url, timeout=5.0), clock)
        checks = checks_of(await answered_tick(ctx, {}))
    billing = checks["billing"]
    # 800 now would be a sharp rise from anything below 267, but without its lowest value it is
    # neither: unknown, and counted toward nothing.
    assert billing["retry-queue"]["lastOutcome"] == "Unknown"
    assert billing["retry-queue"]["lastMessage"] == (
        "no baseline (lowest value over the last 300s) for this Deployment: outcome unknown")
    assert billing["retry-queue"].get("failures", 0) == 0
    # No series at all: unknown too.
    assert billing["duplicate-deliveries"]["lastOutcome"] == "Unknown"
    assert billing["duplicate-deliveries"]["lastMessage"] == (
        "no data for this Deployment: outcome unknown")
    assert [i["spec"]["target"]["name"] for i in kube.created] == ["webhooks"]
