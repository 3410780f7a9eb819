"""The status schemas of Incident and IncidentPolicy declare exactly what the operator writes.

The API server silently prunes every status field its CRD schema does not declare, so a field
the records carry but the schema lacks is lost on the next read (and with it, say, a target's
check counters). Two guards: a static comparison of the schemas with the dataclasses, field by
field and type by type, and a round trip of maximal statuses through the real API server."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest
from kubernetes import client
from test_crds import GROUP, VERSION, apply, crd_documents, crds, incident, policy

from missioncontrol import conditions
from missioncontrol import incident as inc
from missioncontrol.dbchecks import schedule
from missioncontrol.dbchecks.plans import Plan, Scan
from missioncontrol.detect.release import TargetState
from missioncontrol.detect.state import ConditionState
from missioncontrol.records import from_dict, to_dict
from missioncontrol.timeutil import iso_precise

__all__ = ["crds"]  # the module-scoped fixture of test_crds: install the CRDs once

T0 = 1893492000.0  # 2030-01-01T10:00:00Z; every stamp below is T0 plus whole milliseconds


def at(seconds: float) -> float:
    """T0 plus `seconds`, which must be a whole number of milliseconds (binary-exact here)."""
    assert round(seconds * 1000) == seconds * 1000
    return T0 + seconds


# ------------------------------------------------------------------------ maximal records
def maximal_incident_status() -> inc.IncidentStatus:
    """Every optional field set, every nested record present, several entries per list."""
    return inc.IncidentStatus(
        phase=inc.RESOLVED,
        reason="readiness: 2/3 pods of checkout-7d9f not Ready for more than 30s; "
               "error-rate: value 0.0731 (fires above 0.05)",
        mode="enforce",
        severity="SEV1",
        detected_at=at(0.125),
        mitigating_at=at(1.25),
        mitigated_at=at(95.5),
        resolved_at=at(600.75),
        closed_at=at(900.5),
        healthy_since=at(480.875),
        escalated=True,
        slo=inc.Slo(deadline=at(1200.125), breached=False, status="met"),
        conditions=(
            conditions.Condition("Active", "False", "Resolved", "stable for 2m", at(600.75), 3),
            conditions.Condition("Mitigated", "True", "Mitigated", "all steps done", at(95.5),
                                 2),
            conditions.Condition("Escalated", "True", "Escalated", "step rollback failed",
                                 at(60.5), 1),
        ),
        evidence=(
            inc.Evidence("readiness", "Fail", "2/3 pods not Ready", at(0.125), 2.0),
            inc.Evidence("error-rate", "Fail", "value 0.0731", at(0.25), 0.0731),
            inc.Evidence("retry-queue", "Unknown", "no data: outcome unknown", at(0.5), -1.5),
        ),
        steps=(
            inc.StepRecord("freeze", "freezeDeployments", inc.SUCCEEDED, at(1.25), at(1.5),
                           "froze Namespace/shop",
                           (inc.Change("Namespace", "shop", "metadata.labels[frozen]",
                                       "false", "true", "shop"),),
                           attempts=1, revert_on=("Closed",),
                           no_effect_at=at(30.0), approval_asked_at=at(1.0),
                           approval="approved by ada"),
            inc.StepRecord("rollback", "rollback", inc.STEP_FAILED, at(2.0), at(62.0),
                           "rolled back, but not healthy within 1m",
                           (inc.Change("Deployment", "checkout", "spec.template",
                                       "revision 7 (checkout-7d9f)", "revision 6 (checkout-5c4b)",
                                       "shop"),
                            inc.Change("ConfigMap", "flags", "data[safe-mode]", "off", "on",
                                       "shop")),
                           attempts=3, revert_on=("Resolved",),
                           no_effect_at=at(40.0), approval_asked_at=at(1.75),
                           approval="no approval within 10m: proceeding"),
            inc.StepRecord("replay", "replaySample", inc.PLANNED, at(62.5), at(62.75),
                           "would create Job replay-inc",
                           (inc.Change("Job", "replay-inc", "created", "none",
                                       "replay of 100 events", "shop"),),
                           attempts=2, revert_on=("Resolved", "Closed"),
                           no_effect_at=at(50.0), approval_asked_at=at(62.25),
                           approval="dry run: would wait for approval by release-owner"),
        ),
        blast_radius=inc.BlastRadius(
            checked_at=at(30.0),
            synthetic_checks=(
                inc.SyntheticResult("home", "https://shop.example/", True, 200, 0.25, "slow-ish"),
                inc.SyntheticResult("cart", "https://shop.example/cart", False, 503, 1.0,
                                    "HTTP 503: upstream unavailable"),
            ),
            dashboards=(
                inc.DashboardResult("errors", 'sum(rate(errors_total{namespace="shop"}[5m]))',
                                    "Ok", "{} 0.0731"),
                inc.DashboardResult("latency", "histogram_quantile(0.99, x)", "Error",
                                    "ClientError: timeout"),
            ),
            summary="1/2 synthetic checks passed (failing: cart); 1/2 dashboards answered",
        ),
        pages=(
            inc.Page("release-owner", "Ada", "Slack", "page", at(1.0), "delivered", 1,
                     "first attempt timed out", at(120.5), 2,
                     about="late", summary="readiness failed",
                     tried_at=at(3.0)),
            inc.Page("oncall-backend", "primary", "PagerDuty", "escalation", at(60.5), "failed",
                     3, "HTTP 429: rate limited", at(121.5), 1,
                     about="automation-stopped", summary="escalated: rollback failed",
                     tried_at=at(90.5)),
            inc.Page("platform-lead", "Grace", "Webhook", "resolve", at(601.0), "planned", 4,
                     "dry run", at(602.0), 1,
                     about="automation-stopped", summary="resolved",
                     tried_at=at(601.5)),
        ),
        updates=(
            inc.Update(at(5.0), "Mitigating", "rolling back checkout", "delivered", False,
                       at(65.0), "first attempt: HTTP 503",
                       tried_at=at(6.0), attempts=2),
            inc.Update(at(601.0), "Resolved", "checkout recovered", "failed", True, at(602.0),
                       "HTTP 500",
                       tried_at=at(661.0), attempts=4),
        ),
        channel=inc.Channel("inc-rb-001-checkout", at(1.0), "delivered"),
        escalations=(
            inc.EscalationRecord("step:rollback", "the rollback did not restore service",
                                 ("platform-lead",), at(62.0)),
            inc.EscalationRecord("10m", "NotMitigated after 10m",
                                 ("platform-lead", "incident-commander"), at(600.0)),
        ),
        freeze=inc.Freeze(active=False, scope="Namespace", since=at(1.25), lifted_at=at(600.75),
                          reason="the incident is resolved",
                          objects=("Namespace/shop", "Deployment/shop/checkout"),
                          allowed_template_hash="0123456789abcdef0123"),
        gitops=inc.GitOpsHold("suspend-gitops", "Kustomization", "flux-system", "shop",
                              "GitRepository flux-system/shop", "main@sha1:" + "1" * 40, at(3.0),
                              at(900.0), "the source revision moved on"),
        rollback=inc.RollbackRecord(from_revision=7, to_revision=6, to_replica_set="checkout-5c4b",
                                    from_replica_set="checkout-7d9f", at=at(2.5)),
        timeline=tuple(inc.TimelineEntry(at(i * 0.25), kind, f"entry {i}")
                       for i, kind in enumerate(("Detected", "StepSucceeded", "Paged",
                                                 "Failed", "Escalated", "Resolved"))),
        observed_generation=3,
        ownership=inc.OwnershipRef("shop", "checkout"),
        slow_queries=inc.SlowQueries("orders-db", at(5.0), at(15.0), (
            inc.SlowStatement("-7212376428115912345", "SELECT * FROM orders WHERE id = $1",
                              40, 150.25, 6010.0, 800),
            inc.SlowStatement("42", "SELECT 1", 1, 0.5, 0.5, 1))),
        plan_findings=(
            inc.PlanFinding("IndexRecommendations", "-7212376428115912345",
                            "SELECT * FROM orders WHERE customer_id = $1",
                            "CREATE INDEX CONCURRENTLY ON orders (customer_id): confirmed by "
                            "HypoPG", at(20.75), 13649.5, 120.25,
                            "CREATE INDEX CONCURRENTLY ON orders (customer_id)"),),
        awaiting_approval="flags",
        cluster="prod-east",
        silence=inc.SilenceRecord("7a1e5c0d-1f2b-4c3d-9e8f-0a1b2c3d4e5f", "ana@example.com",
                                  "planned failover", T0 + 3600.0,
                                  'namespace="shop", deployment=~"check.*"'),
    )


def maximal_checks() -> schedule.ChecksStatus:
    """RB-002's scheduled checks as the automation daemon writes them, every field set."""
    plan = Plan(120.75, (Scan("Bitmap Heap Scan", "orders", "orders_customer_id_idx",
                              "(customer_id = $1)"),))
    return schedule.ChecksStatus(
        database="orders-db",
        checks=(schedule.CheckRun("query-plan-diff", "QueryPlanDiff", 3600.0, at(10.5), False,
                                  "OperationalError: connection failed", 3),),
        baselines=(schedule.Baseline("42", "SELECT 1 FROM orders WHERE customer_id = $1", plan,
                                     at(1.5)),),
        findings=maximal_incident_status().plan_findings)


