"""Whole incident rounds (engine.Run) on a fake clock over FakeKube: the middle tier between
the pure decisions' unit tests and the e2e suite. Pages go to a real local HTTP receiver; no
cluster, no Prometheus, seconds in all."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from harness.receiver import Receiver
from missioncontrol import incident as inc
from missioncontrol import timeutil
from missioncontrol.engine import Run
from missioncontrol.model import Runbook
from missioncontrol.records import to_dict
from missioncontrol.rounds import Engine
from unit.fakekube import FakeKube

NS = "shop"
T0 = 1_780_000_000.0
RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
ROLES = ("release-owner", "oncall-backend", "incident-commander", "platform-lead")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@dataclass
class Shop:
    """One namespace: RB-001 (steps as the test gives them), a policy in enforce mode, an
    ownership map whose every role is a person behind a webhook, the checkout Deployment and
    an open incident for it, driven by one Run."""
    kube: FakeKube
    clock: Clock
    receiver: Receiver
    events: list[tuple[str, str, str]] = field(default_factory=list)
    run: Run | None = None

    @property
    def incident(self) -> dict:
        return self.kube.obj("Incident", NS, "rb-001-checkout-r2")

    @property
    def status(self) -> dict:
        return self.incident["status"]

    def engine(self) -> Engine:
        return Engine(self.kube, None, self.clock,
                      lambda body, kind, reason, message: self.events.append(
                          (kind, reason, message)), tick=1.0)

    def start(self) -> Run:
        """A Run as the daemon starts one: from the incident as stored (a restart too)."""
        self.run = Run(self.engine(), self.incident)
        return self.run

    async def round(self, *, after: float = 0.0) -> None:
        """One round `after` seconds from now, with what it started in the background
        (pages, updates) finished, as the daemon's next round would find them."""
        self.clock.now += after
        run = self.run or self.start()
        run.body = self.incident
        await run.round()
        while running := [t for t in run.tasks.values() if not t.done()]:
            await asyncio.gather(*running)

    async def watch(self, seconds: float, *, every: float = 10.0) -> None:
        """Rounds every `every` seconds for `seconds`, as the daemon runs them."""
        for _ in range(int(seconds // every)):
            await self.round(after=every)
        if seconds % every:
            await self.round(after=seconds % every)

    def healthy(self, *, conditions: tuple[str, ...] = ("readiness",)) -> None:
        """The checkout fully rolled out, and its guard's last checks all passing."""
        self.kube.edit("Deployment", NS, "checkout", {"status": {
            "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
            "availableReplicas": 1}}, manager="kube-controller-manager")
        self.kube.edit("IncidentPolicy", NS, "guard", {"status": {"targets": [{
            "namespace": NS, "name": "checkout", "revision": 2,
            "checks": {c: {"lastOutcome": "Pass"} for c in conditions}}]}},
                       manager=OPERATOR_GUARD)

    def pages(self, role: str | None = None) -> list[dict]:
        return [p for p in self.status.get("pages") or []
                if p.get("kind", "page") == "page" and (role is None or p["role"] == role)]

    def steps(self) -> dict[str, dict]:
        return {s["id"]: s for s in self.status.get("steps") or []}


OPERATOR_GUARD = "missioncontrol"


@contextlib.contextmanager
def held(kube: FakeKube, matches) -> Iterator[asyncio.Event]:
    """Calls for which `matches(fn, args)` never return (an API call on the wire when the
    operator stops); the event is set when the first one is made."""
    reached, never = asyncio.Event(), asyncio.Event()
    original = kube.call

    async def call(fn, *args, **kwargs):
        if matches(fn, args):
            reached.set()
            await never.wait()
        return await original(fn, *args, **kwargs)

    kube.call = kube.json = call
    try:
        yield reached
    finally:
        kube.call = kube.json = original


def runbook(steps: list[dict], **spec: object) -> dict:
    (path,) = RUNBOOKS.glob("rb-001-*.yaml")
    body = yaml.safe_load(path.read_text())
    body["metadata"]["namespace"] = NS
    body["spec"]["firstResponse"]["steps"] = steps
    body["spec"].update(spec)
    return body


def shop(receiver: Receiver, steps: list[dict], *, objects: tuple[dict, ...] = (),
         **runbook_spec: object) -> Shop:
    clock = Clock()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "routes",
                                                                 "namespace": NS},
              "data": {role: base64.b64encode(receiver.url(f"/{role}").encode()).decode()
                       for role in ROLES}}
    ownership = {"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "ServiceOwnership",
                 "metadata": {"name": "checkout", "namespace": NS},
                 "spec": {"service": "checkout", "roles": [
                     {"role": role, "contacts": [{"name": role.split("-")[0], "route": {
                         "type": "Webhook", "secretRef": {"name": "routes", "key": role}}}]}
                     for role in ROLES]}}
    policy = {"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "IncidentPolicy",
              "metadata": {"name": "guard", "namespace": NS},
              "spec": {"runbookRef": {"name": "rb-001"}, "mode": "enforce",
                       "ownershipRef": {"name": "checkout"},
                       "targets": {"selector": {"matchLabels": {"app": "checkout"}}}}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "checkout", "namespace": NS, "generation": 2,
                               "labels": {"app": "checkout"}},
                  "spec": {"replicas": 1, "template": {"spec": {"containers": [
                      {"name": "app", "image": "shop/checkout:2.0"}]}}},
                  "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": 0}}
    book = runbook(steps, **runbook_spec)
    kube = FakeKube(secret, ownership, policy, deployment, book, *objects)
    parsed = Runbook.parse(kube.obj("Runbook", NS, "rb-001"))
    status = inc.opened(now=clock(), mode="enforce", slo=parsed.recovery.slo,
                        reason="readiness: 3 failed checks", evidence=(),
                        steps=tuple((s.id, s.action) for s in parsed.steps))
    kube.put({"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
              "metadata": {"name": "rb-001-checkout-r2", "namespace": NS,
                           "labels": {"missioncontrol.dev/target": "checkout",
                                      "missioncontrol.dev/policy": "guard"}},
              "spec": {"runbook": {"name": "rb-001", "id": "RB-001"}, "policy": "guard",
                       "target": {"kind": "Deployment", "namespace": NS, "name": "checkout"},
                       "severity": "SEV2", "owner": "release", "mode": "enforce",
                       "summary": "RB-001: readiness failed"},
              "status": to_dict(status)}, manager="missioncontrol")
    return Shop(kube, clock, receiver)


