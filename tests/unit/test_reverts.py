"""Undo on resolution: the plan (pure), and whole undo rounds of the engine on a FakeKube,
the operator "restarted" at every status write in the middle of them."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from types import SimpleNamespace

import pytest

from missioncontrol import incident as inc
from missioncontrol import reverts
from missioncontrol.actions.base import changed_by
from missioncontrol.engine import Engine, Run
from missioncontrol.incident import Change, StepRecord
from missioncontrol.records import from_dict, to_dict

T0 = 1_700_000_000.0
NS = "shop"


def changed(step_id: str, action: str, *changes: Change, state: str = inc.SUCCEEDED,
            revert_on: tuple[str, ...] = ("Resolved",)) -> StepRecord:
    return StepRecord(step_id, action, state, T0, T0 + 1, "done", changes, 1, revert_on)


FLAG = Change("ConfigMap", "flags", "data[safe-mode]", "off", "on", NS)
NEW_KEY = Change("ConfigMap", "flags", "data[reads]", None, "replica", NS)
WORKER = Change("Deployment", "worker", "spec.replicas", "3", "0", NS)


def resolved(*steps: StepRecord) -> inc.IncidentStatus:
    status = inc.opened(now=T0, mode="enforce", slo=1200.0, evidence=(), steps=(),
                        reason="readiness failed")
    status = inc.move(status, T0 + 60, inc.MITIGATED, "healthy")
    return inc.move(replace(status, steps=steps), T0 + 120,
                    inc.RESOLVED, "stable")


# -- the plan -----------------------------------------------------------------------------------
def test_reverts_are_planned_newest_step_first_once_each() -> None:
    status = resolved(changed("freeze", "freezeDeployments", FLAG, revert_on=()),
                      changed("flags", "setFlags", FLAG),
                      changed("nothing", "setFlags"),                      # changed nothing
                      changed("failed", "setFlags", FLAG, state=inc.STEP_FAILED),
                      changed("on-close", "setFlags", FLAG, revert_on=("Closed",)),
                      changed("consumers", "pauseConsumers", WORKER))
    planned = reverts.plan(status, T0 + 120, inc.RESOLVED)
    assert [r.id for r in reverts.pending(planned)] == ["revert:consumers", "revert:flags"]
    assert planned.timeline[-1].message == "resolved: undoing consumers, flags, in that order"
    assert reverts.plan(planned, T0 + 130, inc.RESOLVED) == planned
    closed = reverts.plan(planned, T0 + 200, inc.CLOSED)
    assert [r.id for r in reverts.pending(closed)] == ["revert:consumers", "revert:flags",
                                                       "revert:on-close"]


def test_a_dry_run_plans_its_undo_too() -> None:
    status = resolved(changed("flags", "setFlags", FLAG, state=inc.PLANNED))
    assert reverts.owed(reverts.plan(status, T0, inc.RESOLVED))


def test_who_changed_a_field_comes_from_managed_fields() -> None:
    body = {"metadata": {"managedFields": [
        {"manager": "missionctl", "time": "2026-01-01T00:00:00Z",
         "fieldsV1": {"f:data": {"f:reads": {}}}},
        {"manager": "kubectl-edit", "time": "2026-01-01T00:01:00Z",
         "fieldsV1": {"f:data": {"f:safe-mode": {}}}},
        {"manager": "old", "time": "2025-01-01T00:00:00Z",
         "fieldsV1": {"f:data": {"f:safe-mode": {}}}}]}}
    assert changed_by(body, ("f:data", "f:safe-mode")) == "kubectl-edit"
    assert changed_by(body, ("f:data", "f:other")) == "someone else"
    assert changed_by({"metadata": {}}, ("f:spec", "f:replicas")) == "someone else"


# -- the engine, on a FakeKube ------------------------------------------------------------------
class Crash(Exception):
    """The operator process dies here."""


class FakeKube:
    """ConfigMaps, Deployments and the Incident's status in memory; counts every change."""

    def __init__(self, *, crash_at: int | None = None) -> None:
        self.config = {"flags": {"safe-mode": "on", "reads": "replica", "theme": "dark"}}
        self.replicas = {"worker": 0}
        self.effects: list[str] = []
        self.writes = 0
        self.crash_at = crash_at
        self.status: dict = {}
        self.core = SimpleNamespace(
            read_namespaced_config_map=lambda name, ns: {
                "metadata": {"name": name}, "data": dict(self.config[name])},
            patch_namespaced_config_map=self._patch_config)
        self.apps = SimpleNamespace(
            read_namespaced_deployment=lambda name, ns: {
                "metadata": {"name": name}, "spec": {"replicas": self.replicas[name]}},
            patch_namespaced_deployment_scale=self._scale)

    def _patch_config(self, name: str, ns: str, body: dict) -> None:
        for key, value in body["data"].items():
            self.effects.append(f"{name}[{key}]={value}")
            if value is None:
                self.config[name].pop(key, None)
            else:
                self.config[name][key] = value

    def _scale(self, name: str, ns: str, body: dict) -> None:
        self.effects.append(f"{name}={body['spec']['replicas']}")
        self.replicas[name] = body["spec"]["replicas"]

    async def json(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    async def call(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    async def patiently(self, attempt, **_):
        return await attempt()

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        self.writes += 1
        if self.writes == self.crash_at:
            raise Crash(f"write {self.writes}")
        self.status = copy.deepcopy(status)
        return {"status": status}


def run_for(kube: FakeKube, status: dict) -> Run:
    engine = Engine(kube=kube, prometheus=None, clock=lambda: T0 + 300,
                    post_event=lambda *_: None)
    body = {"metadata": {"name": "inc-1", "namespace": NS},
            "spec": {"target": {"kind": "Deployment", "namespace": NS, "name": "checkout"}},
            "status": status}
    return Run(engine, body)


def planned_status() -> dict:
    status = resolved(changed("flags", "setFlags", FLAG, NEW_KEY),
                      changed("consumers", "pauseConsumers", WORKER))
    return to_dict(reverts.plan(status, T0 + 120, inc.RESOLVED))


def test_undo_puts_each_change_back_in_reverse_order() -> None:
    kube = FakeKube()
    asyncio.run(run_for(kube, planned_status()).revert())
    assert kube.effects == ["worker=3", "flags[safe-mode]=off", "flags[reads]=None"]
    assert kube.config["flags"] == {"safe-mode": "off", "theme": "dark"}
    status = from_dict(inc.IncidentStatus, kube.status)
    assert [(r.id, r.state) for r in status.steps if reverts.is_revert(r)] == [
        ("revert:consumers", inc.SUCCEEDED), ("revert:flags", inc.SUCCEEDED)]
    assert status.step("revert:consumers").changes == (
        Change("Deployment", "worker", "spec.replicas", "0", "3", NS),)
    assert [e.type for e in status.timeline[-2:]] == ["Reverted", "Reverted"]


def test_a_value_changed_since_is_left_alone_and_reported() -> None:
    kube = FakeKube()
    kube.config["flags"]["safe-mode"] = "forced"
    kube.replicas["worker"] = 1
    asyncio.run(run_for(kube, planned_status()).revert())
    assert kube.effects == ["flags[reads]=None"]
    status = from_dict(inc.IncidentStatus, kube.status)
    assert status.step("revert:consumers").state == inc.SKIPPED
    assert status.step("revert:consumers").message.startswith(
        "Skipped: changed by someone else since: worker runs 1 replicas, not 0 as we set it")
    assert status.step("revert:flags").state == inc.SKIPPED
    assert "(restored: data[reads] of ConfigMap flags to unset)" in \
        status.step("revert:flags").message
    assert [e.type for e in status.timeline[-2:]] == ["RevertSkipped", "RevertSkipped"]


def test_a_dry_run_undo_changes_nothing() -> None:
    kube = FakeKube()
    status = planned_status()
    status["mode"] = "dryRun"
    asyncio.run(run_for(kube, status).revert())
    assert kube.effects == []
    done = from_dict(inc.IncidentStatus, kube.status)
    assert done.step("revert:flags").state == inc.PLANNED
    assert done.step("revert:flags").message == (
        "dry run: would restore data[safe-mode] of ConfigMap flags to 'off'; "
        "data[reads] of ConfigMap flags to unset")


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4])
def test_a_restart_in_the_middle_of_an_undo_neither_repeats_nor_skips_one(crash_at) -> None:
    # Writes: 1 consumers Running, 2 consumers done, 3 flags Running, 4 flags done. The
    # operator dies at that write; a new one starts from the status last written.
    kube = FakeKube(crash_at=crash_at)
    kube.status = planned_status()
    with pytest.raises(Crash):
        asyncio.run(run_for(kube, kube.status).revert())
    kube.crash_at = None
    asyncio.run(run_for(kube, kube.status).revert())
    assert kube.effects == ["worker=3", "flags[safe-mode]=off", "flags[reads]=None"]
    status = from_dict(inc.IncidentStatus, kube.status)
    assert [(r.id, r.state) for r in status.steps if reverts.is_revert(r)] == [
        ("revert:consumers", inc.SUCCEEDED), ("revert:flags", inc.SUCCEEDED)]
    assert not reverts.owed(status)


