"""Detection never makes things worse, on the real control plane: a healthy slow start with a
1 s readiness probe is never rolled back, a broken release still is within N x interval
(+ grace), a release that never ran is never a rollback target, and a hung Prometheus
delays nothing but its own conditions."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from e2e.conftest import rb001_policy
from harness import objects
from harness.nodesim import READY
from harness.procs import wait_for
from harness.silent import SilentServer
from missioncontrol import timeutil

pytestmark = pytest.mark.cluster
FAILURES, GRACE = 3, 2.0
# First failing check -> rolled back: the checks 1 s apart, then the rollback, with room for a
# loaded machine. A round that waited on a hung Prometheus would add its 5 s deadline to each
# of the checks (15 s or more), far past this.
LIMIT = FAILURES * 1.0 + 4.0


def readiness_policy(*, interval: float) -> dict:
    policy = rb001_policy()
    policy["spec"]["overrides"]["conditions"][0].update(
        {"consecutiveFailures": FAILURES, "interval": f"{interval:g}s",
         "gracePeriod": f"{GRACE:g}s"})
    return policy


def checkout_pods(cluster, replica_set: str) -> list[client.V1Pod]:
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector="app=checkout")
    return [p for p in pods.items if p.metadata.deletion_timestamp is None
            and any(r.name == replica_set for r in p.metadata.owner_references or [])]


def probe_failures(cluster, pod: str) -> dict[str, int]:
    events = cluster.core.list_namespaced_event(
        cluster.namespace, field_selector=f"involvedObject.name={pod},reason=Unhealthy")
    return {e.metadata.name: e.count or 1 for e in events.items}


def new_release(cluster, name: str = "checkout") -> dict:
    """The policy's state of `name` once it follows a release newer than revision 1."""
    return wait_for(lambda: (lambda s: s if s.get("revision", 0) > 1 and s.get("replicaSet")
                             else None)(cluster.target_state("checkout-guard", name)),
                    timeout=60, what="the policy to follow the new release")


def test_a_pod_ready_before_the_third_check_is_not_rolled_back(rb001, cluster):
    """The failure this guards against, step by step: two failing checks, a readiness-probe
    failure after the second, the pod Ready before the third. The third check must judge the
    pod as it is then (Ready), not count the failure it reported before."""
    cluster.create(readiness_policy(interval=4.0))
    op = rb001.start_operator()
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0", replicas=1))
    wait_for(lambda: cluster.target_state("checkout-guard", "checkout").get(
        "lastHealthyRevision") == 1, timeout=60, what="revision 1 recorded as healthy")

    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    replica_set = new_release(cluster)["replicaSet"]
    seen = wait_for(lambda: (lambda s: s if s["checks"].get("readiness", {}).get(
        "failures") == FAILURES - 1 else None)(cluster.target_state("checkout-guard",
                                                                    "checkout")),
        timeout=60, what=f"{FAILURES - 1} failing readiness checks")
    (pod,) = checkout_pods(cluster, replica_set)
    name = pod.metadata.name
    counted = seen.get("eventCounts") or {}
    wait_for(lambda: any(n > counted.get(key, 0) for key, n in probe_failures(
        cluster, name).items()), timeout=10, what="a probe failure after the last check")
    cluster.core.patch_namespaced_pod(name, cluster.namespace,
                                      {"metadata": {"annotations": {READY: "true"}}})
    state = wait_for(lambda: (lambda s: s if s["checks"]["readiness"].get(
        "lastOutcome") == "Pass" else None)(cluster.target_state("checkout-guard",
                                                                 "checkout")),
        timeout=30, what="the next readiness check to pass")
    assert state["checks"]["readiness"]["failures"] == 0
    assert cluster.incidents() == []
    wait_for(lambda: cluster.target_state("checkout-guard", "checkout").get(
        "lastHealthyRevision") == 2, timeout=60, what="revision 2 recorded as healthy")
    assert cluster.incidents() == []
    op.check_alive()


