"""The signal adapters: joining one namespace's Kubernetes listings into per-Deployment
readings (signals.kubernetes), matching Prometheus series to targets (signals.prometheus.match),
and the Prometheus client itself against loopback servers (one that answers like Prometheus,
one that never answers)."""

from __future__ import annotations

import asyncio
import copy
import math
import time
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from harness.procs import free_port
from harness.silent import SilentServer
from missioncontrol.detect.signals import PodReading, ProbeEvents
from missioncontrol.model import Runbook
from missioncontrol.signals.kubernetes import REVISION, pod_reading, rolled_out, targets_in
from missioncontrol.signals.prometheus import (
    Answer,
    InFlight,
    Prometheus,
    PrometheusError,
    QueriesChecked,
    check_queries,
    match,
    now_and_lowest_query,
    queries_of,
    split_now_and_lowest,
)
from missioncontrol.timeutil import parse

CREATED = "2024-05-01T10:00:00Z"
T_CREATED = parse(CREATED)


def deployment(name: str = "web", *, uid: str = "dep-web", revision: int | None = 3,
               replicas: int = 3, generation: int = 4, status: dict | None = None) -> dict:
    annotations = {REVISION: str(revision)} if revision is not None else {}
    return {"metadata": {"name": name, "namespace": "shop", "uid": uid,
                         "generation": generation, "annotations": annotations},
            "spec": {"replicas": replicas, "template": {"spec": {}}},
            "status": status if status is not None else {
                "observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas}}


def replica_set(name: str, revision: int, owner: str = "dep-web") -> dict:
    return {"metadata": {"name": name, "namespace": "shop", "uid": f"rs-{name}",
                         "annotations": {REVISION: str(revision)},
                         "ownerReferences": [{"kind": "Deployment", "uid": owner}]}}


def pod(name: str, rs: str, *, ready: bool = True, since: str | None = None,
        terminating: bool = False) -> dict:
    meta = {"name": name, "namespace": "shop", "uid": f"pod-{name}",
            "creationTimestamp": CREATED,
            "ownerReferences": [{"kind": "ReplicaSet", "uid": f"rs-{rs}"}]}
    if terminating:
        meta["deletionTimestamp"] = "2024-05-01T10:05:00Z"
    ready_condition = {"type": "Ready", "status": "True" if ready else "False"}
    if since:
        ready_condition["lastTransitionTime"] = since
    return {"metadata": meta, "status": {"conditions": [
        {"type": "PodScheduled", "status": "True"}, ready_condition]}}


def event(name: str, pod_name: str, message: str = "Readiness probe failed: HTTP 503",
          *, count: int | None = 4, kind: str = "Pod", with_uid: bool = True) -> dict:
    obj = {"kind": kind, "name": pod_name}
    if with_uid:
        obj["uid"] = f"pod-{pod_name}"
    out = {"metadata": {"name": name}, "involvedObject": obj, "reason": "Unhealthy",
           "message": message}
    if count is not None:
        out["count"] = count
    return out


def listings() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """web at revision 3 (web-b), rolled from revision 2 (web-a); api at revision 1."""
    deployments = [deployment(), deployment("api", uid="dep-api", revision=1, replicas=1)]
    replica_sets = [replica_set("web-a", 2), replica_set("web-b", 3),
                    replica_set("api-x", 1, owner="dep-api"),
                    replica_set("other-b", 3, owner="dep-other")]
    pods = [pod("web-a-1", "web-a", ready=False),
            pod("web-b-1", "web-b"),
            pod("web-b-2", "web-b", ready=False, since="2024-05-01T10:02:00Z"),
            pod("web-b-3", "web-b", ready=False, terminating=True),
            pod("api-x-1", "api-x")]
    events = [event("e1", "web-b-2"),
              event("e2", "web-a-1"),                              # the old release's pod
              event("e3", "web-b-2", "Liveness probe failed: timeout"),
              event("e4", "web-b-1", count=None, with_uid=False),  # matched by name
              event("e5", "web-b-2", kind="Node"),
              event("e6", "web-b-3")]                              # terminating pod
    return deployments, replica_sets, pods, events


# -- targets_in -------------------------------------------------------------------------------
def test_joins_each_deployment_with_its_current_replica_set() -> None:
    web, api = targets_in(*listings())
    assert web.key == ("shop", "web") and api.key == ("shop", "api")
    assert (web.reading.revision, web.reading.replica_set) == (3, "web-b")
    assert web.reading.complete and (web.reading.replicas, web.reading.ready_replicas) == (3, 3)
    assert web.release.replica_set == "web-b"
    assert (api.reading.revision, api.reading.replica_set) == (1, "api-x")
    assert [p.name for p in api.release.pods] == ["api-x-1"]
    assert api.release.events == ()


def test_reads_the_current_replica_sets_available_pods_and_the_pause() -> None:
    deployments, replica_sets, pods, events = listings()
    replica_sets[1]["status"] = {"availableReplicas": 2}
    deployments[0]["spec"]["paused"] = True
    web, api = targets_in(deployments, replica_sets, pods, events)
    assert (web.reading.available, web.reading.paused) == (2, True)
    assert not web.reading.running          # paused: what it runs proves nothing
    assert (api.reading.available, api.reading.paused) == (0, False)


def test_only_the_current_replica_sets_live_pods() -> None:
    web, _ = targets_in(*listings())
    assert [(p.name, p.ready) for p in web.release.pods] == [("web-b-1", True),
                                                             ("web-b-2", False)]


def test_readiness_probe_events_of_the_current_pods_only() -> None:
    web, _ = targets_in(*listings())
    assert sorted(web.release.events, key=lambda e: e.key) == [
        ProbeEvents("web-b-2", "e1", 4, "Readiness probe failed: HTTP 503"),
        ProbeEvents("web-b-1", "e4", 1, "Readiness probe failed: HTTP 503")]


def test_a_replica_set_of_another_owner_is_not_current() -> None:
    deployments, replica_sets, pods, events = listings()
    replica_sets = [rs for rs in replica_sets if rs["metadata"]["name"] != "web-b"]
    web, _ = targets_in(deployments, replica_sets, pods, events)
    assert web.reading.replica_set is None and web.release is None


def test_a_deployment_without_a_revision_has_no_current_replica_set() -> None:
    (target,) = targets_in([deployment(revision=None)], [replica_set("web-a", 2)], [], [])
    assert target.reading.revision == 0 and target.release is None


def test_empty_namespace() -> None:
    assert targets_in([], [], [], []) == []


def test_replicas_default_to_one_and_ready_to_zero() -> None:
    dep = deployment(status={})
    del dep["spec"]["replicas"]
    (target,) = targets_in([dep], [], [], [])
    assert (target.reading.replicas, target.reading.ready_replicas) == (1, 0)
    assert not target.reading.complete


def test_the_body_is_passed_through() -> None:
    deployments, *rest = listings()
    web, _ = targets_in(deployments, *rest)
    assert web.body is deployments[0]


# -- rolled_out -------------------------------------------------------------------------------
def test_rolled_out() -> None:
    assert rolled_out(deployment())


def test_not_rolled_out_while_the_controller_has_not_seen_the_spec() -> None:
    dep = deployment()
    dep["status"]["observedGeneration"] = 3
    assert not rolled_out(dep)
    del dep["status"]["observedGeneration"]
    assert not rolled_out(dep)


def test_not_rolled_out_while_old_pods_remain() -> None:
    dep = deployment()
    dep["status"]["replicas"] = 4          # the new three and one old pod
    assert not rolled_out(dep)


def test_not_rolled_out_while_pods_are_not_updated_ready_or_available() -> None:
    for field in ("updatedReplicas", "readyReplicas", "availableReplicas"):
        dep = deployment()
        dep["status"][field] = 2
        assert not rolled_out(dep), field
        del dep["status"][field]
        assert not rolled_out(dep), field


def test_scaled_to_zero_is_rolled_out() -> None:
    assert rolled_out(deployment(replicas=0, status={"observedGeneration": 4}))
    dep = deployment(replicas=0, status={"observedGeneration": 4, "replicas": 1})
    assert not rolled_out(dep)             # the last pod is still going away


def test_rolled_out_without_status() -> None:
    dep = deployment()
    del dep["status"]
    assert not rolled_out(dep)


# -- pod_reading ------------------------------------------------------------------------------
def test_pod_reading_ready() -> None:
    assert pod_reading(pod("p", "rs")) == PodReading("p", True, T_CREATED, T_CREATED)


def test_pod_reading_not_ready_since_its_last_transition() -> None:
    reading = pod_reading(pod("p", "rs", ready=False, since="2024-05-01T10:02:00Z"))
    assert reading == PodReading("p", False, T_CREATED + 120, T_CREATED)


def test_pod_reading_never_before_creation() -> None:
    reading = pod_reading(pod("p", "rs", ready=False, since="2024-05-01T09:00:00Z"))
    assert reading.not_ready_since == T_CREATED


def test_pod_reading_without_conditions_or_times() -> None:
    bare = {"metadata": {"name": "p"}}
    assert pod_reading(bare) == PodReading("p", False, 0.0, 0.0)
    created = copy.deepcopy(pod("p", "rs"))
    created["status"] = {}
    assert pod_reading(created) == PodReading("p", False, T_CREATED, T_CREATED)


# -- prometheus.match -------------------------------------------------------------------------
def series(value: str, **labels: str) -> dict:
    return {"metric": labels, "value": [1714557600.0, value]}


TARGETS = [("shop", "web"), ("shop", "api")]


def test_match_by_namespace_and_deployment_labels() -> None:
    answer = match([series("0.31", namespace="shop", deployment="web", pod="x"),
                    series("0.02", namespace="shop", deployment="api"),
                    series("9", namespace="other", deployment="web")], TARGETS)
    assert answer.values == {("shop", "web"): 0.31, ("shop", "api"): 0.02}
    assert answer.error == ""
    assert answer.get(("shop", "web")) == 0.31


def test_a_missing_target_is_unknown() -> None:
    answer = match([series("0.31", namespace="shop", deployment="web")], TARGETS)
    assert answer.get(("shop", "api")) is None and answer.error == ""


def test_a_single_target_takes_an_unlabelled_series() -> None:
    assert match([series("42")], [("shop", "web")]).get(("shop", "web")) == 42.0
    assert match([series("42", namespace="shop")], [("shop", "web")]).values == {
        ("shop", "web"): 42.0}


def test_an_unlabelled_series_is_ambiguous_for_many_targets() -> None:
    assert match([series("42")], TARGETS).values == {}


def test_now_and_lowest_come_apart_by_their_label() -> None:
    now, lowest = split_now_and_lowest([
        series("900", namespace="shop", deployment="web", missioncontrol_reading="now"),
        series("100", namespace="shop", deployment="web", missioncontrol_reading="lowest"),
        series("80", namespace="shop", deployment="api", missioncontrol_reading="now"),
        series("7", namespace="shop", deployment="api")], TARGETS)   # neither part: ignored
    assert now.values == {("shop", "web"): 900.0, ("shop", "api"): 80.0}
    assert lowest.values == {("shop", "web"): 100.0}     # api: no baseline, unknown
    assert lowest.get(("shop", "api")) is None


def test_now_and_lowest_of_a_single_unlabelled_target() -> None:
    now, lowest = split_now_and_lowest([series("5", missioncontrol_reading="now"),
                                        series("2", missioncontrol_reading="lowest")],
                                       [("shop", "web")])
    assert (now.get(("shop", "web")), lowest.get(("shop", "web"))) == (5.0, 2.0)
    assert split_now_and_lowest([], TARGETS)[1].error == "no data"


def test_now_and_lowest_query_wraps_the_template_twice() -> None:
    assert now_and_lowest_query("q", window=300, step=30) == (
        'label_replace((q), "missioncontrol_reading", "now", "", "") or '
        'label_replace(min_over_time((q)[300s:30s]), "missioncontrol_reading", "lowest", "", "")')


def test_a_single_target_ignores_another_deployments_series() -> None:
    assert match([series("42", namespace="shop", deployment="api")],
                 [("shop", "web")]).values == {}


def test_nan_is_unknown() -> None:
    answer = match([series("NaN", namespace="shop", deployment="web")], TARGETS)
    assert math.isnan(answer.values[("shop", "web")])
    assert answer.get(("shop", "web")) is None


def test_empty_result_is_no_data() -> None:
    answer = match([], TARGETS)
    assert answer.values == {} and answer.error == "no data"
    assert answer.get(("shop", "web")) is None


def test_malformed_series_are_skipped() -> None:
    answer = match([{"metric": {"namespace": "shop", "deployment": "web"}},
                    {"metric": {"namespace": "shop", "deployment": "web"}, "value": [1]},
                    {"metric": {"namespace": "shop", "deployment": "web"},
                     "value": [1, "abc"]},
                    {"metric": {"namespace": "shop", "deployment": "web"}, "value": None},
                    series("1.5", namespace="shop", deployment="api")], TARGETS)
    assert answer.values == {("shop", "api"): 1.5} and answer.error == ""


def test_empty_answer() -> None:
    assert Answer().get(("shop", "web")) is None


# -- the Prometheus client, over loopback HTTP ------------------------------------------------
class FakePrometheus:
    """A loopback HTTP server answering the Prometheus API the way Prometheus 2.42 does
    (no /api/v1/parse_query: 404)."""

    def __init__(self, *, parse_endpoint: bool = False) -> None:
        self.parse_endpoint = parse_endpoint
        self.requests: list[tuple[str, dict]] = []
        self.authorization: list[str | None] = []   # each query's Authorization header
        self.headers: list[dict[str, str]] = []     # and all its headers
        self.results: dict[str, dict] = {}

    async def __aenter__(self) -> FakePrometheus:
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        if self.parse_endpoint:
            app.router.add_get("/api/v1/parse_query", self._parse)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()

    async def _query(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query)))
        self.authorization.append(request.headers.get("Authorization"))
        self.headers.append(dict(request.headers))
        query = request.query["query"]
        if query.count("(") != query.count(")"):
            return web.json_response({"status": "error", "errorType": "bad_data", "error":
                                      'invalid parameter "query": 1:5: parse error: '
                                      'unclosed left parenthesis'}, status=400)
        data = self.results.get(query, {"resultType": "vector", "result": []})
        return web.json_response({"status": "success", "data": data})

    async def _parse(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query)))
        if "(" in request.query["query"] and ")" not in request.query["query"]:
            return web.json_response({"status": "error", "errorType": "bad_data",
                                      "error": "1:5: parse error: unclosed left parenthesis"},
                                     status=400)
        return web.json_response({"status": "success", "data": {"type": "vectorSelector"}})


