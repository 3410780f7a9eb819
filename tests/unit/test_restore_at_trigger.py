"""RB-001's rollback at the moment the trigger fires (guard._Round.restore): the pass that
opens the Incident puts the healthy template back right after it, before the incident's steps
run, and only where those steps would roll back by themselves at once. The incident's rollback
step then finds it done and records it. On FakeKube, on a fake clock."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import yaml

from missioncontrol import guard, watchcache
from missioncontrol.actions import rollback
from missioncontrol.incident import IncidentStatus
from missioncontrol.model import Runbook
from missioncontrol.records import from_dict
from unit.fakekube import FakeKube

NS = "shop"
LONG_AGO = "2024-05-01T10:00:00Z"
T0 = 1_780_000_000.0
REVISION = "deployment.kubernetes.io/revision"
RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
OWNER = [{"kind": "Deployment", "uid": "dep", "name": "checkout", "controller": True}]


def template(image: str) -> dict:
    return {"metadata": {"labels": {"app": "checkout"}},
            "spec": {"containers": [{"name": "app", "image": image}]}}


def catalogue_runbook(**step_changes: dict) -> dict:
    (path,) = RUNBOOKS.glob("rb-001-*.yaml")
    body = yaml.safe_load(path.read_text())
    body["metadata"]["namespace"] = NS
    for step in body["spec"]["firstResponse"]["steps"]:
        step.update(step_changes.get(step["id"], {}))
    return body


def cluster(runbook: dict, *more: dict) -> FakeKube:
    """checkout at revision 2 (image 2.0), whose one pod has been not Ready for long;
    revision 1 (image 1.0) was the last healthy one."""
    return FakeKube(
        {"kind": "Namespace", "metadata": {"name": NS}},
        {"kind": "Runbook", **runbook},
        {"kind": "Deployment", "metadata": {
            "name": "checkout", "namespace": NS, "uid": "dep", "generation": 2,
            "labels": {"app": "checkout"},
            "annotations": {REVISION: "2", guard.LAST_HEALTHY: "1 (checkout-a)"}},
         "spec": {"replicas": 1, "template": template("shop/checkout:2.0")},
         "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
                    "readyReplicas": 1, "availableReplicas": 1}},
        {"kind": "ReplicaSet", "metadata": {
            "name": "checkout-a", "namespace": NS, "uid": "rs-a", "ownerReferences": OWNER,
            "annotations": {REVISION: "1"}},
         "spec": {"template": {**template("shop/checkout:1.0"), "metadata": {
             "labels": {"app": "checkout", "pod-template-hash": "a"}}}},
         "status": {"availableReplicas": 1}},
        {"kind": "ReplicaSet", "metadata": {
            "name": "checkout-b", "namespace": NS, "uid": "rs-b", "ownerReferences": OWNER,
            "annotations": {REVISION: "2"}},
         "spec": {"template": template("shop/checkout:2.0")}, "status": {}},
        {"kind": "Pod", "metadata": {
            "name": "checkout-b-1", "namespace": NS, "uid": "pod-b", "creationTimestamp":
            LONG_AGO, "ownerReferences": [{"kind": "ReplicaSet", "uid": "rs-b",
                                           "name": "checkout-b"}]},
         "status": {"conditions": [{"type": "Ready", "status": "False",
                                    "lastTransitionTime": LONG_AGO}]}},
        *more)


def policy(mode: str = "enforce") -> dict:
    return {
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "IncidentPolicy",
        "metadata": {"name": "checkout-guard", "namespace": NS, "generation": 1},
        "spec": {"runbookRef": {"name": "rb-001"}, "mode": mode,
                 "targets": {"selector": {"matchLabels": {"app": "checkout"}}},
                 "overrides": {"conditions": [
                     {"name": "readiness", "consecutiveFailures": 3, "interval": "1s",
                      "gracePeriod": "1s"}]}},
        "status": {"targets": [{
            "namespace": NS, "name": "checkout", "revision": 1, "replicaSet": "checkout-a",
            "lastHealthyRevision": 1, "lastHealthyReplicaSet": "checkout-a",
            "lastHealthyAt": LONG_AGO}]},
    }


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def guard_until_opened(kube: FakeKube, body: dict, *, passes: int = 10,
                             cache: watchcache.WatchCache | None = None) -> str:
    """Passes one second apart until one opens an incident; its name."""
    clock = Clock()
    ctx = guard.Context(kube, None, clock, cache=cache)
    status = body["status"]
    for _ in range(passes):
        result = await guard.tick(ctx, {**body, "status": status})
        status = result.status
        if result.opened:
            (name,) = result.opened
            return name
        clock.now += 1.0
    raise AssertionError(f"no incident opened in {passes} passes: {status}")


def image(kube: FakeKube) -> str:
    return kube.obj("Deployment", NS, "checkout")["spec"]["template"]["spec"]["containers"][0][
        "image"]


def writes(kube: FakeKube) -> list[tuple[str, str]]:
    return [(verb, kind) for verb, kind, _, _ in kube.writes if kind != "IncidentPolicy"]


async def test_the_pass_that_opens_the_incident_restores_the_healthy_template_next() -> None:
    kube = cluster(catalogue_runbook())
    name = await guard_until_opened(kube, policy())
    assert image(kube) == "shop/checkout:1.0"
    dep = kube.obj("Deployment", NS, "checkout")
    assert dep["metadata"]["annotations"][rollback.CAUSE] == rollback.cause(name)
    assert dep["metadata"]["annotations"][REVISION] == "2"     # the rest left as it was
    # The Incident and its record (the rollback plan among it) exist before the change.
    assert writes(kube) == [("create", "Incident"), ("patch_status", "Incident"),
                            ("patch", "Deployment")]
    status = kube.obj("Incident", NS, name)["status"]
    assert status["rollback"]["toReplicaSet"] == "checkout-a"

    # The incident's rollback step finds it done, says so and records the change.
    result = await rollback.rollback(step_context(kube, name), rollback_step())
    assert result.state == "Succeeded", result
    assert result.message == ("rolled checkout back from revision 2 to revision 1 "
                              "(checkout-a) when the trigger fired")
    assert [c.field for c in result.changes] == ["spec.template"]
    assert writes(kube)[-1] == ("patch", "Deployment")       # nothing written again


async def test_a_dry_run_policy_changes_nothing_at_the_trigger() -> None:
    kube = cluster(catalogue_runbook())
    await guard_until_opened(kube, policy("dryRun"))
    assert image(kube) == "shop/checkout:2.0"
    assert ("patch", "Deployment") not in writes(kube)


async def test_a_step_waiting_for_approval_before_the_rollback_keeps_it_waiting() -> None:
    for gated in ("freeze", "rollback"):
        kube = cluster(catalogue_runbook(**{gated: {"approval": "required"}}))
        await guard_until_opened(kube, policy())
        assert image(kube) == "shop/checkout:2.0", gated
        assert ("patch", "Deployment") not in writes(kube), gated


async def test_a_rollback_step_after_an_approval_gate_elsewhere_is_not_gated() -> None:
    kube = cluster(catalogue_runbook(page={"approval": "required"}))
    await guard_until_opened(kube, policy())
    assert image(kube) == "shop/checkout:1.0"


def earlier_rollback(finished: str) -> dict:
    """A resolved incident of the target whose rollback finished at `finished`."""
    return {"kind": "Incident", "metadata": {
        "name": "rb-001-checkout-r0", "namespace": NS,
        "labels": {"missioncontrol.dev/target": "checkout",
                   "missioncontrol.dev/policy": "checkout-guard"}},
        "status": {"phase": "Resolved", "steps": [{
            "id": "rollback", "action": "rollback", "state": "Succeeded",
            "finishedAt": finished,
            "changes": [{"kind": "Deployment", "name": "checkout", "field": "spec.template",
                         "from": "r0", "to": "r-1"}]}]}}


async def test_the_policy_cooldown_counts_at_the_trigger_too() -> None:
    kube = cluster(catalogue_runbook(), earlier_rollback("2026-05-28T20:26:00Z"))  # T0 - 40 s
    await guard_until_opened(kube, policy())
    assert image(kube) == "shop/checkout:2.0"


async def test_with_a_watch_cache_the_limits_and_the_open_incident_are_read_from_it() -> None:
    """The pass that opens the incident lists nothing: the target's other Incidents (the
    cooldown's rollbacks among them) come from the watch cache."""
    kube = cluster(catalogue_runbook(), earlier_rollback("2024-05-28T20:26:00Z"))
    cache = watchcache.WatchCache(kube, (NS,))
    kinds = {"deployments": "Deployment", "replicasets": "ReplicaSet", "pods": "Pod",
             "events": "Event", "incidents": "Incident", "runbooks": "Runbook",
             "serviceownerships": "ServiceOwnership"}
    for resource in cache.resources:
        compact = [resource.compact(b) for b in kube.kinds(kinds[resource.name], NS)]
        cache.stores[resource.name].replace(NS, [b for b in compact if b is not None])
        cache.stores[resource.name].live[NS] = True

    async def refused(kind: str, *_: object, **__: object) -> list[dict]:
        raise AssertionError(f"listed {kind}")

    kube.list = refused
    await guard_until_opened(kube, policy(), cache=cache)
    assert image(kube) == "shop/checkout:1.0"          # the earlier rollback is long past
    # A rollback 40 s ago, as the cache has it: the cooldown holds this one back.
    kube = cluster(catalogue_runbook())
    cache.stores["incidents"].replace(NS, [watchcache.compact_incident(
        earlier_rollback("2026-05-28T20:26:00Z"))])
    cache.kube = kube
    kube.list = refused
    await guard_until_opened(kube, policy(), cache=cache)
    assert image(kube) == "shop/checkout:2.0"


