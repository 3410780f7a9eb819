"""Bad input the CRD schema may have let through (objects stored before its rules existed) is
refused by the model with the field named, or judged and reported, never used: durations out
of range, label selectors the API server cannot parse, unusable templates, route values that
cannot deliver, and hand-made incidents the operator cannot run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from missioncontrol import incident as inc
from missioncontrol import intake, model, references, templates
from missioncontrol.parse import ModelError

CATALOGUE = Path(__file__).resolve().parents[2] / "runbooks"


def rb001() -> dict:
    path = CATALOGUE / "rb-001-failed-production-deployment.yaml"
    return copy.deepcopy(yaml.safe_load(path.read_text()))


def policy(**spec: object) -> dict:
    return {"metadata": {"name": "p", "namespace": "shop"}, "spec": {
        "runbookRef": {"name": "rb-001"},
        "targets": {"selector": {"matchLabels": {"app": "checkout"}}}, **spec}}


# -- durations ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "value", "message"), [
    ("readiness.interval", "0s", "'0s' is out of range: use a duration from 1s to 1h"),
    ("readiness.interval", "10000000000000000000000000000h", "out of range"),
    ("readiness.gracePeriod", "2h", "'2h' is out of range: use a duration from 0s to 1h"),
])
def test_a_detector_duration_out_of_range_names_the_field(path: str, value: str,
                                                          message: str) -> None:
    body = rb001()
    detector, key = path.split(".")
    body["spec"]["trigger"]["anyOf"][0][detector][key] = value
    with pytest.raises(ModelError) as exc:
        model.Runbook.parse(body)
    assert exc.value.path == f"spec.trigger.anyOf[0].{path}"
    assert message in exc.value.problem


@pytest.mark.parametrize(("edit", "path"), [
    (lambda s: s["trigger"]["afterRelease"].update(window="0s"), "spec.trigger.afterRelease"),
    (lambda s: s["escalation"].update(repageAfter="0s"), "spec.escalation.repageAfter"),
    (lambda s: s["escalation"].update(pageWithin="0s"), "spec.escalation.pageWithin"),
    (lambda s: s["firstResponse"].update(within="0s"), "spec.firstResponse.within"),
    (lambda s: s["firstResponse"]["steps"][0].update(timeout="0s"),
     "spec.firstResponse.steps[0].timeout"),
    (lambda s: s["firstResponse"]["steps"][0]["freezeDeployments"].update(
        maxDuration="1000h"), "spec.firstResponse.steps[0].freezeDeployments.maxDuration"),
    (lambda s: s["escalation"]["rules"][0].update(after="200h"), "spec.escalation.rules[0]"),
])
def test_zero_and_absurd_runbook_durations_are_refused(edit, path: str) -> None:
    body = rb001()
    edit(body["spec"])
    with pytest.raises(ModelError, match="out of range") as exc:
        model.Runbook.parse(body)
    assert exc.value.path.startswith(path)


@pytest.mark.parametrize("spec", [
    {"stakeholderUpdates": {"cadence": {"SEV2": "0s"}}},
    {"overrides": {"conditions": [{"name": "readiness", "interval": "0s"}]}},
    {"limits": {"cooldown": "0s"}},
])
def test_zero_policy_durations_are_refused(spec: dict) -> None:
    runbook = model.Runbook.parse(rb001())
    with pytest.raises(ModelError, match="out of range"):
        model.effective_runbook(runbook, model.Policy.parse(policy(**spec)))


def test_durations_within_range_parse() -> None:
    p = model.Policy.parse(policy(stakeholderUpdates={"cadence": {"SEV2": "1s"}},
                                  limits={"cooldown": "1s", "window": "168h"}))
    assert p.cadence_for("SEV2") == 1.0 and p.limits.window == 7 * 86400


# -- label selectors ---------------------------------------------------------------------------
@pytest.mark.parametrize(("selector", "bad"), [
    ({"matchLabels": {"bad key!": "x"}}, "'bad key!' is not a label key"),
    ({"matchLabels": {"app": "has space"}}, "'has space' is not a label value"),
    ({"matchLabels": {"app": "ünïcode"}}, "'ünïcode' is not a label value"),
    ({"matchLabels": {"app": "x" * 64}}, "is not a label value"),
    ({"matchExpressions": [{"key": "-app", "operator": "Exists"}]}, "'-app' is not a label key"),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a b"]}]},
     "'a b' is not a label value"),
])
def test_a_selector_the_api_server_cannot_parse_is_a_selector_error(selector: dict,
                                                                    bad: str) -> None:
    body = policy()
    body["spec"]["targets"]["selector"] = selector
    with pytest.raises(model.SelectorError, match=bad):
        model.Policy.parse(body)


def test_valid_label_keys_and_values_parse() -> None:
    body = policy()
    body["spec"]["targets"]["selector"] = {
        "matchLabels": {"app.kubernetes.io/name": "check_out.v1", "tier": ""},
        "matchExpressions": [{"key": "example.com/team", "operator": "In", "values": ["a-1"]}]}
    assert model.Policy.parse(body).selector.to_query() == (
        "app.kubernetes.io/name=check_out.v1,tier=,example.com/team in (a-1)")


# -- templates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "problem"), [
    ('up{deployment="{{ .name }}"}', None),
    ('up{deployment="{{ .name "}', "unterminated or malformed template near '{{ .name"),
    ('up{deployment="{{ .service }}"}', "unknown template variables service"),
    ("sum(x) }}", "unterminated or malformed template near '}}'"),
])
def test_template_problems(text: str, problem: str | None) -> None:
    found = templates.problem(text)
    assert (found is None) if problem is None else (problem in found)


def test_every_templated_text_of_a_runbook_is_checked() -> None:
    body = rb001()
    body["spec"]["firstResponse"]["steps"][1]["assessBlastRadius"]["dashboards"][0][
        "query"] = "sum(x{a='{{ .name '})"
    runbook = model.Runbook.parse(body)
    assert templates.first_problem(runbook.templated()).startswith(
        "step blast-radius dashboard error rate by endpoint: unterminated")


# -- route values ------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "value", "problem"), [
    ("Webhook", "https://hooks.example.com/x", None),
    ("Slack", "not a url", "is not an http(s) URL: a Slack route posts to the URL"),
    ("Webhook", "ftp://x", "is not an http(s) URL"),
    ("PagerDuty", "R0UT1NGKEY", None),
    ("PagerDuty", "  ", "is empty"),
])
def test_a_route_value_must_suit_its_type(kind: str, value: str, problem: str | None) -> None:
    route = model.Route(kind, model.SecretRef("routes", "url"))
    found = references.value_problem(route, value)
    assert (found is None) if problem is None else (problem in found)


# -- hand-made incidents -----------------------------------------------------------------------
def facts(**changes: object) -> intake.Facts:
    spec = {"runbook": {"name": "rb-001", "id": "RB-001"}, "severity": "SEV1", "owner": "ada",
            "summary": "checkout is down", "mode": "enforce", "policy": "checkout-guard",
            "target": {"kind": "Deployment", "namespace": "shop", "name": "checkout"}}
    base = {"namespace": "shop", "spec": spec, "runbook": rb001(), "policy": policy(),
            "deployment": {"metadata": {"name": "checkout", "annotations": {
                "deployment.kubernetes.io/revision": "4",
                "missioncontrol.dev/last-healthy-revision": "3 (checkout-abc)"}}}}
    base.update(changes)
    return intake.Facts(**base)


def test_a_declared_incident_is_taken_in_with_its_runbook_and_last_healthy_release() -> None:
    f = facts()
    verdict = intake.judge(f)
    assert (verdict.accepted, verdict.reason) == (True, "Accepted")
    status = intake.first_status(f, verdict, now=100.0)
    assert status.phase == inc.DETECTED and status.open
    assert status.mode == "enforce" and status.severity == "SEV1"
    assert status.reason == "declared by hand by ada: checkout is down"
    assert [s.id for s in status.steps] == ["freeze", "blast-radius", "rollback", "page",
                                            "suspend-gitops"]
    assert status.slo.deadline == 100.0 + 20 * 60
    assert status.rollback == inc.RollbackRecord(from_revision=4, to_revision=3,
                                                 to_replica_set="checkout-abc")
    ready = status.condition("Ready")
    assert (ready.status, ready.reason) == ("True", "Accepted")


def spec_with(**changes: object) -> dict:
    spec = copy.deepcopy(facts().spec)
    spec.update(changes)
    return spec


@pytest.mark.parametrize(("changes", "reason", "says"), [
    ({"deployment": None}, "TargetNotFound", "Deployment shop/checkout does not exist"),
    ({"runbook": None}, "RunbookNotFound", "Runbook rb-001 does not exist in shop"),
    ({"spec": spec_with(target={"namespace": "kube-system", "name": "coredns"})},
     "TargetOutsideNamespace", "an incident acts only in its own namespace"),
    ({"namespace": "kube-system",
      "spec": spec_with(target={"namespace": "kube-system", "name": "coredns"})},
     "ProtectedNamespace", "kube-system belongs to the cluster itself"),
    ({"spec": spec_with(runbook={"name": "rb-001", "id": "RB-002"})}, "RunbookMismatch",
     "spec.runbook.id is RB-002 but Runbook rb-001 is RB-001"),
    ({"policy": None}, "PolicyNotFound", "IncidentPolicy checkout-guard does not exist"),
    ({"spec": spec_with(policy=None)}, "PolicyRequired", "spec.policy is not set"),
])
def test_a_declared_incident_that_cannot_run_is_rejected_and_says_why(
        changes: dict, reason: str, says: str) -> None:
    f = facts(**changes)
    verdict = intake.judge(f)
    assert (verdict.accepted, verdict.reason) == (False, reason)
    assert says in verdict.message
    status = intake.first_status(f, verdict, now=100.0)
    assert status.phase == inc.REJECTED and not status.open
    assert status.steps == () and status.freeze is None
    ready = status.condition("Ready")
    assert (ready.status, ready.reason, ready.message) == ("False", reason, verdict.message)
    assert status.timeline[-1].type == "Rejected"


def test_incidents_opened_by_a_policy_are_not_taken_in_by_hand() -> None:
    assert intake.opened_by_policy({"metadata": {"labels": {"missioncontrol.dev/policy": "p"}}})
    assert not intake.opened_by_policy({"metadata": {"labels": {"app": "x"}}})