async def test_query_returns_the_series_and_a_scalar_as_one_series() -> None:
    async with FakePrometheus() as prom:
        prom.results["up"] = {"resultType": "vector", "result": [series("1", job="a")]}
        prom.results["scalar(1)"] = {"resultType": "scalar", "result": [1714557600.0, "1"]}
        client = Prometheus(prom.url, timeout=3.0)
        assert await client.query("up") == [series("1", job="a")]
        assert await client.query("scalar(1)") == [{"metric": {}, "value": [1714557600.0, "1"]}]
        # Prometheus's own query deadline matches ours.
        assert prom.requests[0] == ("/api/v1/query", {"query": "up", "timeout": "3s"})


async def test_a_hung_prometheus_is_an_unknown_reading_at_the_deadline_without_retries() -> None:
    with SilentServer() as prom:
        client = Prometheus(prom.url, timeout=0.5, connect_timeout=0.2)
        started = time.monotonic()
        answer = await client.by_target("up", [("shop", "web")])
        took = time.monotonic() - started
        connections = prom.accepted
    assert 0.4 < took < 2.0
    assert answer.get(("shop", "web")) is None
    assert answer.error == "prometheus query failed: no answer within 0.5s"
    assert connections == 1                           # asked once: no retry inside a check


async def test_a_refused_connection_is_an_unknown_reading_at_once() -> None:
    client = Prometheus(f"http://127.0.0.1:{free_port()}", timeout=5.0)
    started = time.monotonic()
    answer = await client.by_target("up", [("shop", "web")])
    assert time.monotonic() - started < 1.0           # no backoff between hidden retries
    assert answer.error.startswith("prometheus query failed: ClientConnectorError")