def test_the_cache_keeps_of_an_incident_what_opening_and_the_limits_read() -> None:
    body = earlier_rollback("2026-05-28T20:26:00Z")
    body["status"]["steps"].insert(0, {"id": "freeze", "action": "freezeDeployments",
                                       "state": "Succeeded", "message": "x" * 1000})
    body["status"]["evidence"] = [{"condition": "readiness", "message": "y" * 1000}]
    kept = watchcache.compact_incident(body)
    assert kept["status"] == {"phase": "Resolved", "steps": [body["status"]["steps"][1]]}
    assert kept["metadata"]["labels"] == body["metadata"]["labels"]


async def test_a_change_since_the_guard_decided_is_left_to_the_step() -> None:
    kube = cluster(catalogue_runbook())
    decided_on = kube.obj("Deployment", NS, "checkout")
    kube.edit("Deployment", NS, "checkout",
              {"metadata": {"generation": 3}, "spec": {"template": template("shop/checkout:3.0")}})
    healthy = await rollback.healthy_template(kube, NS, "checkout-a")
    done = await rollback.restore_at_trigger(kube, incident="rb-001-checkout-r2",
                                             deployment=decided_on, template=healthy)
    assert done is False
    assert image(kube) == "shop/checkout:3.0"


def test_only_a_runbook_whose_steps_roll_back_at_once_restores_at_the_trigger() -> None:
    def parsed(body: dict) -> Runbook:
        return Runbook.parse(body)

    assert rollback.restores_at_trigger(parsed(catalogue_runbook()))
    assert not rollback.restores_at_trigger(parsed(catalogue_runbook(
        **{"blast-radius": {"approval": "required"}})))
    off = catalogue_runbook()
    off["spec"]["automation"]["automaticRollback"]["enabled"] = False
    assert not rollback.restores_at_trigger(parsed(off))


def rollback_step():
    (step,) = [s for s in Runbook.parse(catalogue_runbook()).steps if s.action == "rollback"]
    return step


def step_context(kube: FakeKube, name: str) -> SimpleNamespace:
    body = kube.obj("Incident", NS, name)
    return SimpleNamespace(
        kube=kube, name=name, target=(NS, "checkout"), policy=None, dry_run=False,
        clock=lambda: T0, runbook=Runbook.parse(catalogue_runbook()),
        status=from_dict(IncidentStatus, copy.deepcopy(body["status"])))