def targets() -> tuple[TargetState, ...]:
    return (
        TargetState(
            namespace="shop", name="checkout", revision=7, replica_set="checkout-7d9f",
            released_at=at(-120.5), healthy_since=at(-60.25), last_healthy_revision=6,
            last_healthy_replica_set="checkout-5c4b", last_healthy_at=at(-3600.125),
            previous_healthy_revision=5, previous_healthy_replica_set="checkout-9a1e",
            previous_healthy_at=at(-86400.5),
            checks={
                "readiness": ConditionState(3, at(-30.5), "Fail", 2.0, at(-0.5),
                                            "2/3 pods not Ready"),
                "error-rate": ConditionState(1, at(-10.0), "Fail", 0.0731, at(-0.25),
                                             "value 0.0731 (fires above 0.05)"),
            },
            event_counts={"checkout-7d9f-abcde.17f3a2b4c5d6e7f8": 4,
                          "checkout-7d9f-fghij.17f3a2b4c5d6e7f9": 1},
            failing_pods=("checkout-7d9f-abcde", "checkout-7d9f-fghij"),
            incident="rb-001-checkout-r7",
        ),
        TargetState(
            namespace="shop", name="payments", revision=12, replica_set="payments-6b8c",
            released_at=at(-7200.0), healthy_since=at(-7100.75), last_healthy_revision=12,
            last_healthy_replica_set="payments-6b8c", last_healthy_at=at(-7000.5),
            previous_healthy_revision=11, previous_healthy_replica_set="payments-4f2d",
            previous_healthy_at=at(-90000.25),
            checks={
                "readiness": ConditionState(0, at(-5.0), "Pass", 0.0, at(-0.75), "all Ready"),
                "retry-queue": ConditionState(2, at(-20.0), "Unknown", 150.5, at(-1.0),
                                              "no data: outcome unknown"),
            },
            event_counts={"payments-6b8c-klmno.17f3a2b4c5d6e7fa": 2},
            failing_pods=("payments-6b8c-klmno",),
            incident="rb-003-payments-r12",
        ),
    )


