"""The signal adapters' pure parts: joining one namespace's Kubernetes listings into
per-Deployment readings (signals.kubernetes), and matching Prometheus series to targets
(signals.prometheus.match)."""

from __future__ import annotations

import copy
import math

from missioncontrol.detect.signals import PodReading, ProbeEvents
from missioncontrol.signals.kubernetes import REVISION, pod_reading, rolled_out, targets_in
from missioncontrol.signals.prometheus import Answer, match
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