async def test_an_error_answer_says_prometheus_own_words() -> None:
    async with FakePrometheus() as prom:
        answer = await Prometheus(prom.url).by_target("sum(", [("shop", "web")])
    assert answer.error == ('prometheus query failed: bad_data: invalid parameter "query": '
                            '1:5: parse error: unclosed left parenthesis')


@pytest.mark.parametrize("parse_endpoint", [True, False])
async def test_parse_uses_prometheus_own_parser(parse_endpoint: bool) -> None:
    async with FakePrometheus(parse_endpoint=parse_endpoint) as prom:
        client = Prometheus(prom.url)
        assert await client.parse('sum(up{namespace=~"{{ .namespace }}"})') is None
        assert await client.parse("sum(") == "1:5: parse error: unclosed left parenthesis"
        paths = [path for path, _ in prom.requests]
    # The template variables are rendered with placeholders before parsing.
    assert prom.requests[0][1]["query"] == 'sum(up{namespace=~"placeholder-namespace"})'
    if parse_endpoint:
        assert set(paths) == {"/api/v1/parse_query"}
    else:
        # An older Prometheus: an instant query at the start of the epoch, where no data is.
        assert paths == ["/api/v1/query"] * 2
        assert prom.requests[0][1]["time"] == "1"


async def test_parse_cannot_say_without_an_answer() -> None:
    with SilentServer() as prom:
        with pytest.raises(PrometheusError, match="no answer within 0.3s"):
            await Prometheus(prom.url, timeout=0.3).parse("up")