def config_map(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
            "data": data}


def consumer(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": {"tier": "consumer"}},
            "spec": {"replicas": replicas}}


UNDOABLE = [
    {"id": "flags", "action": "setFlags",
     "setFlags": {"configMap": "flags", "flags": {"safe-mode": "on"}}},
    {"id": "routing", "action": "routeReadsToReplica",
     "routeReadsToReplica": {"configMap": "routing", "key": "non-critical-reads"}},
    {"id": "consumers", "action": "pauseConsumers",
     "pauseConsumers": {"selector": {"matchLabels": {"tier": "consumer"}}}},
]
UNDO_OBJECTS = (config_map("flags", {"safe-mode": "off"}), config_map("routing", {}),
                consumer("worker", 3))


# -- undo --------------------------------------------------------------------------------------
async def test_undo_runs_newest_step_first_and_leaves_a_hand_made_change_alone(receiver):
    s = shop(receiver, UNDOABLE, objects=UNDO_OBJECTS,
             recovery={"slo": "20m", "stableFor": "1m"})
    await s.round()
    assert [s.steps()[i]["state"] for i in ("flags", "routing", "consumers")] \
        == ["Succeeded"] * 3
    assert s.kube.obj("Deployment", NS, "worker")["spec"]["replicas"] == 0
    # On call keeps safe mode on by hand while it is open.
    s.kube.edit("ConfigMap", NS, "flags", {"data": {"safe-mode": "forced"}})
    s.healthy()
    await s.round(after=5)
    assert s.status["phase"] == inc.MITIGATED
    await s.watch(61)
    assert s.status["phase"] == inc.RESOLVED
    for _ in range(3):
        await s.round(after=1)
    reverts = [r for r in s.status["steps"] if r["id"].startswith("revert:")]
    assert [r["id"] for r in reverts] == ["revert:consumers", "revert:routing", "revert:flags"]
    assert [r["state"] for r in reverts] == ["Succeeded", "Succeeded", "Skipped"]
    assert reverts[2]["message"].startswith(
        "Skipped: changed by kubectl-patch since: data[safe-mode] of ConfigMap flags is "
        "'forced', not 'on' as we set it")
    assert s.kube.obj("ConfigMap", NS, "flags")["data"] == {"safe-mode": "forced"}
    assert s.kube.obj("ConfigMap", NS, "routing")["data"] == {}
    assert s.kube.obj("Deployment", NS, "worker")["spec"]["replicas"] == 3
    # The writes to the cluster happened in that order too.
    undo_writes = [w for w in s.kube.writes if w[0] == "patch" and w[3] in ("worker", "routing")]
    assert [w[3] for w in undo_writes][-2:] == ["worker", "routing"]
    assert ("Warning", "RevertSkipped") in {(k, r) for k, r, _ in s.events}