def test_a_slow_start_with_a_1s_probe_is_never_rolled_back(rb001, cluster):
    """Each pod fails its 1 s probe for 4.5 s, then is Ready: a rolling update of two such
    pods, watched every 2 s with a 2 s grace period. A pod is late for 2.5 s (up to a second
    more: timestamps have whole seconds), so one or two checks fail while it is, never three
    in a row."""
    cluster.create(readiness_policy(interval=2.0))
    op = rb001.start_operator()
    rb001.healthy_checkout()
    template = objects.deployment("checkout", image="shop/checkout:2.0",
                                  ready_after=4.5)["spec"]["template"]
    cluster.apps.patch_namespaced_deployment("checkout", cluster.namespace,
                                             {"spec": {"template": template}})
    failing, incidents = set(), []

    def healthy_or_fired() -> bool:
        state = cluster.target_state("checkout-guard", "checkout")
        if state.get("revision") == 2:
            failing.add(state["checks"].get("readiness", {}).get("failures", 0))
        incidents.extend(cluster.incidents())
        return bool(incidents) or state.get("lastHealthyRevision") == 2

    wait_for(healthy_or_fired, timeout=90, interval=0.1, what="revision 2 recorded as healthy")
    assert incidents == [], "a healthy slow start was judged failed"
    assert max(failing) >= 1, f"the slow start was never seen failing: {failing}"
    events = cluster.core.list_namespaced_event(cluster.namespace,
                                                field_selector="reason=Unhealthy").items
    assert sum(e.count or 1 for e in events) >= 4     # the kubelet did report its start
    assert cluster.incidents() == []
    op.check_alive()


def _rollback_delays(rb001, cluster, *, prometheus_url: str) -> dict[str, float]:
    """A broken release under a 1 s probe, readiness checked every 1 s: seconds from the
    release, and from the first failing readiness check (the pods late past their grace),
    to the incident and to the rollback applied."""
    cluster.create(readiness_policy(interval=1.0))
    op = rb001.start_operator(prometheus_url=prometheus_url)
    rb001.healthy_checkout()
    released = time.time()
    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    first_failure: list[float] = []

    def opened() -> list[dict]:
        state = cluster.target_state("checkout-guard", "checkout")
        since = state.get("checks", {}).get("readiness", {}).get("failingSince")
        if since and state.get("revision", 0) > 1 and not first_failure:
            first_failure.append(timeutil.parse(since))
        return cluster.incidents()

    (incident,) = wait_for(opened, timeout=60, interval=0.1, what="an incident")
    name = incident["metadata"]["name"]

    def rolled_back() -> dict | None:
        body = cluster.get("Incident", name)
        step = next((s for s in (body.get("status") or {}).get("steps") or []
                     if s["id"] == "rollback"), {})
        return body if step.get("state") == "Succeeded" else None

    body = wait_for(rolled_back, timeout=60, what="the rollback applied")
    step = next(s for s in body["status"]["steps"] if s["id"] == "rollback")
    op.check_alive()
    assert first_failure, "the failing readiness checks were never seen in the policy status"
    detected = timeutil.parse(body["status"]["detectedAt"])
    rolled = timeutil.parse(step["finishedAt"])
    return {"detect": detected - released, "rollback": rolled - released,
            "failing_to_rollback": rolled - first_failure[0]}


def _say(delays: dict[str, float], what: str) -> None:
    print(f"\nbroken release, {what}: detected {delays['detect']:.2f} s and rolled back "
          f"{delays['rollback']:.2f} s after the release; rolled back "
          f"{delays['failing_to_rollback']:.2f} s after the first failing check "
          f"(limit {LIMIT:g} s; grace {GRACE:g} s)")


def test_a_broken_release_with_a_1s_probe_is_rolled_back_in_time(rb001, cluster):
    delays = _rollback_delays(rb001, cluster, prometheus_url=cluster.env.prometheus_url)
    _say(delays, "real Prometheus")
    assert delays["failing_to_rollback"] <= LIMIT, delays