async def test_in_flight_queries_run_once_per_key_and_are_taken_when_done() -> None:
    queries = InFlight()
    release = asyncio.Event()
    runs = []

    async def work(tag: str) -> str:
        runs.append(tag)
        await release.wait()
        return tag

    queries.start("k", work("first"))
    queries.start("k", work("second"))               # one at a time: not started
    await queries.settle(["k"], within=0.05)
    assert queries.take("k") is None and queries.running("k")
    release.set()
    await queries.settle(["k"], within=1.0)
    assert queries.take("k") == "first" and runs == ["first"]
    assert queries.take("k") is None and not queries.running("k")


async def test_check_queries_names_the_first_that_does_not_parse() -> None:
    queries = {"condition a": "up", "condition b": "sum(", "step s dashboard d": "rate(x[5m])"}
    async with FakePrometheus() as prom:
        checked = await check_queries(Prometheus(prom.url), queries)
        assert checked == QueriesChecked(
            invalid="condition b: 1:5: parse error: unclosed left parenthesis")
        assert await check_queries(Prometheus(prom.url), {"condition a": "up"}) == \
            QueriesChecked()


async def test_check_queries_claims_nothing_without_an_answer() -> None:
    assert await check_queries(None, {"condition a": "up"}) == QueriesChecked(
        unchecked="no Prometheus configured (--prometheus-url)")
    with SilentServer() as silent:
        checked = await check_queries(Prometheus(silent.url, timeout=0.3), {"condition a": "up"})
    assert checked.invalid == ""
    assert checked.unchecked == "Prometheus could not parse them: no answer within 0.3s"
    assert await check_queries(None, {}) == QueriesChecked()


def test_queries_of_a_runbook_are_its_conditions_and_dashboards() -> None:
    (path,) = (Path(__file__).resolve().parents[2] / "runbooks").glob("rb-001-*.yaml")
    runbook = Runbook.parse(yaml.safe_load(path.read_text()))
    assert sorted(queries_of(runbook)) == ["condition error-rate",
                                           "step blast-radius dashboard error rate by endpoint"]