# -- verification -------------------------------------------------------------------------------
def step(action: str = "setFlags", **kw):
    from missioncontrol.model import Step
    return Step(id="flags", action=action, params=None, **kw)


def test_a_step_without_effect_within_verify_within_is_judged_so() -> None:
    from missioncontrol.actions import ACTIONS
    flags = ACTIONS["setFlags"]
    record = changed("flags", "setFlags", FLAG)   # finished at T0 + 1
    status = inc.opened(now=T0, mode="enforce", slo=1200.0, evidence=(), steps=(), reason="x")
    judge = lambda s, st, now: flags.no_effect(step=st, record=record, status=s, now=now)  # noqa: E731
    assert judge(status, step(), T0 + 1000) is None                      # not asked to judge
    assert judge(status, step(verify_within=30.0), T0 + 31) is None      # not yet due
    assert judge(status, step(verify_within=30.0), T0 + 32) == (
        "step flags (setFlags) had no effect: not mitigated within 0.5m of it")
    mitigated = inc.move(status, T0 + 20, inc.MITIGATED, "healthy")
    assert judge(mitigated, step(verify_within=30.0), T0 + 100) is None  # it worked
    # A step that changed nothing, or a read, is never judged.
    assert flags.no_effect(step=step(verify_within=30.0), record=changed("flags", "setFlags"),
                           status=status, now=T0 + 100) is None
    assert ACTIONS["notify"].no_effect(step=step("notify", verify_within=30.0), record=record,
                                       status=status, now=T0 + 100) is None


def test_on_no_effect_revert_undoes_that_step_at_once_and_once() -> None:
    status = resolved(changed("flags", "setFlags", FLAG), changed("other", "setFlags", FLAG))
    once = reverts.plan_one(status, T0 + 60, "flags", "no effect")
    assert [r.id for r in reverts.pending(once)] == ["revert:flags"]
    assert reverts.plan_one(once, T0 + 70, "flags", "no effect") == once
    # On resolution later, the step already undone is not undone again.
    assert [r.id for r in reverts.pending(reverts.plan(once, T0 + 90, inc.RESOLVED))] == [
        "revert:flags", "revert:other"]