def test_a_hung_prometheus_does_not_delay_the_readiness_rollback(rb001, cluster):
    with SilentServer() as silent:
        delays = _rollback_delays(rb001, cluster, prometheus_url=silent.url)
        accepted = silent.accepted
        # Its own condition says why it knows nothing (its checks start afresh with the
        # rolled-back release, so wait for the next query's deadline).
        error_rate = wait_for(lambda: (lambda c: c if c.get("lastOutcome") else None)(
            cluster.target_state("checkout-guard", "checkout").get("checks", {}).get(
                "error-rate", {})), timeout=30, what="the error-rate condition checked")
        policy = cluster.get("IncidentPolicy", "checkout-guard")
    _say(delays, f"hung Prometheus ({accepted} connections held, none answered)")
    assert accepted >= 1                       # the operator did ask, and got no answer
    assert delays["failing_to_rollback"] <= LIMIT, delays
    assert error_rate["lastOutcome"] == "Unknown", error_rate
    assert "no answer within 5s" in error_rate["lastMessage"], error_rate
    ready = next(c for c in policy["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert time.time() - timeutil.parse(policy["status"]["lastTick"]) < 5.0


def test_a_release_that_never_ran_is_no_rollback_target(rb001, cluster):
    """Scaled to 0, a broken template "rolls out" with no pod of it running: it must not
    become the last healthy release that a later rollback goes back to."""
    cluster.create(rb001_policy(stable_for="2s"))
    op = rb001.start_operator()
    rb001.healthy_checkout()
    never_ran = objects.deployment("checkout", image="shop/checkout:2.0",
                                   ready=False)["spec"]["template"]
    cluster.apps.patch_namespaced_deployment("checkout", cluster.namespace, {
        "spec": {"replicas": 0, "template": never_ran}})
    state = new_release(cluster)
    assert state["revision"] == 2
    since = time.time()
    # Long past stableFor (2s) with revision 2 rolled out at 0 replicas.
    wait_for(lambda: timeutil.parse(cluster.get("IncidentPolicy", "checkout-guard")[
        "status"]["lastTick"]) > since + 3 * 2.0, timeout=60, what="ticks past stableFor")
    state = cluster.target_state("checkout-guard", "checkout")
    assert state["revision"] == 2 and state.get("lastHealthyRevision") == 1, state
    annotation = cluster.deployment("checkout").metadata.annotations[
        "missioncontrol.dev/last-healthy-revision"]
    assert annotation.startswith("1 ")

    broken = objects.deployment("checkout", image="shop/checkout:3.0",
                                ready=False)["spec"]["template"]
    cluster.apps.patch_namespaced_deployment("checkout", cluster.namespace, {
        "spec": {"replicas": 2, "template": broken}})
    name = cluster.one_incident()["metadata"]["name"]
    resolved = cluster.wait_phase(name, "Resolved", timeout=90)
    rollback = resolved["status"]["rollback"]
    assert (rollback["fromRevision"], rollback["toRevision"]) == (3, 1), rollback
    image = cluster.deployment("checkout").spec.template.spec.containers[0].image
    assert image == "shop/checkout:1.0"
    op.check_alive()


def _ready(cluster, kind: str, name: str, status: str, reason: str) -> dict:
    def matches() -> dict | None:
        conditions = (cluster.get(kind, name).get("status") or {}).get("conditions") or []
        found = next((c for c in conditions if c["type"] == "Ready"), None)
        return found if found and (found["status"], found["reason"]) == (status, reason) \
            else None
    return wait_for(matches, timeout=60, what=f"{kind} {name} Ready={status} ({reason})")


def test_an_unparseable_query_makes_the_runbook_and_its_policies_not_ready(rb001, cluster):
    """Prometheus's own parser judges the runbook's PromQL (Debian's 2.42 has no
    /api/v1/parse_query: the client falls back to an instant query at the epoch)."""
    op = rb001.start_operator()
    cluster.create(rb001_policy())
    _ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Guarding")
    runbook = cluster.get("Runbook", "rb-001")
    conditions = runbook["spec"]["trigger"]["anyOf"]
    conditions[1]["threshold"]["query"] = (
        'sum(rate(http_requests_total{namespace=~"{{ .namespace }}"}[1m])')    # one ")" short
    cluster.patch("Runbook", "rb-001", {"spec": {"trigger": {"anyOf": conditions}}})
    bad = _ready(cluster, "Runbook", "rb-001", "False", "InvalidQuery")
    assert bad["message"].startswith("condition error-rate: ")
    assert "parse error" in bad["message"], bad
    policy = _ready(cluster, "IncidentPolicy", "checkout-guard", "False", "RunbookInvalid")
    assert "parse error" in policy["message"] and "rb-001" in policy["message"], policy

    conditions[1]["threshold"]["query"] += ")"
    cluster.patch("Runbook", "rb-001", {"spec": {"trigger": {"anyOf": conditions}}})
    _ready(cluster, "Runbook", "rb-001", "True", "Valid")
    _ready(cluster, "IncidentPolicy", "checkout-guard", "True", "Guarding")
    op.check_alive()


def test_without_prometheus_the_runbook_says_its_queries_are_unchecked(rb001, cluster):
    op = rb001.start_operator(prometheus_url=None)
    condition = _ready(cluster, "Runbook", "rb-001", "True", "QueriesUnchecked")
    assert condition["message"].endswith(
        "PromQL not checked: no Prometheus configured (--prometheus-url)"), condition
    op.check_alive()
