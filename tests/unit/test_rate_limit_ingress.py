"""rateLimit with an Ingress named: the ConfigMap key and ingress-nginx's limit-rps annotation
set together, the annotation's earlier value (or its absence) recorded, restored by the undo
unless a person changed it since; dryRun plans both and writes nothing; a bad `ingress` or a
rate ingress-nginx cannot take is refused by the model, naming the field."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from fakekube import FakeKube

from missioncontrol import incident as inc
from missioncontrol.actions import config, ingress
from missioncontrol.model import RateLimit, Runbook, Step
from missioncontrol.parse import ModelError

NS = "shop"
LIMIT = ingress.LIMIT_RPS


def cluster(annotations: dict[str, str] | None = None) -> FakeKube:
    return FakeKube(
        {"kind": "ConfigMap", "metadata": {"name": "webhook-ingress", "namespace": NS},
         "data": {"retry-rate-limit": ""}},
        {"kind": "Ingress", "metadata": {"name": "webhooks", "namespace": NS,
                                         "annotations": dict(annotations or {})},
         "spec": {"rules": [{"host": "hooks.example"}]}})


def limit(kube: FakeKube, name: str = "webhooks") -> str | None:
    return (kube.obj("Ingress", NS, name)["metadata"].get("annotations") or {}).get(LIMIT)


def run(kube: FakeKube, *, dry_run: bool = False, name: str = "webhooks"):
    step = Step("rate-limit", "rateLimit",
                RateLimit("webhook-ingress", "retry-rate-limit", "50", name))
    ctx = SimpleNamespace(kube=kube, dry_run=dry_run, target=(NS, "webhooks"))
    return asyncio.run(config.rate_limit(ctx, step))


def undo(kube: FakeKube, result, *, dry_run: bool = False):
    record = inc.StepRecord("rate-limit", "rateLimit", inc.SUCCEEDED, changes=result.changes)
    return asyncio.run(config.RATE_LIMIT.undo(kube=kube, record=record, dry_run=dry_run))


def test_the_annotation_is_set_with_the_key_and_its_absence_restored() -> None:
    kube = cluster()
    result = run(kube)
    assert result.state == inc.SUCCEEDED, result.message
    assert result.message == (f"set retry-rate-limit=50 in ConfigMap webhook-ingress and "
                              f"{LIMIT}=50 on Ingress webhooks")
    assert limit(kube) == "50"
    assert kube.obj("ConfigMap", NS, "webhook-ingress")["data"]["retry-rate-limit"] == "50"
    assert {(c.kind, c.name, c.field, c.from_, c.to) for c in result.changes} == {
        ("ConfigMap", "webhook-ingress", "data[retry-rate-limit]", "", "50"),
        ("Ingress", "webhooks", f"metadata.annotations[{LIMIT}]", None, "50")}
    # Run again (a retry, a restart): nothing more to change.
    assert run(kube).changes == ()

    restored = undo(kube, result)
    assert restored.state == inc.SUCCEEDED, restored.message
    assert limit(kube) is None and LIMIT not in kube.obj("Ingress", NS, "webhooks")[
        "metadata"]["annotations"]
    assert kube.obj("ConfigMap", NS, "webhook-ingress")["data"]["retry-rate-limit"] == ""
    assert f"{LIMIT} of Ingress webhooks to unset" in restored.message


def test_an_earlier_limit_is_recorded_and_put_back() -> None:
    kube = cluster({LIMIT: "200", "other": "kept"})
    result = run(kube)
    (annotation,) = [c for c in result.changes if c.kind == "Ingress"]
    assert (annotation.from_, annotation.to) == ("200", "50")
    undo(kube, result)
    assert kube.obj("Ingress", NS, "webhooks")["metadata"]["annotations"] == {
        LIMIT: "200", "other": "kept"}


def test_a_limit_a_person_changed_since_is_left_alone_and_said() -> None:
    kube = cluster()
    result = run(kube)
    kube.edit("Ingress", NS, "webhooks", {"metadata": {"annotations": {LIMIT: "10"}}},
              manager="kubectl-annotate")
    restored = undo(kube, result)
    assert restored.state == inc.SKIPPED
    assert (f"Skipped: changed by kubectl-annotate since: {LIMIT} of Ingress webhooks is "
            f"'10', not '50' as we set it; left as it is") in restored.message
    assert limit(kube) == "10"
    # The ConfigMap key, unchanged by anyone, is restored all the same.
    assert kube.obj("ConfigMap", NS, "webhook-ingress")["data"]["retry-rate-limit"] == ""


def test_dry_run_plans_both_and_writes_nothing() -> None:
    kube = cluster()
    result = run(kube, dry_run=True)
    assert result.state == inc.PLANNED
    assert result.message == (f"dry run: would set retry-rate-limit=50 in ConfigMap "
                              f"webhook-ingress and {LIMIT}=50 on Ingress webhooks")
    assert {c.kind for c in result.changes} == {"ConfigMap", "Ingress"}
    assert kube.writes == [] and limit(kube) is None
    planned = undo(kube, result, dry_run=True)
    assert planned.state == inc.PLANNED and kube.writes == []


def test_a_missing_ingress_fails_the_step_and_changes_nothing() -> None:
    kube = cluster()
    result = run(kube, name="nowhere")
    assert result.state == inc.STEP_FAILED
    assert result.message == "Ingress shop/nowhere does not exist"
    assert kube.writes == []


def test_a_gone_ingress_is_skipped_by_the_undo() -> None:
    kube = cluster()
    result = run(kube)
    del kube.objects[("Ingress", NS, "webhooks")]
    restored = undo(kube, result)
    assert restored.state == inc.SKIPPED and "Ingress webhooks is gone" in restored.message


RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
AT = "spec.firstResponse.steps[0].rateLimit"


def parsed(**params: object) -> RateLimit:
    """The catalogue's RB-003 with its rateLimit step's parameters changed."""
    (path,) = RUNBOOKS.glob("rb-003-*.yaml")
    body = yaml.safe_load(path.read_text())
    step = body["spec"]["firstResponse"]["steps"][0]
    step["rateLimit"].update(params)
    return Runbook.parse(body).step(step["id"]).params


def test_the_model_reads_ingress_and_refuses_what_ingress_nginx_cannot_take() -> None:
    assert parsed(requestsPerSecond=50, ingress="webhooks") == RateLimit(
        "webhook-ingress", "retry-rate-limit", "50", "webhooks")
    assert parsed(requestsPerSecond=0.5).ingress is None   # the key alone takes any rate
    # A large whole rate is written out in full: ingress-nginx reads "2e+06" as no limit.
    assert parsed(requestsPerSecond=2_000_000, ingress="webhooks").value == "2000000"
    with pytest.raises(ModelError) as refused:
        parsed(requestsPerSecond=2.5, ingress="webhooks")
    assert str(refused.value) == (
        f"{AT}.requestsPerSecond: ingress-nginx's limit-rps takes whole requests per second, "
        f"got 2.5: round it, or leave out ingress")
    for bad in ("Webhooks", "-x", "a_b", "", "x" * 254):
        with pytest.raises(ModelError) as refused:
            parsed(requestsPerSecond=5, ingress=bad)
        assert refused.value.path == f"{AT}.ingress", bad