def test_the_maximal_records_leave_nothing_unset():
    """The round trips below only prove something if every optional field is exercised."""
    def unset(obj: Any, path: str) -> list[str]:
        found = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            where = f"{path}.{f.name}"
            if value is None or value == () or value == {} or value == "":
                found.append(where)
            for item in value if isinstance(value, tuple) else \
                    value.values() if isinstance(value, dict) else (value,):
                if dataclasses.is_dataclass(item):
                    found.extend(unset(item, where))
        return found

    assert unset(maximal_incident_status(), "status") == []
    assert unset(maximal_checks(), "scheduledChecks") == []
    assert [p for t in targets() for p in unset(t, "target")] == []


# ----------------------------------------------------------- static: schema == dataclasses
def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def mismatches(tp: Any, schema: dict, path: str, *, time: bool = False) -> list[str]:
    """Where `schema` does not describe what records.to_dict makes of a value of type `tp`."""
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if time:
        ok = schema.get("type") == "string" and schema.get("format") == "date-time"
        return [] if ok else [f"{path}: a time, wants type string, format date-time"]
    if dataclasses.is_dataclass(tp):
        if schema.get("type") != "object" or "additionalProperties" in schema:
            return [f"{path}: {tp.__name__} wants an object with properties"]
        props = schema.get("properties") or {}
        hints = typing.get_type_hints(tp)
        fields = {_camel(f.name): f for f in dataclasses.fields(tp)}
        out = [f"{path}.{name}: declared, but {tp.__name__} has no such field"
               for name in sorted(set(props) - set(fields))]
        out += [f"{path}.{name}: {tp.__name__} writes it, the schema prunes it"
                for name in sorted(set(fields) - set(props))]
        for name in sorted(set(fields) & set(props)):
            f = fields[name]
            out += mismatches(hints[f.name], props[name], f"{path}.{name}",
                              time=bool(f.metadata.get("time")))
        return out
    if origin is tuple or origin is list:
        if schema.get("type") != "array":
            return [f"{path}: a list, wants type array"]
        return mismatches(typing.get_args(tp)[0], schema["items"], f"{path}[]")
    if origin is dict:
        if schema.get("type") != "object" or not isinstance(schema.get("additionalProperties"),
                                                            dict):
            return [f"{path}: a map, wants an object with additionalProperties"]
        return mismatches(typing.get_args(tp)[1], schema["additionalProperties"], f"{path}{{}}")
    if tp in SCALARS:
        return [] if schema.get("type") == SCALARS[tp] else [
            f"{path}: {tp.__name__}, wants type {SCALARS[tp]} (has {schema.get('type')})"]
    return [f"{path}: cannot check type {tp!r}"]


