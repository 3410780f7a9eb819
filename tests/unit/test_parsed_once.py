"""A guard pass parses the policy and its runbook once per version of them (guard.parsed),
not every pass: a pass over an unchanged policy parses nothing; an edit (the policy's
generation, the runbook's resourceVersion) is parsed at the next pass; a parse that fails is
not kept, so the error is reported again."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from missioncontrol import guard, model
from unit.fakekube import FakeKube

NS = "shop"
RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"


def runbook_body() -> dict:
    (path,) = RUNBOOKS.glob("rb-001-*.yaml")
    body = yaml.safe_load(path.read_text())
    body["metadata"].update(namespace=NS, uid="rb-uid")
    return {"kind": "Runbook", **body}


def policy_body() -> dict:
    return {"kind": "IncidentPolicy", "metadata": {
        "name": "checkout-guard", "namespace": NS, "uid": "policy-uid", "generation": 1},
        "spec": {"runbookRef": {"name": "rb-001"}, "mode": "enforce",
                 "targets": {"selector": {"matchLabels": {"app": "checkout"}}}}}


@pytest.fixture
def parses(monkeypatch) -> list[str]:
    """The names of the objects parsed, in order."""
    seen: list[str] = []
    for cls in (model.Policy, model.Runbook):
        original = cls.parse.__func__

        def counted(kind, body, _original=original, _cls=cls):
            seen.append(f"{_cls.__name__}/{body['metadata']['name']}")
            return _original(kind, body)

        monkeypatch.setattr(cls, "parse", classmethod(counted))
    return seen


async def test_an_unchanged_policy_and_runbook_are_parsed_once(parses) -> None:
    kube = FakeKube(runbook_body())
    ctx = guard.Context(kube, None, lambda: 0.0)
    policy = policy_body()
    first = await guard.resolve(ctx, policy)
    assert isinstance(first, guard.Resolved), first
    for _ in range(3):
        again = await guard.resolve(ctx, {**policy, "status": {"targets": []}})
        assert again.runbook is first.runbook and again.policy is first.policy
    assert parses == ["Policy/checkout-guard", "Runbook/rb-001"]

    # The policy edited: its generation moves, both are parsed again (the runbook as this
    # policy runs it depends on the policy's overrides).
    edited = copy.deepcopy(policy)
    edited["metadata"]["generation"] = 2
    edited["spec"]["mode"] = "dryRun"
    resolved = await guard.resolve(ctx, edited)
    assert resolved.policy.mode == "dryRun"
    assert parses[2:] == ["Policy/checkout-guard", "Runbook/rb-001"]

    # The runbook edited: a new resourceVersion.
    kube.edit("Runbook", NS, "rb-001", {"spec": {"title": "Failed release"}})
    resolved = await guard.resolve(ctx, edited)
    assert resolved.runbook.title == "Failed release"
    assert parses[4:] == ["Runbook/rb-001"]


async def test_a_policy_that_does_not_parse_is_reported_every_pass(parses) -> None:
    ctx = guard.Context(FakeKube(runbook_body()), None, lambda: 0.0)
    broken = policy_body()
    broken["spec"]["limits"] = {"cooldown": "2h", "window": "1h"}
    for _ in range(2):
        said = await guard.resolve(ctx, broken)
        assert (said.ok, said.reason) == (False, "InvalidSpec"), said
    assert parses == ["Policy/checkout-guard"] * 2


async def test_an_object_without_a_version_is_parsed_each_time(parses) -> None:
    ctx = guard.Context(FakeKube(runbook_body()), None, lambda: 0.0)
    unversioned = policy_body()
    del unversioned["metadata"]["uid"]
    for _ in range(2):
        assert isinstance(await guard.resolve(ctx, unversioned), guard.Resolved)
    assert parses == ["Policy/checkout-guard", "Runbook/rb-001"] * 2