async def test_a_restart_in_the_middle_of_an_undo_neither_repeats_nor_skips_one(receiver):
    s = shop(receiver, UNDOABLE, objects=UNDO_OBJECTS,
             recovery={"slo": "20m", "stableFor": "1m"})
    await s.round()
    s.healthy()
    await s.round(after=5)
    await s.watch(50)
    # The round that resolves plans the undo and performs it; the operator stops (its task
    # is cancelled, as kopf does) while the first undo's scale is on the wire, after that
    # undo was recorded Running.
    with held(s.kube, lambda fn, args: fn == s.kube.apps.patch_namespaced_deployment_scale
              and args[2]["spec"]["replicas"] == 3) as reached:
        s.clock.now += 11
        s.run.body = s.incident
        in_flight = asyncio.create_task(s.run.round())
        await asyncio.wait_for(reached.wait(), 5)
        in_flight.cancel()
        with pytest.raises(asyncio.CancelledError):
            await in_flight
    assert s.steps()["revert:consumers"]["state"] == inc.RUNNING
    assert s.steps()["revert:routing"]["state"] == inc.PENDING
    assert s.kube.obj("Deployment", NS, "worker")["spec"]["replicas"] == 0

    # A new operator: a new Run from the stored incident.
    s.start()
    for _ in range(3):
        await s.round(after=1)
    reverts = {k: v for k, v in s.steps().items() if k.startswith("revert:")}
    assert {k: v["state"] for k, v in reverts.items()} == {
        "revert:consumers": "Succeeded", "revert:routing": "Succeeded",
        "revert:flags": "Succeeded"}
    assert all(v["attempts"] == 1 for k, v in reverts.items() if k != "revert:consumers")
    scales = [w for w in s.kube.writes if w[3] == "worker"]
    assert len(scales) == 2   # paused once, resumed once (the cut one never landed)
    assert s.kube.obj("Deployment", NS, "worker")["spec"]["replicas"] == 3
    assert s.kube.obj("ConfigMap", NS, "flags")["data"] == {"safe-mode": "off"}


# -- verify ------------------------------------------------------------------------------------
async def test_a_step_without_effect_escalates_once_and_with_revert_is_undone(receiver):
    steps = [{**UNDOABLE[0], "verifyWithin": "30s", "onNoEffect": "revert"}]
    s = shop(receiver, steps, objects=UNDO_OBJECTS)
    await s.round()
    assert s.kube.obj("ConfigMap", NS, "flags")["data"] == {"safe-mode": "on"}
    await s.round(after=31)   # still unhealthy: no effect
    for _ in range(3):
        await s.round(after=1)
    assert s.steps()["revert:flags"]["state"] == "Succeeded"
    assert s.kube.obj("ConfigMap", NS, "flags")["data"] == {"safe-mode": "off"}
    escalations = [e for e in s.status["escalations"] if e["after"] == "verify:flags"]
    assert len(escalations) == 1, s.status["escalations"]


