"""The typed model: the catalogue parses, bad bodies name the field, policies fill in their
defaults and apply their overrides to the runbook they run."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from missioncontrol import model
from missioncontrol.actions import action
from missioncontrol.parse import ModelError, Reader

CATALOGUE = Path(__file__).resolve().parents[2] / "runbooks"


def load(name: str) -> dict:
    """A catalogue document by the start of its file name (rb-001, examples/checkout-policy)."""
    (path,) = CATALOGUE.glob(f"{name}*.yaml")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return next(d for d in docs if d["kind"] in ("Runbook", "IncidentPolicy"))


def runbook(name: str) -> model.Runbook:
    return model.Runbook.parse(load(name))


# -- the catalogue -----------------------------------------------------------------------------
def test_rb001_parses() -> None:
    rb = runbook("rb-001")
    assert (rb.id, rb.title, rb.severity, rb.name) == (
        "RB-001", "Failed Production Deployment", "SEV2", "rb-001")
    assert rb.trigger.after_release_window == 30 * 60
    readiness, error_rate = rb.trigger.conditions
    assert readiness.detector == model.Readiness(3, 10.0, 30.0)
    assert isinstance(error_rate.detector, model.Threshold)
    assert error_rate.detector.above == 0.05 and error_rate.detector.below is None
    assert error_rate.detector.consecutive_failures == 3
    assert error_rate.interval == 10.0
    assert [(s.id, s.action) for s in rb.steps] == [
        ("freeze", "freezeDeployments"), ("blast-radius", "assessBlastRadius"),
        ("rollback", "rollback"), ("page", "notify"), ("suspend-gitops", "suspendGitOps")]
    assert rb.step("suspend-gitops").params == model.SuspendGitOps("argocd")
    assert rb.step("freeze").params == model.FreezeDeployments("Namespace", 7200.0)
    assert rb.step("rollback").params == model.Rollback("LastHealthy", 300.0)
    assert not action(rb.step("rollback")).read_only
    assert action(rb.step("blast-radius")).read_only
    blast = rb.step("blast-radius").params
    assert [d.name for d in blast.dashboards] == ["error rate by endpoint"]
    assert blast.synthetic_checks[0].expect_status == 200
    assert rb.escalation.page == ("release-owner", "oncall-backend")
    assert rb.escalation.rules == (
        model.EscalationRule(20 * 60.0, ("incident-commander",), "NotRecovered"),)
    assert (rb.recovery.slo, rb.recovery.stable_for) == (20 * 60, 120)
    assert rb.automation.automatic_rollback and rb.automation.rollback_after_failures == 3


def test_rb002_parses() -> None:
    rb = runbook("rb-002")
    assert rb.trigger.after_release_window is None
    (p95,) = rb.trigger.conditions
    assert p95.detector.sustain == 600 and p95.detector.above == 0.25
    assert p95.detector.consecutive_failures is None     # `for` alone decides
    assert rb.step("slow-queries").params == model.IdentifySlowQueries(
        model.SecretRef("orders-db", "dsn"), 10)
    assert rb.step("read-replicas").params == model.ConfigValue(
        "db-routing", "non-critical-reads", "replica")
    assert rb.step("safe-mode-cache").params == model.SetFlags(
        "feature-flags", (("safe-mode-cache", "on"),))
    assert rb.escalation.rules == (model.EscalationRule(1800.0, ("platform-lead",),
                                                        "NotMitigated"),)
    assert rb.recovery.slo == 45 * 60
    assert [c.check for c in rb.automation.scheduled_checks] == [
        "QueryPlanDiff", "IndexRecommendations"]


def test_rb003_parses() -> None:
    rb = runbook("rb-003")
    retry, duplicates = rb.trigger.conditions
    assert retry.detector == model.RisesSharply(retry.detector.query, 300.0, 3.0, 500.0, 30.0)
    assert duplicates.detector.min_increase == 100
    assert rb.step("rate-limit").params == model.RateLimit(
        "webhook-ingress", "retry-rate-limit", "50")
    assert rb.step("pause-consumers").params.selector.match_labels == (
        ("missioncontrol.dev/consumer-tier", "non-critical"),)
    assert rb.step("replay").params == model.ReplaySample(
        "staging", "registry.example/webhook-replayer:1", 100,
        sample_from=("webhook-ingress-sample", "events"))
    assert rb.escalation.page == ("integration-owner", "incident-commander")
    assert rb.recovery.stable == model.Stable(rb.recovery.stable.query, 60.0, 1.0, 100.0)
    assert rb.recovery.stable.promql().startswith(f"({rb.recovery.stable.query}) <= 100 and on")
    assert rb.escalation.rules == ()
    assert rb.automation.adaptive_backoff == (1.0, 300.0)
    assert rb.automation.dead_letter_topic == "webhooks-dead-letter"
    assert rb.automation.contract_config_map == "webhook-ingress"
    assert rb.automation.backoff_interval == 30.0
    assert not rb.automation.automatic_rollback


# -- bad bodies: the error names the field ------------------------------------------------------
DELETE = object()


def edit(body: dict, path: str, value: Any) -> None:
    """Set (or with DELETE remove) the field at a path like `spec.anyOf[0].name`."""
    keys: list[Any] = []
    for part in path.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", part)
        keys += [name, *(int(i) for i in indexes if i)]
    *parents, last = keys
    for key in parents:
        body = body[key]
    if value is DELETE:
        del body[last]
    else:
        body[last] = value


BAD = [
    # (catalogue runbook, field to edit, new value, the path the error names)
    ("rb-001", "spec.trigger.anyOf[0].threshold", {"query": "up", "above": 1},
     "spec.trigger.anyOf[0]"),
    ("rb-001", "spec.trigger.anyOf[0].readiness", DELETE, "spec.trigger.anyOf[0]"),
    ("rb-001", "spec.trigger.anyOf[1].threshold.below", 0.01, "spec.trigger.anyOf[1].threshold"),
    ("rb-001", "spec.trigger.anyOf[1].threshold.query", DELETE,
     "spec.trigger.anyOf[1].threshold.query"),
    ("rb-001", "spec.trigger.anyOf[0].readiness.consecutiveFailures", 0,
     "spec.trigger.anyOf[0].readiness.consecutiveFailures"),
    ("rb-001", "spec.trigger.anyOf[0].readiness.interval", "10 seconds",
     "spec.trigger.anyOf[0].readiness.interval"),
    ("rb-001", "spec.trigger.anyOf", [], "spec.trigger.anyOf"),
    ("rb-001", "spec.trigger.anyOf[1].name", "readiness", "spec.trigger.anyOf"),
    ("rb-001", "spec.trigger", DELETE, "spec.trigger"),
    ("rb-003", "spec.trigger.anyOf[0].risesSharply.factor", 1,
     "spec.trigger.anyOf[0].risesSharply.factor"),
    ("rb-001", "spec.firstResponse.steps[1].action", "reboot",
     "spec.firstResponse.steps[1].action"),
    ("rb-001", "spec.firstResponse.steps[1].rollback", {}, "spec.firstResponse.steps[1]"),
    ("rb-001", "spec.firstResponse.steps[1].assessBlastRadius", {},
     "spec.firstResponse.steps[1].assessBlastRadius"),
    ("rb-001", "spec.firstResponse.steps[2].rollback", DELETE,
     "spec.firstResponse.steps[2].rollback"),
    ("rb-001", "spec.firstResponse.steps[2].rollback.to", "Yesterday",
     "spec.firstResponse.steps[2].rollback.to"),
    ("rb-001", "spec.firstResponse.steps[3].notify.roles", ["ceo"],
     "spec.firstResponse.steps[3].notify.roles"),
    ("rb-001", "spec.firstResponse.steps[1].id", "freeze", "spec.firstResponse.steps"),
    ("rb-002", "spec.firstResponse.steps[2].setFlags.flags", {},
     "spec.firstResponse.steps[2].setFlags.flags"),
    ("rb-003", "spec.firstResponse.steps[0].rateLimit.requestsPerSecond", 0,
     "spec.firstResponse.steps[0].rateLimit.requestsPerSecond"),
    ("rb-001", "spec.recovery.stableFor", "20m", "spec.recovery.stableFor"),
    ("rb-001", "spec.recovery.slo", DELETE, "spec.recovery.slo"),
    ("rb-002", "spec.escalation.rules", [{"after": "30m", "page": ["platform-lead"]},
                                         {"after": "10m", "page": ["incident-commander"]}],
     "spec.escalation.rules"),
    ("rb-001", "spec.escalation.page", ["everyone"], "spec.escalation.page"),
    ("rb-001", "spec.severity", "SEV5", "spec.severity"),
    ("rb-001", "spec.title", "", "spec.title"),
]


@pytest.mark.parametrize(("name", "field", "value", "path"), BAD,
                         ids=[f"{b[0]}:{b[1]}" for b in BAD])
def test_bad_runbook_names_the_field(name: str, field: str, value: Any, path: str) -> None:
    body = copy.deepcopy(load(name))
    edit(body, field, value)
    with pytest.raises(ModelError) as caught:
        model.Runbook.parse(body)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


def test_spec_that_is_not_an_object() -> None:
    with pytest.raises(ModelError, match=r"^spec: expected an object, got list"):
        model.Runbook.parse({"metadata": {"name": "x"}, "spec": []})


# -- IncidentPolicy ---------------------------------------------------------------------------
MINIMAL_POLICY = {
    "metadata": {"name": "guard", "namespace": "shop"},
    "spec": {"runbookRef": {"name": "rb-001"},
             "targets": {"selector": {"matchLabels": {"app": "checkout"}}}},
}


def test_policy_defaults() -> None:
    policy = model.Policy.parse(MINIMAL_POLICY)
    assert policy.mode == "dryRun" and policy.dry_run
    assert policy.limits == model.Limits(cooldown=600.0, max_remediations=3, window=3600.0)
    assert [policy.cadence_for(s) for s in model.SEVERITIES] == [900, 1800, 3600, 14400]
    assert policy.severity is None and policy.namespace_selector is None
    assert policy.overrides == () and policy.recovery == {}
    assert policy.channel_prefix == "inc" and policy.channel_route is None
    assert policy.updates_route is None and policy.ownership is None


def test_example_policy_parses() -> None:
    policy = model.Policy.parse(load("examples/checkout-policy"))
    assert policy.runbook == "rb-001" and policy.dry_run and policy.severity == "SEV2"
    assert policy.limits == model.Limits(900.0, 2, 7200.0)
    assert policy.cadence_for("SEV3") == 3600                      # not given: the default
    assert policy.updates_route == model.Route("Slack", model.SecretRef("checkout-slack", "url"))
    assert policy.ownership == "checkout"
    effective = model.effective_runbook(runbook("rb-001"), policy)
    assert effective.trigger.condition("error-rate").detector.above == 0.02
    assert effective.trigger.after_release_window == 45 * 60


def test_policy_cooldown_longer_than_window() -> None:
    body = copy.deepcopy(MINIMAL_POLICY)
    body["spec"]["limits"] = {"cooldown": "2h", "window": "1h"}
    with pytest.raises(ModelError, match=r"^spec\.limits\.cooldown: "):
        model.Policy.parse(body)


def test_policy_without_runbook_ref() -> None:
    body = copy.deepcopy(MINIMAL_POLICY)
    del body["spec"]["runbookRef"]
    with pytest.raises(ModelError, match=r"^spec\.runbookRef: required"):
        model.Policy.parse(body)


# -- effective_runbook ------------------------------------------------------------------------
def policy_with(**overrides: Any) -> model.Policy:
    body = copy.deepcopy(MINIMAL_POLICY)
    body["spec"]["overrides"] = overrides
    return model.Policy.parse(body)


def test_overrides_apply_to_readiness_and_threshold() -> None:
    rb = runbook("rb-001")
    policy = policy_with(conditions=[
        {"name": "readiness", "consecutiveFailures": 5, "interval": "20s"},
        {"name": "error-rate", "above": 0.02}],
        recovery={"slo": "15m", "stableFor": "3m"}, afterReleaseWindow="45m", pageWithin="2m")
    effective = model.effective_runbook(rb, policy)
    readiness = effective.trigger.condition("readiness").detector
    assert readiness == model.Readiness(5, 20.0, 30.0)                 # grace kept
    error_rate = effective.trigger.condition("error-rate").detector
    assert (error_rate.above, error_rate.consecutive_failures) == (0.02, 3)
    assert (effective.recovery.slo, effective.recovery.stable_for) == (900, 180)
    assert effective.trigger.after_release_window == 45 * 60
    assert effective.escalation.page_within == 120
    assert rb.trigger.condition("readiness").detector.consecutive_failures == 3   # untouched


def test_override_switches_threshold_direction() -> None:
    effective = model.effective_runbook(
        runbook("rb-002"), policy_with(conditions=[{"name": "p95-latency", "below": 0.1}]))
    detector = effective.trigger.condition("p95-latency").detector
    assert (detector.above, detector.below, detector.sustain) == (None, 0.1, 600)


def test_policy_severity_overrides_runbook() -> None:
    body = copy.deepcopy(MINIMAL_POLICY)
    body["spec"]["severity"] = "SEV1"
    assert model.effective_runbook(runbook("rb-001"), model.Policy.parse(body)).severity == "SEV1"


def test_override_of_a_missing_condition_is_rejected() -> None:
    policy = policy_with(conditions=[{"name": "readiness", "interval": "5s"},
                                     {"name": "latency", "above": 1}])
    with pytest.raises(ModelError) as caught:
        model.effective_runbook(runbook("rb-001"), policy)
    assert caught.value.path == "spec.overrides.conditions[1].name"
    assert "'latency'" in str(caught.value) and "readiness, error-rate" in str(caught.value)


def test_recovery_override_must_keep_stable_for_below_slo() -> None:
    with pytest.raises(ModelError, match=r"^spec\.overrides\.recovery\.stableFor: "):
        model.effective_runbook(runbook("rb-001"), policy_with(recovery={"slo": "1m"}))


def test_rises_sharply_override_factor_checked() -> None:
    policy = policy_with(conditions=[{"name": "retry-queue", "factor": 0.5}])
    with pytest.raises(ModelError, match=r"conditions\[0\]\.factor: "):
        model.effective_runbook(runbook("rb-003"), policy)


# -- LabelSelector ----------------------------------------------------------------------------
def selector(body: dict) -> model.LabelSelector:
    return model.LabelSelector.parse(Reader(body, "selector"))


def test_selector_match_labels() -> None:
    s = selector({"matchLabels": {"tier": "web", "app": "checkout"}})
    assert s.matches({"app": "checkout", "tier": "web", "extra": "x"})
    assert not s.matches({"app": "checkout"})
    assert not s.matches(None)
    assert s.to_query() == "app=checkout,tier=web"


def test_selector_expressions() -> None:
    s = selector({"matchExpressions": [
        {"key": "env", "operator": "In", "values": ["prod", "staging"]},
        {"key": "tier", "operator": "NotIn", "values": ["batch"]},
        {"key": "team", "operator": "Exists"},
        {"key": "legacy", "operator": "DoesNotExist"}]})
    assert s.matches({"env": "prod", "team": "a"})
    assert s.matches({"env": "staging", "team": "a", "tier": "web"})
    assert not s.matches({"env": "dev", "team": "a"})
    assert not s.matches({"env": "prod", "team": "a", "tier": "batch"})
    assert not s.matches({"env": "prod"})
    assert not s.matches({"env": "prod", "team": "a", "legacy": "yes"})
    assert s.to_query() == "env in (prod,staging),tier notin (batch),team,!legacy"


def test_empty_selector_matches_everything() -> None:
    s = selector({})
    assert s.matches({}) and s.matches({"a": "b"}) and s.to_query() == ""


def test_selector_bad_operator() -> None:
    with pytest.raises(ModelError, match=r"^selector\.matchExpressions\[0\]\.operator: "):
        selector({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
