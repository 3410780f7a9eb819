"""The CRDs against the real API server: the catalogue applies, bad objects are rejected with
messages that name the field and what to fix, the printer columns and `kubectl explain` teach
the API, and closing an incident without action items is refused even through the status
subresource."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.crds import install as install_crds
from harness.procs import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
CATALOGUE = ROOT / "runbooks"
GROUP = "missioncontrol.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KINDS = {  # kind: (plural, short name)
    "Runbook": ("runbooks", "rb"),
    "IncidentPolicy": ("incidentpolicies", "ipol"),
    "Incident": ("incidents", "inc"),
    "ServiceOwnership": ("serviceownerships", "own"),
}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def crds(env) -> None:
    """Install the four CRDs and wait until they are served."""
    install_crds(env.kubectl, env.api)

    def discovered() -> bool:
        # `api-resources` refreshes kubectl's discovery cache, so later commands see the kinds
        out = env.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name",
                          check=False).stdout.split()
        return all(f"{plural}.{GROUP}" in out for plural, _ in KINDS.values())

    wait_for(discovered, timeout=60, what="kubectl discovery to list the Mission Control kinds")


def apply(env, namespace: str, obj: dict, *, check: bool = True):
    return env.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(obj),
                       namespace=namespace, check=check)


def table(output: str) -> list[dict[str, str]]:
    """Rows of kubectl's default table output, cut at the header's column starts (cells may
    hold spaces, like "12m left")."""
    header, *rows = output.rstrip("\n").splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    names = header.split()
    bounds = [*starts[1:], None]
    columns = list(zip(names, starts, bounds, strict=True))
    return [{name: row[start:end].strip() for name, start, end in columns} for row in rows]


# ------------------------------------------------------------------------- valid objects
def runbook() -> dict:
    return {
        "apiVersion": API_VERSION, "kind": "Runbook", "metadata": {"name": "rb-test"},
        "spec": {
            "id": "RB-900",
            "title": "Test runbook",
            "severity": "SEV2",
            "trigger": {
                "afterRelease": {"window": "30m"},
                "anyOf": [
                    {"name": "readiness", "readiness": {"consecutiveFailures": 3}},
                    {"name": "error-rate",
                     "threshold": {"query": "sum(rate(errors_total[1m]))", "above": 0.05,
                                   "for": "1m", "interval": "30s"}},
                    {"name": "retry-queue",
                     "risesSharply": {"query": "sum(retry_queue_depth)", "window": "5m",
                                      "factor": 3, "minIncrease": 100}},
                ],
            },
            "firstResponse": {
                "within": "5m",
                "steps": [
                    {"id": "freeze", "action": "freezeDeployments",
                     "freezeDeployments": {"scope": "Namespace"}},
                    {"id": "blast-radius", "action": "assessBlastRadius",
                     "assessBlastRadius": {"dashboards": [
                         {"name": "errors", "query": "sum(rate(errors_total[5m]))"}]}},
                    {"id": "rollback", "action": "rollback", "rollback": {"to": "LastHealthy"}},
                    {"id": "flags", "action": "setFlags",
                     "setFlags": {"configMap": "feature-flags", "flags": {"safe-mode": "on"}}},
                    {"id": "pause", "action": "pauseConsumers",
                     "pauseConsumers": {"selector": {"matchLabels": {"tier": "batch"}}}},
                    {"id": "page", "action": "notify",
                     "notify": {"roles": ["release-owner", "oncall-backend"]}},
                ],
            },
            "escalation": {
                "page": ["release-owner"],
                "rules": [
                    {"after": "10m", "page": ["platform-lead"]},
                    {"after": "30m", "when": "SLOBreached", "page": ["incident-commander"]},
                ],
            },
            "recovery": {"slo": "20m", "stableFor": "2m"},
            "automation": {"adaptiveBackoff": {"enabled": True, "initial": "1s", "max": "5m"}},
        },
    }


def route(kind: str = "Slack") -> dict:
    return {"type": kind, "secretRef": {"name": "checkout-slack", "key": "url"}}


def policy() -> dict:
    return {
        "apiVersion": API_VERSION, "kind": "IncidentPolicy", "metadata": {"name": "ipol-test"},
        "spec": {
            "runbookRef": {"name": "rb-test"},
            "targets": {"selector": {"matchLabels": {"app": "checkout"}}},
            "mode": "enforce",
            "overrides": {"conditions": [{"name": "error-rate", "above": 0.02}]},
            "limits": {"cooldown": "10m", "maxRemediations": 3, "window": "1h"},
            "stakeholderUpdates": {"cadence": {"SEV2": "30m"}, "route": route()},
            "channel": {"route": route()},
        },
    }


def ownership() -> dict:
    return {
        "apiVersion": API_VERSION, "kind": "ServiceOwnership", "metadata": {"name": "own-test"},
        "spec": {
            "service": "checkout",
            "roles": [
                {"role": "release-owner", "contacts": [{"name": "Ada", "route": route()}]},
                {"role": "oncall-backend",
                 "contacts": [{"name": "primary", "route": {
                     "type": "PagerDuty", "secretRef": {"name": "pd", "key": "routing-key"}}}]},
            ],
        },
    }


def incident() -> dict:
    return {
        "apiVersion": API_VERSION, "kind": "Incident", "metadata": {"name": "inc-test"},
        "spec": {
            "runbook": {"name": "rb-001", "id": "RB-001"},
            "policy": "checkout-failed-deployment",
            "target": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
            "severity": "SEV2",
            "owner": "ada",
            "mode": "enforce",
        },
    }


BASES = {"Runbook": runbook, "IncidentPolicy": policy, "ServiceOwnership": ownership,
         "Incident": incident}
DELETE = object()


def edited(obj: dict, changes: dict[str, Any]) -> dict:
    """A copy of `obj` with each dotted path ("spec.trigger.anyOf.0.name") set, or removed
    when the value is DELETE."""
    out = copy.deepcopy(obj)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        index: Any = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[index]
        else:
            node[index] = value
    return out


@dataclass(frozen=True)
class Bad:
    id: str
    kind: str
    changes: dict[str, Any]
    message: str  # exact substring of kubectl's error output


TRIGGER = "spec.trigger.anyOf"
STEPS = "spec.firstResponse.steps"
BAD = [
    # ---- Runbook
    Bad("missing-trigger", "Runbook", {"spec.trigger": DELETE},
        "spec.trigger: Required value"),
    Bad("empty-anyOf", "Runbook", {f"{TRIGGER}": []},
        "spec.trigger.anyOf: Invalid value: 0: spec.trigger.anyOf in body should have at least 1 "
        "items"),
    Bad("two-detectors", "Runbook",
        {f"{TRIGGER}.0.threshold": {"query": "up", "below": 1}},
        "spec.trigger.anyOf[0]: Invalid value: trigger condition 'readiness' must set exactly one "
        "detector: spec.trigger.anyOf[].readiness, .threshold, .risesSharply or .alert"),
    Bad("readiness-and-alert", "Runbook",
        {f"{TRIGGER}.0.alert": {"alertname": "KubeDeploymentReplicasMismatch"}},
        "spec.trigger.anyOf[0]: Invalid value: trigger condition 'readiness' must set exactly one "
        "detector"),
    Bad("alert-without-name", "Runbook",
        {f"{TRIGGER}.0.readiness": DELETE, f"{TRIGGER}.0.alert": {"interval": "5s"}},
        "spec.trigger.anyOf[0].alert.alertname: Required value"),
    Bad("alert-label-name", "Runbook",
        {f"{TRIGGER}.0.readiness": DELETE,
         f"{TRIGGER}.0.alert": {"alertname": "A", "namespaceLabel": "kubernetes.io/ns"}},
        "spec.trigger.anyOf[0].alert.namespaceLabel in body should match"),
    Bad("alert-stale-after-too-long", "Runbook",
        {f"{TRIGGER}.0.readiness": DELETE,
         f"{TRIGGER}.0.alert": {"alertname": "A", "staleAfter": "200h"}},
        "'200h' is out of range: use a duration from 1s to 168h"),
    Bad("no-detector", "Runbook", {f"{TRIGGER}.0.readiness": DELETE},
        "spec.trigger.anyOf[0]: Invalid value: trigger condition 'readiness' must set exactly one "
        "detector"),
    Bad("duration-in-words", "Runbook", {"spec.recovery.slo": "5 minutes"},
        "spec.recovery.slo: Invalid value: \"5 minutes\": spec.recovery.slo in body should match "
        f"'{DURATION_PATTERN}'"),
    Bad("unknown-severity", "Runbook", {"spec.severity": "SEV5"},
        "spec.severity: Unsupported value: \"SEV5\": supported values: \"SEV1\", \"SEV2\", "
        "\"SEV3\", \"SEV4\""),
    Bad("bad-id", "Runbook", {"spec.id": "RB-1"},
        "spec.id: Invalid value: \"RB-1\": spec.id in body should match '^RB-[0-9]{3,}$'"),
    Bad("bad-condition-name", "Runbook", {f"{TRIGGER}.1.name": "Error_Rate"},
        "spec.trigger.anyOf[1].name: Invalid value: \"Error_Rate\": spec.trigger.anyOf[1].name "
        "in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"),
    Bad("threshold-above-and-below", "Runbook", {f"{TRIGGER}.1.threshold.below": 0.01},
        "spec.trigger.anyOf[1].threshold: Invalid value: threshold must set exactly one of above "
        "or below: set spec.trigger.anyOf[].threshold.above to fire on high values or .below to "
        "fire on low values, not both and not neither"),
    Bad("threshold-neither-above-nor-below", "Runbook",
        {f"{TRIGGER}.1.threshold.above": DELETE},
        "spec.trigger.anyOf[1].threshold: Invalid value: threshold must set exactly one of above "
        "or below"),
    Bad("for-shorter-than-interval", "Runbook", {f"{TRIGGER}.1.threshold.for": "10s"},
        "spec.trigger.anyOf[1].threshold: Invalid value: threshold.for (10s) is shorter than "
        "threshold.interval (30s): set for to at least one interval"),
    Bad("readiness-zero-failures", "Runbook",
        {f"{TRIGGER}.0.readiness.consecutiveFailures": 0},
        "spec.trigger.anyOf[0].readiness.consecutiveFailures: Invalid value: 0: "
        "spec.trigger.anyOf[0].readiness.consecutiveFailures in body should be greater than or "
        "equal to 1"),
    Bad("factor-not-above-one", "Runbook", {f"{TRIGGER}.2.risesSharply.factor": 1},
        "spec.trigger.anyOf[2].risesSharply.factor: Invalid value: 1: "
        "spec.trigger.anyOf[2].risesSharply.factor in body should be greater than 1"),
    Bad("step-params-of-other-action", "Runbook",
        {f"{STEPS}.2.rollback": DELETE,
         f"{STEPS}.2.freezeDeployments": {"scope": "Deployment"}},
        "spec.firstResponse.steps[2]: Invalid value: step 'rollback' has action rollback: set "
        "spec.firstResponse.steps[].rollback and no other action's parameters"),
    Bad("step-without-params", "Runbook", {f"{STEPS}.2.rollback": DELETE},
        "spec.firstResponse.steps[2]: Invalid value: step 'rollback' has action rollback: set "
        "spec.firstResponse.steps[].rollback and no other action's parameters"),
    Bad("step-with-extra-params", "Runbook",
        {f"{STEPS}.2.freezeDeployments": {"scope": "Deployment"}},
        "spec.firstResponse.steps[2]: Invalid value: step 'rollback' has action rollback: set "
        "spec.firstResponse.steps[].rollback and no other action's parameters"),
    Bad("revert-a-rollback", "Runbook", {f"{STEPS}.2.revertOn": ["Resolved"]},
        "spec.firstResponse.steps[2]: Invalid value: step 'rollback' (rollback) "
        "cannot be undone: remove spec.firstResponse.steps[].revertOn"),
    Bad("rate-limit-on-an-ingress-not-whole", "Runbook",
        {f"{STEPS}.3": {"id": "flags", "action": "rateLimit", "rateLimit": {
            "configMap": "webhook-ingress", "key": "retry-rate-limit",
            "requestsPerSecond": 2.5, "ingress": "webhooks"}}},
        "spec.firstResponse.steps[3].rateLimit: Invalid value: with ingress, "
        "requestsPerSecond must be a whole number (ingress-nginx's limit-rps takes whole "
        "requests per second)"),
    Bad("approval-timeout-without-approval", "Runbook",
        {f"{STEPS}.2.approvalTimeout": "10m", f"{STEPS}.2.onApprovalTimeout": "skip"},
        "spec.firstResponse.steps[2]: Invalid value: step 'rollback' sets approvalTimeout, "
        "onApprovalTimeout or approvers: set spec.firstResponse.steps[].approval to required"),
    Bad("approval-unknown-timeout-outcome", "Runbook",
        {f"{STEPS}.2.approval": "required", f"{STEPS}.2.onApprovalTimeout": "retry"},
        "spec.firstResponse.steps[2].onApprovalTimeout: Unsupported value: \"retry\""),
    Bad("approval-timeout-too-long", "Runbook",
        {f"{STEPS}.2.approval": "required", f"{STEPS}.2.approvalTimeout": "200h"},
        "'200h' is out of range: use a duration from 1s to 168h (7 days)"),
    Bad("revert-on-unknown-phase", "Runbook", {f"{STEPS}.2.revertOn": ["Mitigated"]},
        "spec.firstResponse.steps[2].revertOn[0]: Unsupported value: \"Mitigated\""),
    Bad("unknown-action", "Runbook", {f"{STEPS}.2.action": "restart"},
        "spec.firstResponse.steps[2].action: Unsupported value: \"restart\": supported values: "
        "\"freezeDeployments\", \"assessBlastRadius\", \"rollback\""),
    Bad("duplicate-step-id", "Runbook", {f"{STEPS}.1.id": "freeze"},
        ".spec.firstResponse.steps: duplicate entries for key [id=\"freeze\"]"),
    Bad("no-steps", "Runbook", {STEPS: []},
        "spec.firstResponse.steps: Invalid value: 0: spec.firstResponse.steps in body should have "
        "at least 1 items"),
    Bad("blast-radius-empty", "Runbook", {f"{STEPS}.1.assessBlastRadius": {}},
        "spec.firstResponse.steps[1].assessBlastRadius: Invalid value: assessBlastRadius needs at "
        "least one entry in spec.firstResponse.steps[].assessBlastRadius.dashboards or "
        ".syntheticChecks"),
    Bad("flags-empty", "Runbook", {f"{STEPS}.3.setFlags.flags": {}},
        "spec.firstResponse.steps[3].setFlags.flags: Invalid value: 0: "
        "spec.firstResponse.steps[3].setFlags.flags in body should have at least 1 properties"),
    Bad("pause-everything", "Runbook", {f"{STEPS}.4.pauseConsumers.selector": {}},
        "spec.firstResponse.steps[4].pauseConsumers: Invalid value: pauseConsumers.selector must "
        "not be empty: set spec.firstResponse.steps[].pauseConsumers.selector.matchLabels or "
        ".matchExpressions (an empty selector would pause every Deployment)"),
    Bad("match-expression-in-without-values", "Runbook",
        {f"{STEPS}.4.pauseConsumers.selector": {
            "matchExpressions": [{"key": "tier", "operator": "In"}]}},
        "spec.firstResponse.steps[4].pauseConsumers.selector.matchExpressions[0]: Invalid value: "
        "matchExpressions key tier: operator In needs at least one entry in values"),
    Bad("unknown-role", "Runbook", {f"{STEPS}.5.notify.roles": ["sre"]},
        "spec.firstResponse.steps[5].notify.roles[0]: Unsupported value: \"sre\": supported "
        "values: \"release-owner\", \"oncall-backend\", \"platform-lead\", \"integration-owner\", "
        "\"incident-commander\", \"stakeholders\""),
    Bad("escalation-after-decreasing", "Runbook", {"spec.escalation.rules.1.after": "5m"},
        "spec.escalation.rules: Invalid value: spec.escalation.rules[].after must strictly "
        "increase from each rule to the next (for example 15m, 30m, 1h): order the rules by after "
        "and merge rules that share the same after"),
    Bad("escalation-after-repeated", "Runbook", {"spec.escalation.rules.1.after": "10m"},
        "spec.escalation.rules: Invalid value: spec.escalation.rules[].after must strictly "
        "increase from each rule to the next"),
    Bad("stableFor-not-below-slo", "Runbook", {"spec.recovery.stableFor": "20m"},
        "spec.recovery: Invalid value: spec.recovery.stableFor (20m) must be shorter than "
        "spec.recovery.slo (20m): recovery could never be confirmed within the SLO"),
    Bad("backoff-initial-above-max", "Runbook",
        {"spec.automation.adaptiveBackoff.initial": "10m"},
        "spec.automation.adaptiveBackoff: Invalid value: spec.automation.adaptiveBackoff.initial "
        "(10m) must not exceed adaptiveBackoff.max (5m)"),
    # durations: at least 1s (gracePeriod 0s), at most a sane bound (docs/api.md "Durations")
    *(Bad(f"duration-{name}", "Runbook", {path: value},
          f"{path_text}: Invalid value: \"{value}\": '{value}' is out of range: use a duration "
          f"from 1s to {top}")
      for name, path, path_text, value, top in (
          ("zero-readiness-interval", f"{TRIGGER}.0.readiness.interval",
           "spec.trigger.anyOf[0].readiness.interval", "0s", "1h"),
          ("zero-threshold-interval", f"{TRIGGER}.1.threshold.interval",
           "spec.trigger.anyOf[1].threshold.interval", "0s", "1h"),
          ("zero-release-window", "spec.trigger.afterRelease.window",
           "spec.trigger.afterRelease.window", "0s", "168h (7 days)"),
          ("zero-repage-after", "spec.escalation.repageAfter", "spec.escalation.repageAfter",
           "0s", "24h"),
          ("zero-page-within", "spec.escalation.pageWithin", "spec.escalation.pageWithin", "0s",
           "24h"),
          ("zero-first-response", "spec.firstResponse.within", "spec.firstResponse.within",
           "0s", "24h"),
          ("zero-step-timeout", f"{STEPS}.2.timeout", "spec.firstResponse.steps[2].timeout",
           "0s", "24h"),
          ("absurd-interval", f"{TRIGGER}.0.readiness.interval",
           "spec.trigger.anyOf[0].readiness.interval", "10000000000000000000000000000h", "1h"),
          ("absurd-freeze", f"{STEPS}.0.freezeDeployments.maxDuration",
           "spec.firstResponse.steps[0].freezeDeployments.maxDuration", "100000h",
           "168h (7 days)"),
          ("absurd-escalation-after", "spec.escalation.rules.1.after",
           "spec.escalation.rules[1].after", "1000h", "168h (7 days)"),
          ("units-repeated", "spec.recovery.slo", "spec.recovery.slo", "10m10m",
           "168h (7 days)"),
      )),
    Bad("pause-selector-bad-value", "Runbook",
        {f"{STEPS}.4.pauseConsumers.selector.matchLabels": {"tier": "has space"}},
        "spec.firstResponse.steps[4].pauseConsumers.selector.matchLabels.tier: Invalid value: "
        "\"has space\": spec.firstResponse.steps[4].pauseConsumers.selector.matchLabels.tier in "
        "body should match"),
    # ---- IncidentPolicy
    Bad("zero-cadence", "IncidentPolicy", {"spec.stakeholderUpdates.cadence.SEV2": "0s"},
        "spec.stakeholderUpdates.cadence.SEV2: Invalid value: \"0s\": '0s' is out of range: "
        "use a duration from 1s to 24h"),
    Bad("alertmanager-url-not-http", "IncidentPolicy",
        {"spec.alertmanager": {"respectSilences": True, "url": "alertmanager:9093"}},
        "spec.alertmanager.url in body should match"),
    Bad("pause-reason-without-until", "IncidentPolicy", {"spec.pauseReason": "db migration"},
        "spec.pauseReason: Required value: spec.pauseReason is set but spec.pausedUntil is not"),
    Bad("paused-until-not-a-time", "IncidentPolicy", {"spec.pausedUntil": "in two hours"},
        "spec.pausedUntil: Invalid value: \"in two hours\": spec.pausedUntil in body must be of "
        "type date-time"),
    Bad("zero-override-interval", "IncidentPolicy", {"spec.overrides.conditions.0.interval": "0s"},
        "spec.overrides.conditions[0].interval: Invalid value: \"0s\": '0s' is out of range: "
        "use a duration from 1s to 1h"),
    Bad("selector-bad-key", "IncidentPolicy",
        {"spec.targets.selector.matchLabels": {"bad key!": "checkout"}},
        "spec.targets.selector.matchLabels: Invalid value: 'bad key!' is not a label "
        "key: an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.', "
        "starting and ending with a letter or digit"),
    Bad("selector-value-with-space", "IncidentPolicy",
        {"spec.targets.selector.matchLabels": {"app": "has space"}},
        "spec.targets.selector.matchLabels.app: Invalid value: \"has space\": "
        "spec.targets.selector.matchLabels.app in body should match"),
    Bad("selector-unicode-value", "IncidentPolicy",
        {"spec.targets.selector.matchLabels": {"app": "ch\u00e9ckout"}},
        "spec.targets.selector.matchLabels.app: Invalid value: "),
    Bad("selector-expression-bad-key", "IncidentPolicy",
        {"spec.targets.selector.matchExpressions": [{"key": "bad key!", "operator": "Exists"}]},
        "spec.targets.selector.matchExpressions[0].key: Invalid value: \"bad key!\": "
        "spec.targets.selector.matchExpressions[0].key in body should match"),
    Bad("namespace-selector-bad-value", "IncidentPolicy",
        {"spec.targets.namespaceSelector": {"matchLabels": {"team": "a b"}}},
        "spec.targets.namespaceSelector.matchLabels.team: Invalid value: \"a b\": "
        "spec.targets.namespaceSelector.matchLabels.team in body should match"),
    Bad("policy-without-runbook", "IncidentPolicy", {"spec.runbookRef": DELETE},
        "spec.runbookRef: Required value"),
    Bad("policy-unknown-mode", "IncidentPolicy", {"spec.mode": "yolo"},
        "spec.mode: Unsupported value: \"yolo\": supported values: \"enforce\", \"dryRun\""),
    Bad("cooldown-above-window", "IncidentPolicy", {"spec.limits.cooldown": "2h"},
        "spec.limits: Invalid value: spec.limits.cooldown (2h) must not exceed spec.limits.window "
        "(1h)"),
    Bad("override-above-and-below", "IncidentPolicy",
        {"spec.overrides.conditions.0.below": 0.01},
        "spec.overrides.conditions[0]: Invalid value: spec.overrides.conditions[] 'error-rate' "
        "sets both above and below: set at most one"),
    Bad("cadence-in-words", "IncidentPolicy",
        {"spec.stakeholderUpdates.cadence.SEV2": "half an hour"},
        "spec.stakeholderUpdates.cadence.SEV2: Invalid value: \"half an hour\": "
        f"spec.stakeholderUpdates.cadence.SEV2 in body should match '{DURATION_PATTERN}'"),
    Bad("policy-route-without-secret", "IncidentPolicy",
        {"spec.channel.route.secretRef": DELETE},
        "spec.channel.route.secretRef: Required value"),
    # ---- ServiceOwnership
    Bad("contact-route-without-secret", "ServiceOwnership",
        {"spec.roles.0.contacts.0.route.secretRef": DELETE},
        "spec.roles[0].contacts[0].route.secretRef: Required value"),
    Bad("unknown-role-name", "ServiceOwnership", {"spec.roles.0.role": "owner"},
        "spec.roles[0].role: Unsupported value: \"owner\": supported values: "
        "\"release-owner\", \"oncall-backend\", \"platform-lead\", \"integration-owner\", "
        "\"incident-commander\", \"stakeholders\""),
    Bad("role-without-contacts", "ServiceOwnership", {"spec.roles.0.contacts": []},
        "spec.roles[0].contacts: Invalid value: 0: spec.roles[0].contacts in body should have at "
        "least 1 items"),
    Bad("role-twice", "ServiceOwnership", {"spec.roles.1.role": "release-owner"},
        ".spec.roles: duplicate entries for key [role=\"release-owner\"]"),
    Bad("unknown-route-type", "ServiceOwnership",
        {"spec.roles.0.contacts.0.route.type": "Email"},
        "spec.roles[0].contacts[0].route.type: Unsupported value: \"Email\": supported values: "
        "\"PagerDuty\", \"Slack\", \"Webhook\""),
    # ---- Incident
    Bad("close-without-action-items", "Incident", {"spec.close": True},
        "spec.actionItems: Required value: spec.close is true but spec.actionItems is empty: add "
        "at least one post-incident action item (title and assignee) before closing"),
    Bad("close-with-unassigned-item", "Incident",
        {"spec.close": True,
         "spec.actionItems": [{"title": "add a readiness gate", "assignee": "ada"},
                              {"title": "alert on error budget"}]},
        "spec.actionItems: Required value: spec.close is true but an action item has no "
        "assignee: set spec.actionItems[].assignee on every item before closing"),
    Bad("incident-target-not-deployment", "Incident", {"spec.target.kind": "StatefulSet"},
        "spec.target.kind: Unsupported value: \"StatefulSet\": supported values: \"Deployment\""),
    Bad("incident-without-mode", "Incident", {"spec.mode": DELETE},
        "spec.mode: Required value"),
    Bad("incident-bad-runbook-id", "Incident", {"spec.runbook.id": "rb-001"},
        "spec.runbook.id: Invalid value: \"rb-001\": spec.runbook.id in body should match "
        "'^RB-[0-9]{3,}$'"),
]


# ---------------------------------------------------------------------------------- tests
def test_catalogue_and_examples_apply(env, crds, namespace):
    examples = sorted((CATALOGUE / "examples").glob("*.yaml"))
    assert examples, "runbooks/examples/ holds example policies"
    out = env.kubectl("apply", "--server-side", "-f", str(CATALOGUE),
                      *(arg for path in examples for arg in ("-f", str(path))),
                      namespace=namespace).stdout
    for name in ("rb-001", "rb-002", "rb-003"):
        assert f"runbook.{GROUP}/{name} serverside-applied" in out
    assert f"incidentpolicy.{GROUP}/checkout-failed-deployment serverside-applied" in out
    assert f"serviceownership.{GROUP}/checkout serverside-applied" in out

    ids = env.kubectl("get", "runbooks", "-o", "jsonpath={.items[*].spec.id}",
                      namespace=namespace).stdout.split()
    assert sorted(ids) == ["RB-001", "RB-002", "RB-003"]
    roles = env.kubectl("get", "own", "checkout", "-o", "jsonpath={.spec.roles[*].role}",
                        namespace=namespace).stdout.split()
    assert sorted(roles) == sorted(["release-owner", "oncall-backend", "platform-lead",
                                    "integration-owner", "incident-commander", "stakeholders"])
    # defaults filled in by the schema
    policy_spec = json.loads(env.kubectl("get", "ipol", "checkout-failed-deployment", "-o",
                                         "json", namespace=namespace).stdout)["spec"]
    assert policy_spec["stakeholderUpdates"]["cadence"] == {
        "SEV1": "15m", "SEV2": "30m", "SEV3": "1h", "SEV4": "4h"}


def test_valid_bases_are_accepted_with_defaults(env, crds, namespace):
    for make in BASES.values():
        apply(env, namespace, make())
    rb = json.loads(env.kubectl("get", "rb", "rb-test", "-o", "json",
                                namespace=namespace).stdout)["spec"]
    assert rb["trigger"]["anyOf"][0]["readiness"] == {
        "consecutiveFailures": 3, "interval": "10s", "gracePeriod": "30s"}
    assert rb["firstResponse"]["steps"][2]["rollback"] == {
        "to": "LastHealthy", "verifyWithin": "5m"}
    assert rb["firstResponse"]["steps"][0]["continueOnFailure"] is False
    assert rb["escalation"]["rules"][0]["when"] == "NotMitigated"
    assert rb["escalation"]["pageWithin"] == "5m"
    pol = json.loads(env.kubectl("get", "ipol", "ipol-test", "-o", "json",
                                 namespace=namespace).stdout)["spec"]
    assert pol["channel"]["prefix"] == "inc"
    assert pol["stakeholderUpdates"]["cadence"]["SEV4"] == "4h"


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_bad_object_is_rejected_with_a_message_naming_the_field(env, crds, namespace, bad):
    obj = edited(BASES[bad.kind](), bad.changes)
    result = apply(env, namespace, obj, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{bad.id} was accepted:\n{output}"
    assert bad.message in output, output


def test_the_bad_cases_are_many_and_distinct():
    assert len({b.id for b in BAD}) == len(BAD) >= 22
    assert len({json.dumps(b.changes, default=str, sort_keys=True) + b.kind
                for b in BAD}) == len(BAD)



IMMUTABLE = [
    ("target-name", {"target": {"kind": "Deployment", "namespace": "shop", "name": "payments"}},
     "spec.target: Invalid value: spec.target cannot change: an incident is about "
     "one workload and its freeze, rollback and pages were for it. Close this incident "
     "(spec.close with action items) or delete it, and open a new one for the other target"),
    ("target-namespace", {"target": {"kind": "Deployment", "namespace": "bank",
                                     "name": "checkout"}},
     "spec.target: Invalid value: spec.target cannot change"),
    ("runbook", {"runbook": {"name": "rb-002", "id": "RB-002"}},
     "spec.runbook: Invalid value: spec.runbook cannot change: its steps already ran "
     "for this incident. Close this incident and open a new one with the other runbook; to "
     "change how serious it is, patch spec.severity"),
    ("policy", {"policy": "other-policy"},
     "spec.policy: Invalid value: spec.policy cannot change: the incident runs with "
     "the policy that opened it"),
    ("policy-removed", {"policy": None},
     "spec.policy: Invalid value: spec.policy cannot change"),
    ("mode", {"mode": "dryRun"},
     "spec.mode: Invalid value: spec.mode cannot change: the steps already ran (or "
     "were planned) in this mode"),
]


@pytest.mark.parametrize(("field", "change", "message"), IMMUTABLE,
                         ids=[i[0] for i in IMMUTABLE])
def test_what_defines_an_incident_cannot_change(env, crds, namespace, field, change, message):
    apply(env, namespace, incident())
    result = env.kubectl("patch", "incident", "inc-test", "--type=merge",
                         "-p", json.dumps({"spec": change}), namespace=namespace, check=False)
    assert result.returncode != 0, f"{field} was changed:\n{result.stdout}"
    assert message in result.stdout + result.stderr
    # what people add to an incident still changes
    env.kubectl("patch", "incident", "inc-test", "--type=merge", "-p", json.dumps(
        {"spec": {"severity": "SEV1", "acknowledgements": [{"role": "release-owner",
                                                            "by": "ada"}]}}),
                namespace=namespace)


def test_get_incidents_prints_the_status_board(env, crds, namespace):
    apply(env, namespace, incident())
    status = {"status": {
        "phase": "Mitigating",
        "detectedAt": "2030-01-01T10:00:00Z",
        "slo": {"deadline": "2030-01-01T10:20:00Z", "breached": False, "status": "12m left"},
        "steps": [{"id": "rollback", "action": "rollback", "state": "Running",
                   "changes": [{"kind": "Deployment", "name": "checkout", "field": "revision",
                                "from": "7", "to": "6"}]}],
        "timeline": [{"at": "2030-01-01T10:00:00Z", "type": "Detected",
                      "message": "readiness failed 3 times"}],
        "awaitingApproval": "rollback",
    }}
    env.kubectl("patch", "incident", "inc-test", "--subresource=status", "--type=merge",
                "-p", json.dumps(status), namespace=namespace)

    out = env.kubectl("get", "incidents", namespace=namespace).stdout
    assert out.splitlines()[0].split() == [
        "NAME", "RUNBOOK", "TARGET", "SEVERITY", "PHASE", "SLO", "APPROVAL", "OWNER", "AGE"]
    (row,) = table(out)
    assert row == {"NAME": "inc-test", "RUNBOOK": "RB-001", "TARGET": "checkout",
                   "SEVERITY": "SEV2", "PHASE": "Mitigating", "SLO": "12m left",
                   "APPROVAL": "rollback", "OWNER": "ada", "AGE": row["AGE"]}
    assert row["AGE"]
    # the status was stored as written (nothing pruned)
    stored = json.loads(env.kubectl("get", "inc", "inc-test", "-o", "json",
                                    namespace=namespace).stdout)["status"]
    assert stored["steps"][0]["changes"][0] == {"kind": "Deployment", "name": "checkout",
                                                "field": "revision", "from": "7", "to": "6"}
    assert stored["timeline"][0]["type"] == "Detected"


def test_printer_columns_of_the_other_kinds(env, crds, namespace):
    for make in (runbook, policy, ownership):
        apply(env, namespace, make())
    headers = {kind: env.kubectl("get", short, namespace=namespace).stdout.splitlines()[0].split()
               for kind, (_, short) in KINDS.items() if kind != "Incident"}
    assert headers == {
        "Runbook": ["NAME", "ID", "TITLE", "SEVERITY", "SLO", "READY", "AGE"],
        "IncidentPolicy": ["NAME", "RUNBOOK", "MODE", "SEVERITY", "TARGETS", "READY", "REASON",
                           "PAUSED-UNTIL", "AGE"],
        "ServiceOwnership": ["NAME", "SERVICE", "READY", "AGE"],
    }
    env.kubectl("patch", "rb", "rb-test", "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"observedGeneration": 1, "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Valid", "message": "ok",
                    "lastTransitionTime": "2030-01-01T10:00:00Z"}]}}), namespace=namespace)
    env.kubectl("patch", "ipol", "ipol-test", "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"targetCount": 2, "conditions": [{
                    "type": "Ready", "status": "True", "reason": "Paused", "message": "paused",
                    "lastTransitionTime": "2030-01-01T10:00:00Z"}]}}), namespace=namespace)
    env.kubectl("patch", "ipol", "ipol-test", "--type=merge", "-p", json.dumps({"spec": {
        "pausedUntil": "2030-01-01T12:00:00Z", "pauseReason": "db migration"}}),
        namespace=namespace)
    (rb,) = table(env.kubectl("get", "rb", namespace=namespace).stdout)
    assert (rb["ID"], rb["TITLE"], rb["SEVERITY"], rb["SLO"], rb["READY"]) == (
        "RB-900", "Test runbook", "SEV2", "20m", "True")
    (ipol,) = table(env.kubectl("get", "ipol", namespace=namespace).stdout)
    assert (ipol["RUNBOOK"], ipol["MODE"], ipol["TARGETS"], ipol["REASON"],
            ipol["PAUSED-UNTIL"]) == ("rb-test", "enforce", "2", "Paused", "2030-01-01T12:00:00Z")
    (own,) = table(env.kubectl("get", "own", namespace=namespace).stdout)
    assert own["SERVICE"] == "checkout"


def test_kubectl_explain_teaches_the_trigger(env, crds):
    def explained() -> str:
        out = env.kubectl("explain", "runbook.spec.trigger", check=False).stdout
        return " ".join(out.split()) if "anyOf" in out else ""

    text = wait_for(explained, timeout=60, what="kubectl explain runbook.spec.trigger")
    assert "KIND: Runbook" in text
    assert "The trigger fires as soon as any one condition in anyOf fires" in text
    assert "Each condition uses exactly one detector: readiness" in text
    assert "afterRelease <Object>" in text
    assert "anyOf <[]Object> -required-" in text
    assert "The conditions, at least one" in text

    threshold = " ".join(env.kubectl("explain", "runbook.spec.trigger.anyOf.threshold")
                         .stdout.split())
    assert "set exactly one of above or below" in threshold
    assert "Fire when the query result is greater than this value." in threshold
    assert "Defaults to 30s." in threshold


def test_get_missioncontrol_lists_every_kind(env, crds, namespace):
    for make in BASES.values():
        apply(env, namespace, make())
    out = env.kubectl("get", "missioncontrol", namespace=namespace).stdout
    for kind, name in (("runbook", "rb-test"), ("incidentpolicy", "ipol-test"),
                       ("incident", "inc-test"), ("serviceownership", "own-test")):
        assert f"{kind}.{GROUP}/{name}" in out
    names = env.kubectl("get", "rb,ipol,inc,own", "-o", "name", namespace=namespace).stdout
    assert len(names.split()) == 4


def test_closing_through_the_status_subresource_needs_assigned_action_items(
        env, crds, namespace):
    apply(env, namespace, incident())

    def close() -> str:
        result = env.kubectl("patch", "incident", "inc-test", "--subresource=status",
                             "--type=merge", "-p", '{"status":{"phase":"Closed"}}',
                             namespace=namespace, check=False)
        return "" if result.returncode == 0 else result.stdout + result.stderr

    refusal = ("status.phase: Forbidden: status.phase Closed needs spec.actionItems: add at "
               "least one post-incident action item, each with a non-empty assignee, before "
               "closing")
    assert refusal in close()

    items = [{"title": "add a readiness gate", "assignee": "ada"},
             {"title": "alert on error budget"}]
    env.kubectl("patch", "incident", "inc-test", "--type=merge",
                "-p", json.dumps({"spec": {"actionItems": items}}), namespace=namespace)
    assert refusal in close()

    items[1]["assignee"] = "grace"
    env.kubectl("patch", "incident", "inc-test", "--type=merge",
                "-p", json.dumps({"spec": {"actionItems": items}}), namespace=namespace)
    assert close() == ""
    phase = env.kubectl("get", "inc", "inc-test", "-o", "jsonpath={.status.phase}",
                        namespace=namespace).stdout
    assert phase == "Closed"

    # once closed, the action items cannot be taken away through the main resource either
    result = env.kubectl("patch", "incident", "inc-test", "--type=merge",
                         "-p", '{"spec":{"actionItems":null}}', namespace=namespace,
                         check=False)
    assert result.returncode != 0
    assert refusal in result.stderr


# ------------------------------------------------------- static checks on the CRD files
def crd_documents() -> dict[str, dict]:
    docs = {}
    for path in sorted(p for p in CRD_DIR.glob("*.yaml") if p.name != "kustomization.yaml"):
        (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        docs[doc["spec"]["names"]["kind"]] = doc
    return docs


def walk(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def test_crd_files_name_the_kinds_as_designed():
    docs = crd_documents()
    assert set(docs) == set(KINDS)
    for kind, (plural, short) in KINDS.items():
        spec = docs[kind]["spec"]
        assert docs[kind]["metadata"]["name"] == f"{plural}.{GROUP}"
        assert spec["group"] == GROUP and spec["scope"] == "Namespaced"
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["missioncontrol"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
        assert version["subresources"] == {"status": {}}


def test_every_field_is_described_typed_and_bounded():
    problems = []
    for kind, doc in crd_documents().items():
        root = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(root), kind
        for path, node in walk(root):
            where = f"{kind}{path}"
            if path == ".metadata":
                continue
            if not node.get("description"):
                problems.append(f"{where}: no description")
            if not node.get("type") and not node.get("x-kubernetes-int-or-string"):
                problems.append(f"{where}: no type")
            if node.get("type") == "string" and "maxLength" not in node and "enum" not in node:
                problems.append(f"{where}: string without maxLength")
            if node.get("type") == "array" and "maxItems" not in node:
                problems.append(f"{where}: list without maxItems")
            if node.get("type") == "object" and "additionalProperties" in node \
                    and "maxProperties" not in node:
                problems.append(f"{where}: map without maxProperties")
            for rule in node.get("x-kubernetes-validations", []):
                if not (rule.get("message") or rule.get("messageExpression")):
                    problems.append(f"{where}: rule {rule['rule']!r} without a message")
    assert problems == []


def test_list_maps_where_the_contract_says_so():
    docs = crd_documents()

    def node(kind: str, path: str) -> dict:
        found = dict(walk(docs[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
        return found[path]

    for kind, path, key in (("Runbook", ".spec.trigger.anyOf", "name"),
                            ("Runbook", ".spec.firstResponse.steps", "id"),
                            ("IncidentPolicy", ".spec.overrides.conditions", "name"),
                            ("ServiceOwnership", ".spec.roles", "role")):
        list_node = node(kind, path)
        assert list_node["x-kubernetes-list-type"] == "map", (kind, path)
        assert list_node["x-kubernetes-list-map-keys"] == [key], (kind, path)
        assert key in list_node["items"]["required"], (kind, path)
    assert node("Incident", ".status.timeline")["maxItems"] == 50
    durations = [path for kind in docs for path, n in walk(
        docs[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        if n.get("pattern") == DURATION_PATTERN]
    assert len(durations) > 30


def test_every_duration_is_bounded_and_says_its_range():
    """Each duration field carries a rule with a lowest and highest value, and its
    description (kubectl explain) says them."""
    problems = []
    for kind, doc in crd_documents().items():
        root = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(root):
            if node.get("pattern") != DURATION_PATTERN:
                continue
            rules = " ".join(r["rule"] for r in node.get("x-kubernetes-validations", []))
            bounds = re.search(r'duration\(self\) >= duration\("(\w+)"\) && duration\(self\) '
                               r'<= duration\("(\w+)"\)', rules)
            if bounds is None:
                problems.append(f"{kind}{path}: no bounds")
                continue
            low, high = bounds.groups()
            if low != ("0s" if path.endswith("gracePeriod") else "1s"):
                problems.append(f"{kind}{path}: lowest {low}")
            if f"A duration from {low} to {high}" not in node["description"]:
                problems.append(f"{kind}{path}: description does not say {low} to {high}")
    assert problems == []