# -- people ------------------------------------------------------------------------------------
async def test_an_unacknowledged_page_is_repeated_after_repage_after_and_stops_once_acked(
        receiver):
    s = shop(receiver, UNDOABLE[:1], objects=UNDO_OBJECTS,
             escalation={"page": ["release-owner"], "pageWithin": "5m", "repageAfter": "2m",
                         "rules": []})
    await s.round()
    assert len(receiver.requests("/release-owner")) == 1
    await s.round(after=60)
    assert len(receiver.requests("/release-owner")) == 1   # not yet
    await s.round(after=61)
    assert len(receiver.requests("/release-owner")) == 2
    assert sorted(p["round"] for p in s.pages("release-owner")) == [1, 2]
    s.kube.edit("Incident", NS, "rb-001-checkout-r2", {"spec": {"acknowledgements": [
        {"role": "release-owner", "by": "ada", "at": timeutil.iso(s.clock())}]}},
                manager="kubectl-mc")
    await s.round(after=1)
    await s.round(after=300)
    assert len(receiver.requests("/release-owner")) == 2


async def test_the_slo_breach_escalates_once_however_many_rounds_see_it(receiver):
    s = shop(receiver, UNDOABLE[:1], objects=UNDO_OBJECTS,
             recovery={"slo": "1m", "stableFor": "30s"},
             escalation={"page": ["release-owner"], "pageWithin": "5m", "rules": [
                 {"after": "30s", "when": "NotRecovered", "page": ["incident-commander"]}]})
    await s.round()
    for _ in range(5):
        await s.round(after=20)
    assert sorted(e["after"] for e in s.status["escalations"]) == ["30s", "slo"]
    # Both escalations page the first rule's roles: the commander is paged once, not twice.
    assert len(s.pages("incident-commander")) == 1
    assert len(receiver.requests("/incident-commander")) == 1
    breached = [c for c in s.status["conditions"] if c["type"] == "SLOBreached"]
    assert breached and breached[0]["status"] == "True"


# -- rollback brakes ---------------------------------------------------------------------------
def earlier_rollback(name: str, at: float) -> dict:
    return {"apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"missioncontrol.dev/target": "checkout"}},
            "spec": {}, "status": {"phase": "Resolved", "steps": [
                {"id": "rollback", "action": "rollback", "state": "Succeeded",
                 "finishedAt": timeutil.iso(at),
                 "changes": [{"kind": "Deployment", "name": "checkout",
                              "field": "spec.template", "from": "r1", "to": "r0"}]}]}}


async def test_the_rollback_limit_counts_the_other_incidents_of_the_target(receiver):
    steps = [{"id": "rollback", "action": "rollback", "rollback": {"to": "LastHealthy"}}]
    objects = (earlier_rollback("rb-001-checkout-r0", T0 - 1800),
               earlier_rollback("rb-001-checkout-r1", T0 - 900),
               {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "checkout-1", "namespace": NS},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "shop/checkout:1.0"}]}}}})
    s = shop(receiver, steps, objects=objects)
    s.kube.edit("IncidentPolicy", NS, "guard", {"spec": {"limits": {
        "cooldown": "5m", "maxRemediations": 2, "window": "1h"}}})
    s.kube.edit("Incident", NS, "rb-001-checkout-r2", {"status": {"rollback": {
        "fromRevision": 2, "fromReplicaSet": "checkout-2", "toRevision": 1,
        "toReplicaSet": "checkout-1"}}}, manager="missioncontrol")
    before = copy.deepcopy(s.kube.obj("Deployment", NS, "checkout")["spec"])
    await s.round()
    rollback = s.steps()["rollback"]
    assert rollback["state"] == "Skipped"
    assert rollback["message"].startswith("rollback limit reached: 2 automatic rollbacks of "
                                          "checkout in the last 60m"), rollback["message"]
    assert s.kube.obj("Deployment", NS, "checkout")["spec"] == before
    (escalation,) = s.status["escalations"]
    assert escalation["after"] == "step:rollback"
    assert escalation["when"].startswith("rollback limit reached")


