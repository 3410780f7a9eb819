"""The postmortem of an Incident: every section of a maximal incident with its values, a
just-detected incident that says what is not there yet, readable times and durations, and
action items that cannot close the incident flagged with the command that fixes them."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace
from typing import Any

import pytest

from missioncontrol import conditions
from missioncontrol import incident as inc
from missioncontrol.postmortem import duration, render_postmortem, since, when
from missioncontrol.records import to_dict

T0 = 1893492000.0  # 2030-01-01T10:00:00Z


def at(seconds: float) -> float:
    return T0 + seconds


# The idea of tests/integration/test_status_schema.py's maximal_incident_status (that module
# needs the cluster harness to import): every optional field set, several entries per list.
def maximal_status() -> inc.IncidentStatus:
    return inc.IncidentStatus(
        phase=inc.CLOSED,
        reason="readiness: 2/3 pods of checkout-7d9f not Ready for more than 30s; "
               "error-rate: value 0.0731 (fires above 0.05)",
        mode="enforce",
        severity="SEV2",
        detected_at=at(0.125),
        mitigating_at=at(1.25),
        mitigated_at=at(95.5),
        resolved_at=at(600.75),
        closed_at=at(900.5),
        healthy_since=at(480.875),
        escalated=True,
        slo=inc.Slo(deadline=at(1200.125), breached=False, status="met"),
        conditions=(
            conditions.Condition("Active", "False", "Closed", "stable for 2m", at(600.75), 3),
            conditions.Condition("Mitigated", "True", "Mitigated", "all steps done", at(95.5),
                                 2),
            conditions.Condition("Escalated", "True", "Escalated", "step rollback failed",
                                 at(62.0), 1),
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
                           approval="dry run: would wait for approval by release-owner"),
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
                           approval="approved by ada"),
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
            inc.Page("oncall-backend", "primary", "PagerDuty", "page", at(60.5), "failed",
                     3, "HTTP 429: rate limited", None, 1,
                     about="automation-stopped", summary="escalated: rollback failed",
                     tried_at=at(90.5)),
            inc.Page("platform-lead", "Grace", "Webhook", "resolve", at(601.0), "delivered", 4,
                     "retried", at(602.0), 1,
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
                              "GitRepository flux-system/shop", "main@sha1:1a2b3c", at(3.0),
                              at(900.0), "the source revision moved on from main@sha1:1a2b3c "
                              "to main@sha1:4d5e6f"),
        rollback=inc.RollbackRecord(from_revision=7, to_revision=6, to_replica_set="checkout-5c4b",
                                    from_replica_set="checkout-7d9f", at=at(2.5)),
        timeline=tuple(inc.TimelineEntry(at(t), kind, msg) for t, kind, msg in (
            (0.125, "Detected", "readiness failed 3 consecutive checks"),
            (1.25, "Mitigating", "running first response"),
            (62.0, "Escalated", "the rollback did not restore service; paging platform-lead"),
            (95.5, "Mitigated", "the target is healthy again"),
            (600.75, "Resolved", "stable for 2m"),
            (900.5, "Closed", "closed with 2 action item(s)"),
        )),
        observed_generation=3,
        ownership=inc.OwnershipRef("shop", "checkout"),
        slow_queries=inc.SlowQueries("orders-db", T0 + 5, T0 + 15, (
            inc.SlowStatement("42", "SELECT * FROM orders WHERE id = $1", 40, 150.0, 6000.0,
                              800),)),
        plan_findings=(inc.PlanFinding(
            "IndexRecommendations", "42", "SELECT * FROM orders WHERE customer_id = $1",
            "CREATE INDEX CONCURRENTLY ON orders (customer_id): confirmed by HypoPG, "
            "estimated cost 13649.47 -> 120.35", T0 + 20, 13649.47, 120.35,
            "CREATE INDEX CONCURRENTLY ON orders (customer_id)"),),
        awaiting_approval="replay",
        cluster="prod-east",
        silence=inc.SilenceRecord("5f1c", "ana", "db maintenance", at(3600.0),
                                  'namespace="shop"'),
    )


def body(status: inc.IncidentStatus | None, **spec: Any) -> dict:
    """The Incident as the API returns it: times as RFC 3339 strings in status."""
    obj = {
        "apiVersion": "missioncontrol.dev/v1alpha1", "kind": "Incident",
        "metadata": {"name": "rb-001-checkout-r7", "namespace": "shop",
                     "creationTimestamp": "2030-01-01T10:00:00Z"},
        "spec": {"runbook": {"name": "rb-001", "id": "RB-001"},
                 "policy": "checkout-failed-deployment",
                 "target": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
                 "severity": "SEV1", "owner": "ada", "mode": "enforce",
                 "summary": "RB-001 Failed Production Deployment: checkout revision 7 "
                            "failed readiness",
                 **spec},
    }
    if status is not None:
        obj["status"] = to_dict(status)
    return obj


ACKS = [{"role": "release-owner", "by": "ada", "at": "2030-01-01T10:02:00Z"},
        {"role": "incident-commander", "by": "linus", "at": "2030-01-01T10:11:00Z"}]
ITEMS = [{"title": "Gate checkout releases on the readiness canary", "assignee": "ada",
          "due": "2030-01-15"},
         {"title": "Raise the PagerDuty rate limit", "assignee": "grace",
          "due": "2030-01-20T17:00:00Z"}]


def maximal() -> dict:
    return body(maximal_status(), acknowledgements=ACKS, actionItems=ITEMS, close=True)


def section(markdown: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section {heading!r} in:\n{markdown}"
    return match.group(1)


def says(text: str, *phrases: str) -> None:
    missing = [p for p in phrases if p not in text]
    assert not missing, f"missing {missing} in:\n{text}"


HEADINGS = ["Summary", "Impact and blast radius", "Slow queries", "Query plans", "Timeline",
            "What the runbook did",
            "Deploy freeze", "Rollback", "People", "Recovery SLO", "Action items",
            "Conditions"]


def test_the_maximal_status_leaves_nothing_unset():
    """The maximal test below only proves every field renders if every field is set."""
    def unset(obj: Any, path: str) -> list[str]:
        found = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None or value == () or value == "":
                found.append(f"{path}.{f.name}")
            for item in value if isinstance(value, tuple) else (value,):
                if dataclasses.is_dataclass(item):
                    found.extend(unset(item, f"{path}.{f.name}"))
        return found

    # One page is deliberately unacknowledged: "never acknowledged" is part of the story.
    assert unset(maximal_status(), "status") == ["status.pages.acknowledged_at"]


# -- the maximal incident ---------------------------------------------------------------------
def test_every_section_in_order():
    page = render_postmortem(maximal())
    assert re.findall(r"^## (.+)$", page, re.M) == HEADINGS
    assert page.splitlines()[0] == (
        "# Postmortem: rb-001-checkout-r7 — RB-001 on Deployment shop/checkout (SEV1)")
    assert page.endswith("\n") and not page.endswith("\n\n")


def test_summary_says_what_fired_why_when_and_how_long():
    text = section(render_postmortem(maximal()), "Summary")
    says(text, "Alertmanager silence `5f1c` by ana until 2030-01-01T11:00:00Z",
         '(namespace="shop"): db maintenance')
    says(text, "Cluster `prod-east`, Runbook RB-001 (`rb-001`), policy "
               "`checkout-failed-deployment`, owner ada, "
               "severity SEV1 (the operator last acted on SEV2).",
         "RB-001 Failed Production Deployment: checkout revision 7 failed readiness.",
         "Why it fired: readiness: 2/3 pods of checkout-7d9f not Ready for more than 30s; "
         "error-rate: value 0.0731 (fires above 0.05).",
         "Detected at 2030-01-01 10:00:00 UTC.",
         "Mitigated after 1m35s; resolved after 10m01s; closed after 15m (phase Closed).",
         "It ran in enforce mode", "It was escalated",
         "- Detected: 2030-01-01 10:00:00 UTC\n",
         "- First response started: 2030-01-01 10:00:01 UTC (1s after detection)",
         "- Mitigated: 2030-01-01 10:01:35 UTC (1m35s after detection; first response took "
         "1m34s)",
         "- Resolved: 2030-01-01 10:10:00 UTC (10m01s after detection; stable since 10:08:00 "
         "UTC, 2m before recovery was confirmed)",
         "- Closed: 2030-01-01 10:15:00 UTC (15m after detection)",
         "- **readiness**: Fail (value 2) — 2/3 pods not Ready, at 10:00:00 UTC",
         "- **retry-queue**: Unknown (value -1.5) — no data: outcome unknown")


def test_blast_radius():
    text = section(render_postmortem(maximal()), "Impact and blast radius")
    says(text, "Checked at 2030-01-01 10:00:30 UTC (T+30s). 1/2 synthetic checks passed "
               "(failing: cart); 1/2 dashboards answered.",
         "Synthetic checks: 1/2 passed (failing: cart).",
         "| home | https://shop.example/ | pass | 200 | 250 ms | slow-ish |",
         "| cart | https://shop.example/cart | FAIL | 503 | 1.00 s | "
         "HTTP 503: upstream unavailable |",
         '| errors | `sum(rate(errors_total{namespace="shop"}[5m]))` | Ok | {} 0.0731 |',
         "| latency | `histogram_quantile(0.99, x)` | Error | ClientError: timeout |")


def test_query_plans_show_the_scheduled_checks_findings():
    text = section(render_postmortem(maximal()), "Query plans")
    says(text, "(indexes are proposed only: the operator never runs DDL)",
         "| IndexRecommendations | 2030-01-01 10:00:20 UTC (T+20s) | `42` | CREATE INDEX "
         "CONCURRENTLY ON orders (customer_id): confirmed by HypoPG, estimated cost 13649.47 -> "
         "120.35 | "
         "13649.47 -> 120.35 | `SELECT * FROM orders WHERE customer_id = $1` |")
    empty = section(render_postmortem(body(replace(maximal_status(), plan_findings=()))),
                    "Query plans")
    assert empty.strip().startswith("The scheduled database checks (QueryPlanDiff, "
                            "IndexRecommendations) found nothing while it was open.")


def test_timeline_is_a_table_oldest_first_and_points_to_the_events():
    status = maximal_status()
    shuffled = replace(status, timeline=tuple(reversed(status.timeline)))
    text = section(render_postmortem(body(shuffled)), "Timeline")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| Time (UTC) | T+ | Event | What happened |"
    assert rows[1:] == [
        "| 10:00:00 | T+0s | Detected | readiness failed 3 consecutive checks |",
        "| 10:00:01 | T+1s | Mitigating | running first response |",
        "| 10:01:02 | T+1m02s | Escalated | the rollback did not restore service; paging "
        "platform-lead |",
        "| 10:01:35 | T+1m35s | Mitigated | the target is healthy again |",
        "| 10:10:00 | T+10m01s | Resolved | stable for 2m |",
        "| 10:15:00 | T+15m | Closed | closed with 2 action item(s) |",
    ]
    says(text, "keeps the newest 50 entries and holds 6, so this is the whole timeline so far",
         "older entries are only in the Kubernetes Events of the Incident",
         "kubectl get events -n shop --field-selector "
         "involvedObject.kind=Incident,involvedObject.name=rb-001-checkout-r7")


def test_a_full_timeline_says_older_entries_were_dropped_to_the_events():
    status = maximal_status()
    status = replace(status, timeline=tuple(
        inc.TimelineEntry(at(60.0 * i), "StakeholderUpdate", f"update {i} | delivered")
        for i in range(inc.TIMELINE_LIMIT)))
    text = section(render_postmortem(body(status)), "Timeline")
    says(text, "keeps only the newest 50 entries, and holds 50: older entries were dropped "
               "from it. They are in the Kubernetes Events of the Incident: `kubectl get events")
    # Spans two UTC days (50 minutes from 10:00 stay on one; make it cross midnight).
    late = replace(status, timeline=(*status.timeline[1:],
                                     inc.TimelineEntry(at(15 * 3600.0), "Closed", "done")))
    text = section(render_postmortem(body(late)), "Timeline")
    says(text, "| Date and time (UTC) |", "| 2030-01-02 01:00:00 | T+15h00m | Closed | done |",
         "update 1 \\| delivered")   # a pipe in a message does not break the table


def test_steps_say_what_changed_from_and_to():
    text = section(render_postmortem(maximal()), "What the runbook did")
    says(text, "to undo it, set the field back to its value before the arrow",
         "1. **freeze** (`freezeDeployments`): Succeeded in <1s, 10:00:01 to 10:00:01 UTC, "
         "1 attempt.",
         "   - Result: froze Namespace/shop",
         "   - Changed Namespace shop `metadata.labels[frozen]`: `false` -> `true`",
         "2. **rollback** (`rollback`): Failed in 1m, 10:00:02 to 10:01:02 UTC, 3 attempts.",
         "   - Changed Deployment shop/checkout `spec.template`: `revision 7 (checkout-7d9f)` "
         "-> `revision 6 (checkout-5c4b)`",
         "   - Changed ConfigMap shop/flags `data[safe-mode]`: `off` -> `on`",
         "3. **replay** (`replaySample`): Planned in <1s",
         "   - Would change Job shop/replay-inc `created`: `none` -> `replay of 100 events`")


def test_freeze_and_rollback():
    page = render_postmortem(maximal())
    says(section(page, "Deploy freeze"),
         "From 2030-01-01 10:00:01 UTC to 2030-01-01 10:10:00 UTC, 10m. Scope Namespace: "
         "`Namespace/shop`, `Deployment/shop/checkout`.",
         "Lifted because: the incident is resolved.",
         "fingerprint `0123456789abcdef0123`",
         "GitOps: Kustomization `flux-system/shop` suspended 2030-01-01 10:00:03 UTC at "
         "revision `main@sha1:1a2b3c`, read from GitRepository flux-system/shop.",
         "Resumed 2030-01-01 10:15:00 UTC: the source revision moved on from "
         "main@sha1:1a2b3c to main@sha1:4d5e6f.")
    says(section(page, "Rollback"),
         "From revision 7 (ReplicaSet `checkout-7d9f`) -> to revision 6 (ReplicaSet "
         "`checkout-5c4b`), at 2030-01-01 10:00:02 UTC (T+2s).",
         "Rollback step `rollback`: Failed — rolled back, but not healthy within 1m.")


def test_people():
    text = section(render_postmortem(maximal()), "People")
    says(text, "First page delivered <1s after detection. First acknowledgement 2m after "
               "detection. Never acknowledged: oncall-backend.",
         "| Role | Contact | Route | Kind | Sent (UTC) | Outcome | Attempts | Round | "
         "Acknowledged | Error |",
         "| release-owner | Ada | Slack | page | 10:00:01 | delivered | 1 | 2 | 10:02:00 by ada "
         "| first attempt timed out |",
         "| oncall-backend | primary | PagerDuty | page | 10:01:00 | failed | 3 | 1 | — | "
         "HTTP 429: rate limited |",
         "| platform-lead | Grace | Webhook | resolve | 10:10:01 | delivered | 4 | 1 | "
         "10:10:02 |",
         "Acknowledged without a recorded page: incident-commander by linus at 10:11:00.",
         "- 10:01:02 UTC (T+1m02s), rule `step:rollback`: the rollback did not restore "
         "service; paged platform-lead",
         "- 10:10:00 UTC (T+10m), rule `10m`: NotMitigated after 10m; paged platform-lead, "
         "incident-commander",
         "#inc-rb-001-checkout, announced at 2030-01-01 10:00:01 UTC (T+1s) (delivered).",
         "| 10:00:05 | Mitigating | delivered (first attempt: HTTP 503) | rolling back checkout "
         "| 10:01:05 |",
         "| 10:10:01 | Resolved | failed (HTTP 500) | checkout recovered | final |",
         "1 update did not reach stakeholders.")


def test_slo_met_by_how_much():
    text = section(render_postmortem(maximal()), "Recovery SLO")
    assert text.strip() == ("Deadline: 2030-01-01 10:20:00 UTC (20m after detection). "
                            "**Met**: resolved at 10:10:00 UTC, 9m59s before the deadline.")


def test_an_active_freeze_says_how_to_lift_it_and_a_missing_rollback_target_is_said():
    status = maximal_status()
    status = replace(
        status, phase=inc.MITIGATING, mitigated_at=None, resolved_at=None, closed_at=None,
        freeze=inc.Freeze(active=True, scope="Deployment", since=at(1.25),
                          reason="incident rb-001-checkout-r7",
                          objects=("Deployment/shop/checkout",)),
        rollback=inc.RollbackRecord(from_revision=1, from_replica_set="checkout-1a"),
        steps=(inc.StepRecord("freeze", "freezeDeployments", inc.SUCCEEDED, at(1.25), at(1.5),
                              "froze Deployment/shop/checkout",
                              (inc.Change("Deployment", "checkout", "metadata.labels[frozen]",
                                          None, "true", "shop"),), 1),
               inc.StepRecord("rollback", "rollback", inc.SKIPPED, at(2.0), None,
                              "no known healthy release of checkout: nothing to roll back to")))
    page = render_postmortem(body(status))
    says(section(page, "Deploy freeze"),
         "**Still active** since 2030-01-01 10:00:01 UTC (T+1s). Scope Deployment: "
         "`Deployment/shop/checkout`. Frozen for: incident rb-001-checkout-r7.",
         "kubectl patch incident rb-001-checkout-r7 -n shop --type merge -p "
         "'{\"spec\":{\"liftFreeze\":true}}'")
    says(section(page, "Rollback"),
         "From revision 1 (ReplicaSet `checkout-1a`): no healthy revision was known to roll "
         "back to.", "Rollback step `rollback`: Skipped — no known healthy release")
    says(section(page, "What the runbook did"),
         "Changed Deployment shop/checkout `metadata.labels[frozen]`: (unset) -> `true`",
         "2. **rollback** (`rollback`): Skipped at 10:00:02 UTC.")
    says(section(page, "Summary"), "Not mitigated yet; not resolved yet (phase Mitigating).")


def test_slo_breached_by_how_much():
    status = replace(maximal_status(), resolved_at=at(1500.125),
                     slo=inc.Slo(at(1200.125), True, "breached"))
    says(section(render_postmortem(body(status)), "Recovery SLO"),
         "**Breached** by 5m: resolved at 10:25:00 UTC.")
    still = replace(status, phase=inc.MITIGATING, resolved_at=None, closed_at=None)
    says(section(render_postmortem(body(still)), "Recovery SLO"),
         "**Breached**: not resolved by the deadline; still not resolved")


def test_action_items_and_conditions():
    page = render_postmortem(maximal())
    assert section(page, "Action items").strip().splitlines() == [
        "- [ ] Gate checkout releases on the readiness canary — ada (due 2030-01-15)",
        "- [ ] Raise the PagerDuty rate limit — grace (due 2030-01-20 17:00 UTC)",
        "",
        "Closed at 2030-01-01 10:15:00 UTC with these items.",
    ]
    says(section(page, "Conditions"),
         "| Type | Status | Reason | Since (UTC) | Message |",
         "| Active | False | Closed | 2030-01-01 10:10:00 UTC | stable for 2m |",
         "| Escalated | True | Escalated | 2030-01-01 10:01:02 UTC | step rollback failed |")


def test_a_dry_run_says_nothing_was_changed():
    status = replace(maximal_status(), mode="dryRun")
    page = render_postmortem(body(status, mode="dryRun"))
    says(section(page, "Summary"), "dry-run mode: nothing in the cluster was changed")
    says(section(page, "What the runbook did"), "Dry run: nothing was changed")


# -- a just-detected incident -----------------------------------------------------------------
def just_detected() -> dict:
    status = inc.opened(now=T0, mode="enforce", slo=1200.0, reason="readiness failed 3 "
                        "consecutive checks", evidence=(), steps=(("freeze", "freezeDeployments"),
                                                                  ("rollback", "rollback")))
    return body(status, summary="")


def test_a_just_detected_incident_says_what_is_not_there_yet():
    page = render_postmortem(just_detected())
    assert re.findall(r"^## (.+)$", page, re.M) == HEADINGS
    says(section(page, "Summary"), "RB-001 fired for Deployment shop/checkout.",
         "Not mitigated yet; not resolved yet (phase Detected).", "It runs in enforce mode",
         "- Mitigated: not yet", "- Resolved: not yet", "- Closed: not yet")
    says(section(page, "Impact and blast radius"), "has not been assessed yet.")
    says(section(page, "Timeline"), "| 10:00:00 | T+0s | Detected | readiness failed 3 "
                                    "consecutive checks |")
    says(section(page, "What the runbook did"), "1. **freeze** (`freezeDeployments`): "
                                                "Pending, not started.")
    says(section(page, "Deploy freeze"), "No deploy freeze", "has not run yet")
    says(section(page, "Rollback"), "No rollback: step `rollback` is Pending")
    says(section(page, "People"), "Nobody has been paged yet.", "No escalations.",
         "No response channel has been announced.", "No stakeholder updates have been sent.")
    says(section(page, "Recovery SLO"), "Deadline: 2030-01-01 10:20:00 UTC (20m after "
                                        "detection).", "Not resolved yet")
    says(section(page, "Action items"), "**None yet.**", "cannot be closed without them",
         "kubectl patch incident rb-001-checkout-r7 -n shop --type merge -p "
         "'{\"spec\": {\"actionItems\": [{\"title\": ")
    says(section(page, "Conditions"), "| Active | True | Detected |")
    # Each missing section is said in one line: no empty section anywhere.
    for heading in HEADINGS:
        assert section(page, heading).strip()


def test_an_incident_without_status_or_optional_spec_renders():
    obj = {"metadata": {"name": "inc-x", "namespace": "shop"},
           "spec": {"runbook": {"name": "rb-002", "id": "RB-002"},
                    "target": {"namespace": "shop", "name": "db"}}}
    page = render_postmortem(obj)
    assert page.startswith("# Postmortem: inc-x — RB-002 on Deployment shop/db "
                           "(severity not declared)")
    says(page, "no incident owner declared", "has not written a status",
         "No timeline entries", "No recovery SLO deadline", "No conditions are set.")


# -- formatting -------------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.25, "<1s"), (45, "45s"), (95.375, "1m35s"), (600.625, "10m01s"),
    (3900, "1h05m"), (86400 * 2 + 3 * 3600 + 59, "2d03h")])
def test_durations_read_short(seconds: float, text: str):
    assert duration(seconds) == text


def test_timestamps_read_in_utc_with_the_offset_from_detection():
    assert when(T0 + 0.999) == "2030-01-01 10:00:00 UTC"
    assert when(None) == "—"
    assert since(T0 + 95.5, T0) == "T+1m36s"
    assert since(T0 - 30, T0) == "T-30s"
    assert since(T0, None) == "—"


# -- action items that cannot close the incident ----------------------------------------------
def test_action_items_without_assignee_are_flagged_with_the_fix():
    items = [{"title": "Add a canary", "assignee": "ada"},
             {"title": "Fix the | flaky probe", "due": "2030-02-01"},
             {"title": "Write the runbook for the cache", "assignee": ""}]
    status = replace(maximal_status(), phase=inc.RESOLVED, closed_at=None)
    text = section(render_postmortem(body(status, actionItems=items)), "Action items")
    says(text, "- [ ] Add a canary — ada\n",
         "- [ ] Fix the | flaky probe — **no assignee** (due 2030-02-01)",
         "- [ ] Write the runbook for the cache — **no assignee**",
         "**2 action items without an assignee**: the incident cannot be closed until every "
         "item has one.",
         "kubectl patch incident rb-001-checkout-r7 -n shop --type json -p "
         "'[{\"op\": \"add\", \"path\": \"/spec/actionItems/1/assignee\", \"value\": \"who\"}, "
         "{\"op\": \"add\", \"path\": \"/spec/actionItems/2/assignee\", \"value\": \"who\"}]'")
    assert "close\":true" not in text


def test_assigned_items_on_a_resolved_incident_say_how_to_close():
    status = replace(maximal_status(), phase=inc.RESOLVED, closed_at=None)
    text = section(render_postmortem(body(status, actionItems=ITEMS)), "Action items")
    says(text, "Every item has an assignee: close the incident with:",
         "kubectl patch incident rb-001-checkout-r7 -n shop --type merge -p "
         "'{\"spec\":{\"close\":true}}'")