def status_schema(kind: str) -> dict:
    doc = crd_documents()[kind]
    return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def test_incident_status_schema_is_exactly_the_incident_status_record():
    assert mismatches(inc.IncidentStatus, status_schema("Incident"), "Incident.status") == []


def test_policy_status_schema_is_exactly_what_the_guard_writes():
    schema = status_schema("IncidentPolicy")
    props = schema["properties"]
    # `automation` is written by the RB-003 automation daemon (automation.py), typed in the
    # CRD field by field: checked against what it writes in the e2e RB-003 tests.
    assert set(props) == {"observedGeneration", "conditions", "lastTick", "targetCount",
                          "targets", "automation", "scheduledChecks"}
    # `scheduledChecks`: RB-002's scheduled checks, by the same daemon (dbchecks/runner.py).
    assert mismatches(schedule.ChecksStatus, props["scheduledChecks"],
                      "IncidentPolicy.status.scheduledChecks") == []
    assert "x-kubernetes-preserve-unknown-fields" not in props["automation"]
    assert set(props["automation"]["properties"]) == {"targets", "history"}
    assert props["observedGeneration"]["type"] == props["targetCount"]["type"] == "integer"
    assert (props["lastTick"]["type"], props["lastTick"]["format"]) == ("string", "date-time")
    assert mismatches(tuple[conditions.Condition, ...], props["conditions"],
                      "IncidentPolicy.status.conditions") == []
    assert mismatches(tuple[TargetState, ...], props["targets"],
                      "IncidentPolicy.status.targets") == []


def test_the_comparison_notices_a_pruned_field():
    schema = status_schema("IncidentPolicy")["properties"]["targets"]
    pruned = {**schema, "items": {**schema["items"], "properties": {
        k: v for k, v in schema["items"]["properties"].items() if k != "eventCounts"}}}
    assert mismatches(tuple[TargetState, ...], pruned, "targets") == [
        "targets[].eventCounts: TargetState writes it, the schema prunes it"]


# --------------------------------------------------- round trips through the API server
def pruned(sent: Any, stored: Any, path: str = "status") -> list[str]:
    """Paths written but not stored: what the API server pruned."""
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [path]
        return [p for k, v in sent.items()
                for p in ([f"{path}.{k}"] if k not in stored else pruned(v, stored[k],
                                                                           f"{path}.{k}"))]
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) != len(sent):
            return [path]
        return [p for i, (a, b) in enumerate(zip(sent, stored, strict=True))
                for p in pruned(a, b, f"{path}[{i}]")]
    return []


def write_status(env, namespace: str, plural: str, name: str, status: dict) -> dict:
    api = client.CustomObjectsApi(env.api)
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name,
                                              {"status": status})
    return api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


@pytest.mark.cluster
@pytest.mark.usefixtures("crds")
def test_a_maximal_incident_status_survives_the_api_server(env, namespace):
    apply(env, namespace, incident())
    status = maximal_incident_status()
    sent = to_dict(status)
    stored = write_status(env, namespace, "incidents", "inc-test", sent)["status"]
    assert pruned(sent, stored) == []
    assert from_dict(inc.IncidentStatus, stored) == status


@pytest.mark.cluster
@pytest.mark.usefixtures("crds")
def test_a_policy_status_with_targets_survives_the_api_server(env, namespace):
    apply(env, namespace, policy())
    ready = conditions.Condition("Ready", "True", "Guarding",
                                 "guarding 2 Deployment(s) with RB-900 in enforce mode",
                                 at(-3600.5), 1)
    sent = {"observedGeneration": 1, "conditions": [to_dict(ready)], "lastTick": iso_precise(T0),
            "targetCount": 2, "targets": [to_dict(t) for t in targets()],
            "scheduledChecks": to_dict(maximal_checks())}
    stored = write_status(env, namespace, "incidentpolicies", "ipol-test", sent)["status"]
    assert pruned(sent, stored) == []
    assert from_dict(schedule.ChecksStatus, stored["scheduledChecks"]) == maximal_checks()
    assert tuple(from_dict(TargetState, t) for t in stored["targets"]) == targets()
    assert [from_dict(conditions.Condition, c) for c in stored["conditions"]] == [ready]
    assert (stored["observedGeneration"], stored["targetCount"]) == (1, 2)
    assert stored["lastTick"] == "2030-01-01T10:00:00.000Z"