# -- closing -----------------------------------------------------------------------------------
async def test_a_close_asked_while_a_round_is_in_flight_ends_closed(receiver):
    s = shop(receiver, UNDOABLE[:1], objects=UNDO_OBJECTS)
    await s.round()
    # The next round is held half-way (in the ConfigMap read of its step's verify or undo
    # bookkeeping, anything after its first status read) while a person closes the incident.
    gate, reached = asyncio.Event(), asyncio.Event()
    read = s.kube.apps.read_namespaced_deployment

    def held(name, namespace):
        reached.set()
        return read(name, namespace)

    s.kube.apps.read_namespaced_deployment = held
    run = s.run
    run.body = s.incident

    async def slow_round():
        original_call = s.kube.call

        async def call(fn, *args, **kwargs):
            result = await original_call(fn, *args, **kwargs)
            if fn is held:
                await gate.wait()
            return result

        s.kube.call = s.kube.json = call
        try:
            await run.round()
        finally:
            s.kube.call = s.kube.json = original_call

    in_flight = asyncio.create_task(slow_round())
    await asyncio.wait_for(reached.wait(), 5)
    s.kube.edit("Incident", NS, "rb-001-checkout-r2", {"spec": {
        "close": True, "actionItems": [{"title": "add a canary", "assignee": "ada"}]}},
                manager="kubectl-mc")
    gate.set()
    await in_flight
    s.kube.apps.read_namespaced_deployment = read
    await s.round(after=1)   # the next round sees the request: the daemon closes it
    assert s.status["phase"] == inc.CLOSED
    await s.round(after=1)
    assert s.status["phase"] == inc.CLOSED
    closed = [e["message"] for e in s.status["timeline"] if e["type"] == inc.CLOSED]
    assert closed == ["closed with 1 action item(s): add a canary (ada)"]
    # setFlags is undone on resolution by default (revertOn [Resolved]): closed without
    # resolving, the flag stays as the step set it, for the people who took over.
    assert s.kube.obj("ConfigMap", NS, "flags")["data"] == {"safe-mode": "on"}


# -- recovery ----------------------------------------------------------------------------------
async def test_a_stretch_nobody_watched_does_not_count_as_stable(receiver):
    s = shop(receiver, UNDOABLE[:1], objects=UNDO_OBJECTS,
             recovery={"slo": "20m", "stableFor": "2m"})
    await s.round()
    s.healthy()
    await s.round(after=1)
    assert s.status["phase"] == inc.MITIGATED
    await s.round(after=10)
    # Then no round for five minutes (an API server outage): the target may have been
    # anything meanwhile. The first round after it does not resolve the incident...
    await s.round(after=300)
    assert s.status["phase"] == inc.MITIGATED
    restarted = [e["message"] for e in s.status["timeline"] if e["type"] == "StableRestarted"]
    assert restarted == ["healthy since 5m10s ago but not watched for 5m: counting stableFor "
                         "again from now"], restarted
    # ... stableFor of watching from then on does.
    for _ in range(11):
        await s.round(after=10)
    assert s.status["phase"] == inc.MITIGATED
    await s.round(after=10)
    assert s.status["phase"] == inc.RESOLVED


async def test_a_restart_counts_stable_again_unless_it_had_just_begun(receiver):
    s = shop(receiver, UNDOABLE[:1], objects=UNDO_OBJECTS,
             recovery={"slo": "20m", "stableFor": "2m"})
    await s.round()
    s.healthy()
    await s.round(after=1)
    s.start()                      # a new operator, 10 s into the healthy stretch: no hole
    await s.round(after=10)
    assert not any(e["type"] == "StableRestarted" for e in s.status["timeline"])
    for _ in range(10):
        await s.round(after=10)
    s.start()                      # a failover 110 s in: nobody here watched the stretch
    await s.round(after=10)
    assert s.status["phase"] == inc.MITIGATED
    assert [e["type"] for e in s.status["timeline"]].count("StableRestarted") == 1


# -- GitOps: the freeze held past resolution ------------------------------------------------
GITOPS_STEPS = [
    {"id": "freeze", "action": "freezeDeployments", "freezeDeployments": {"scope": "Namespace"}},
    {"id": "suspend-gitops", "action": "suspendGitOps", "suspendGitOps": {}},
]


def git_repository(revision: str) -> dict:
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "fleet", "namespace": "flux-system"},
            "spec": {"url": "https://git.example/fleet.git"},
            "status": {"artifact": {"revision": revision}}}


async def test_a_flux_owner_stays_suspended_and_frozen_past_resolution_until_git_moves_on(
        receiver):
    kustomization = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                     "metadata": {"name": "apps", "namespace": "flux-system"},
                     "spec": {"sourceRef": {"kind": "GitRepository", "name": "fleet"}}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    s = shop(receiver, GITOPS_STEPS, objects=(kustomization, git_repository("main@sha1:111"),
                                              namespace),
             recovery={"slo": "20m", "stableFor": "1m"})
    s.kube.edit("Deployment", NS, "checkout", {"metadata": {"labels": {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}}, manager="kustomize-controller")
    await s.round()
    assert s.steps()["suspend-gitops"]["state"] == "Succeeded", s.steps()
    assert s.kube.obj("Kustomization", "flux-system", "apps")["spec"]["suspend"] is True
    assert s.status["gitops"]["revision"] == "main@sha1:111"
    s.healthy()
    await s.round(after=5)
    await s.watch(61)
    assert s.status["phase"] == inc.RESOLVED
    # Resolved, and still frozen and suspended: the broken revision is all Git has.
    for _ in range(3):
        await s.round(after=10)
    assert s.status["freeze"]["active"] is True
    assert s.kube.obj("Namespace", "", NS)["metadata"]["labels"]["missioncontrol.dev/frozen"] \
        == "true"
    assert s.kube.obj("Kustomization", "flux-system", "apps")["spec"]["suspend"] is True
    assert [e["type"] for e in s.status["timeline"]].count("FreezeHeld") == 1
    assert "revert:suspend-gitops" not in s.steps()

    # A fix is merged: the source moves on; the freeze lifts, then Flux resumes.
    s.kube.edit("GitRepository", "flux-system", "fleet", {"status": {"artifact": {
        "revision": "main@sha1:222"}}}, manager="source-controller")
    await s.round(after=10)
    assert s.steps()["revert:suspend-gitops"]["state"] == "Succeeded"
    assert s.kube.obj("Kustomization", "flux-system", "apps")["spec"]["suspend"] is False
    assert s.status["freeze"]["active"] is False
    assert "missioncontrol.dev/frozen" not in (
        s.kube.obj("Namespace", "", NS)["metadata"].get("labels") or {})
    assert s.status["gitops"]["releasedBecause"].endswith("to main@sha1:222")
    lift = next(i for i, w in enumerate(s.kube.writes) if w[1] == "Namespace")
    resume = max(i for i, w in enumerate(s.kube.writes) if w[1] == "Kustomization")
    assert lift < resume   # what Flux applies next must pass the freeze


async def test_a_person_lifting_the_held_freeze_resumes_argo_cd_as_it_was(receiver):
    application = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                   "metadata": {"name": "shop", "namespace": "argocd"},
                   "spec": {"syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
                   "status": {"sync": {"revision": "aaa"}}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    s = shop(receiver, GITOPS_STEPS, objects=(application, namespace),
             recovery={"slo": "20m", "stableFor": "1m"})
    s.kube.edit("Deployment", NS, "checkout", {"metadata": {"labels": {
        "argocd.argoproj.io/instance": "shop"}}}, manager="argocd-controller")
    await s.round()
    assert "automated" not in s.kube.obj("Application", "argocd", "shop")["spec"]["syncPolicy"]
    s.healthy()
    await s.round(after=5)
    await s.watch(61)
    await s.round(after=10)
    assert s.status["phase"] == inc.RESOLVED and s.status["freeze"]["active"] is True
    # Git has not moved; on call decides the freeze can go (kubectl mc lift-freeze).
    s.kube.edit("Incident", NS, "rb-001-checkout-r2", {"spec": {"liftFreeze": True}})
    await s.round(after=10)
    assert s.steps()["revert:suspend-gitops"]["state"] == "Succeeded"
    assert s.kube.obj("Application", "argocd", "shop")["spec"]["syncPolicy"]["automated"] == {
        "prune": True, "selfHeal": True}
    assert s.status["freeze"]["active"] is False
    assert s.status["gitops"]["releasedBecause"] == "lifted by hand (spec.liftFreeze)"
