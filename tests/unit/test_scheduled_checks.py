"""RB-002's scheduled checks as decisions on a fake clock (dbchecks/schedule.py): which checks
are due, what a run records against the baselines, when an Event is due, what an open
incident takes; the runner's edges (a Secret, an unreachable database) with FakeKube and a
real connection refused; and the automation daemon only for policies whose runbook asks."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import kopf
import yaml
from fakekube import FakeKube

import missioncontrol.handlers.automation  # noqa: F401 - registers the automation daemon
from missioncontrol import automation, guard
from missioncontrol import incident as inc
from missioncontrol.dbchecks import runner, schedule
from missioncontrol.dbchecks.indexes import Proposal, Recommendation
from missioncontrol.dbchecks.plans import Plan, Scan
from missioncontrol.model import Policy, Runbook, ScheduledCheck, SecretRef
from missioncontrol.records import from_dict, to_dict

T0 = 1_900_000_000.0
CATALOGUE = Path(__file__).resolve().parents[2] / "runbooks"
DIFF = ScheduledCheck("query-plan-diff", "QueryPlanDiff", 3600.0)
INDEXES = ScheduledCheck("index-recommendations", "IndexRecommendations", 6 * 3600.0)
CHECKS = (DIFF, INDEXES)
HISTORY = ("SELECT id, status, total, created_at FROM orders WHERE customer_id = $1 "
           "ORDER BY created_at DESC LIMIT $2")
INDEXED = Plan(120.72, (Scan("Bitmap Heap Scan", "orders", "orders_customer_id_idx",
                             "(customer_id = $1)"),))
SEQUENTIAL = Plan(13649.47, (Scan("Seq Scan", "orders", None, "(customer_id = $1)"),))
SIZES = {"orders": 600_000.0}
REC = Recommendation(Proposal("orders", ("customer_id",)), HISTORY, 13649.47, 120.35, True)


def seen(plan: Plan, *recs: Recommendation, queryid: str = "7") -> schedule.Observation:
    return schedule.Observation((schedule.Watched(queryid, HISTORY, plan),), SIZES,
                                tuple((queryid, r) for r in recs))


def run(state: schedule.ChecksStatus, observation: schedule.Observation, now: float,
        checks: tuple[ScheduledCheck, ...] = CHECKS) -> schedule.ChecksStatus:
    return schedule.judged(state, checks, observation, now=now, database="orders-db")


# -- the timer --------------------------------------------------------------------------------
def test_each_check_is_due_at_its_own_every_and_the_timer_wakes_for_the_next():
    empty = schedule.ChecksStatus()
    assert schedule.due(CHECKS, empty, now=T0) == CHECKS   # never run: at once
    assert schedule.wait(CHECKS, empty, now=T0) == schedule.MIN_WAIT
    ran = run(empty, seen(INDEXED), T0)
    assert schedule.due(CHECKS, ran, now=T0 + 100) == ()
    # An hour is far: it looks again within a minute anyway (a policy edit, a restart).
    assert schedule.wait(CHECKS, ran, now=T0 + 100) == schedule.MAX_WAIT
    assert schedule.wait(CHECKS, ran, now=T0 + 3590) == 10.0
    assert schedule.due(CHECKS, ran, now=T0 + 3600) == (DIFF,)
    assert schedule.due(CHECKS, ran, now=T0 + 6 * 3600) == CHECKS
    # What it recorded survives a restart: the status read back decides the same.
    back = from_dict(schedule.ChecksStatus, to_dict(ran))
    assert back == ran and schedule.due(CHECKS, back, now=T0 + 100) == ()


# -- the diff against the baseline -------------------------------------------------------------
def test_the_first_plan_is_the_baseline_and_a_seq_scan_later_is_a_finding_told_once():
    first = run(schedule.ChecksStatus(), seen(INDEXED), T0)
    assert first.findings == () and [b.plan for b in first.baselines] == [INDEXED]
    assert schedule.events(schedule.ChecksStatus(), first) == []

    regressed = run(first, seen(SEQUENTIAL, REC), T0 + 3600)
    diff, rec = regressed.findings
    assert (diff.check, diff.queryid, diff.since) == ("QueryPlanDiff", "7", T0 + 3600)
    assert diff.message == ("Bitmap Heap Scan -> Seq Scan on orders (600000 rows; was using "
                            "index orders_customer_id_idx); estimated cost 120.72 -> 13649.47 "
                            "(x113.1)")
    assert (diff.cost_before, diff.cost_after) == (120.72, 13649.47)
    assert rec.message == ("CREATE INDEX CONCURRENTLY ON orders (customer_id): confirmed by "
                           "HypoPG, estimated cost 13649.47 -> 120.35")
    assert rec.ddl == "CREATE INDEX CONCURRENTLY ON orders (customer_id)"
    assert (rec.cost_before, rec.cost_after) == (13649.47, 120.35)
    # The good plan stays the baseline while the bad one lasts.
    assert [b.plan for b in regressed.baselines] == [INDEXED]
    told = schedule.events(first, regressed)
    assert [(t, r) for t, r, _ in told] == [("Warning", "QueryPlanChanged"),
                                             ("Warning", "IndexRecommended")]
    assert told[0][2].startswith("QueryPlanDiff: Bitmap Heap Scan -> Seq Scan on orders")

    # The next run finds the same with other estimates (an ANALYZE): not news, `since` kept.
    drifted = replace(SEQUENTIAL, total_cost=13702.1)
    again = run(regressed, seen(drifted, replace(REC, cost_before=13702.1)), T0 + 7200)
    assert [f.since for f in again.findings] == [T0 + 3600, T0 + 3600]
    assert "13702.10" in again.findings[0].message
    assert schedule.events(regressed, again) == []

    # The index is back: the finding goes, once told; the plan is the baseline again.
    fixed = run(again, seen(INDEXED), T0 + 10800)
    assert fixed.findings == ()
    assert [r for _, r, _ in schedule.events(again, fixed)] == ["PlanCheckCleared"] * 2


def test_a_statement_out_of_a_runs_top_keeps_its_finding_and_is_not_told_again():
    """The top statements by time move with the traffic: one that drops out of a run was not
    looked at, so its finding stays (not cleared, then told again when it is back)."""
    first = run(schedule.ChecksStatus(), seen(INDEXED), T0)
    regressed = run(first, seen(SEQUENTIAL, REC), T0 + 3600)
    other = schedule.Observation((schedule.Watched("8", "SELECT 1 FROM customers", INDEXED),),
                                 SIZES, ())
    away = run(regressed, other, T0 + 7200)
    assert [(f.check, f.queryid) for f in away.findings] == [
        ("QueryPlanDiff", "7"), ("IndexRecommendations", "7")]
    assert schedule.events(regressed, away) == []
    back = run(away, seen(SEQUENTIAL, REC), T0 + 10800)
    assert schedule.events(away, back) == []
    assert [f.since for f in back.findings] == [T0 + 3600, T0 + 3600]
    # Looked at again and fixed: cleared, once.
    fixed = run(back, seen(INDEXED), T0 + 14400)
    assert fixed.findings == ()
    assert [r for _, r, _ in schedule.events(back, fixed)] == ["PlanCheckCleared"] * 2


def test_an_unconfirmed_index_and_a_cheap_change_are_no_findings():
    base = run(schedule.ChecksStatus(), seen(INDEXED), T0)
    unused = replace(REC, cost_after=13649.47, used=False)
    cheaper = Plan(100.0, INDEXED.scans)
    later = run(base, seen(cheaper, unused), T0 + 3600)
    assert later.findings == ()
    # No worse than the baseline: it becomes the baseline (estimates drift).
    assert later.baselines[0].plan == cheaper and later.baselines[0].at == T0 + 3600


def test_only_the_checks_that_ran_replace_their_findings():
    base = run(schedule.ChecksStatus(), seen(INDEXED), T0)
    both = run(base, seen(SEQUENTIAL, REC), T0 + 3600)
    # An hour on only QueryPlanDiff runs: the index recommendation stays as it was found.
    diff_only = run(both, seen(SEQUENTIAL), T0 + 7200, checks=(DIFF,))
    assert [f.check for f in diff_only.findings] == ["IndexRecommendations", "QueryPlanDiff"]


def test_what_is_kept_is_bounded():
    many = schedule.Observation(tuple(
        schedule.Watched(str(n), f"SELECT {n} " + "x" * 2000, INDEXED) for n in range(15)),
        SIZES)
    state = run(schedule.ChecksStatus(), many, T0)
    assert len(state.baselines) == schedule.MAX_STATEMENTS
    assert {len(b.query) for b in state.baselines} == {schedule.QUERY_CHARS}
    wide = Plan(1.0, tuple(Scan("Seq Scan", f"t{n}", None, "y" * 999) for n in range(20)))
    state = run(schedule.ChecksStatus(), seen(wide), T0)
    (baseline,) = state.baselines
    assert len(baseline.plan.scans) == schedule.MAX_SCANS
    assert {len(s.filter) for s in baseline.plan.scans} == {schedule.FILTER_CHARS}
    # The statements watched now are kept first; the longest out of sight go.
    newer = run(state, schedule.Observation(tuple(
        schedule.Watched(f"n{n}", "SELECT 1", INDEXED) for n in range(12)), SIZES), T0 + 3600)
    assert [b.queryid for b in newer.baselines] == [f"n{n}" for n in range(10)]


def test_a_run_that_cannot_read_says_why_once_and_keeps_what_it_knew():
    base = run(schedule.ChecksStatus(), seen(INDEXED), T0)
    regressed = run(base, seen(SEQUENTIAL, REC), T0 + 3600)
    down = run(regressed, schedule.Observation(error="OperationalError: connection failed: "
                                                     "port 5432 refused"), T0 + 7200)
    assert [(c.ok, c.error) for c in down.checks] == [
        (False, "OperationalError: connection failed: port 5432 refused")] * 2
    # No data is no news: the baselines and the findings stay as they were.
    assert down.baselines == regressed.baselines and down.findings == regressed.findings
    told = schedule.events(regressed, down)
    assert [(t, r) for t, r, _ in told] == [("Warning", "ScheduledCheckFailed")] * 2
    assert told[0][2] == ("QueryPlanDiff (query-plan-diff): OperationalError: connection "
                          "failed: port 5432 refused")
    still = run(down, schedule.Observation(error="OperationalError: connection failed: "
                                                 "port 5432 refused"), T0 + 10800)
    assert schedule.events(down, still) == []
    back = run(still, seen(SEQUENTIAL, REC), T0 + 14400)
    assert [r for _, r, _ in schedule.events(still, back)] == ["ScheduledCheckRecovered"] * 2


def test_a_check_removed_from_the_runbook_goes_with_its_findings():
    both = run(run(schedule.ChecksStatus(), seen(INDEXED), T0), seen(SEQUENTIAL, REC),
               T0 + 3600)
    left = schedule.configured(both, (DIFF,))
    assert [c.name for c in left.checks] == ["query-plan-diff"]
    assert [f.check for f in left.findings] == ["QueryPlanDiff"]


# -- attached to the open incident -------------------------------------------------------------
def test_an_open_incident_takes_the_findings_once_each_and_keeps_them():
    found = run(run(schedule.ChecksStatus(), seen(INDEXED), T0), seen(SEQUENTIAL, REC),
                T0 + 3600).findings
    opened = inc.opened(now=T0, mode="enforce", slo=2700, evidence=(), steps=(), reason="p95")
    attached = schedule.attach(opened, found, now=T0 + 3601)
    assert attached.plan_findings == found
    new = attached.timeline[len(opened.timeline):]
    assert [(e.type, e.at) for e in new] == [("QueryPlanChanged", T0 + 3601),
                                             ("IndexRecommended", T0 + 3601)]
    assert new[1].message.startswith("IndexRecommendations: CREATE INDEX CONCURRENTLY ON "
                                     "orders (customer_id): confirmed by HypoPG")
    # Every round offers them again: nothing new, nothing written.
    assert schedule.attach(attached, found, now=T0 + 3610) is attached
    # They cleared on the policy: the incident keeps what was true while it was open.
    assert schedule.attach(attached, (), now=T0 + 3620) is attached
    closed = inc.move(opened, T0 + 10, inc.RESOLVED, "ok")
    assert schedule.attach(closed, found, now=T0 + 3601) is closed


def test_the_findings_are_read_from_the_policy_status_as_the_api_returns_it():
    state = run(run(schedule.ChecksStatus(), seen(INDEXED), T0), seen(SEQUENTIAL, REC),
                T0 + 3600)
    assert schedule.findings_of({"scheduledChecks": to_dict(state)}) == state.findings
    assert schedule.findings_of(None) == ()
    assert schedule.findings_of({"scheduledChecks": {"findings": "garbage"}}) == ()


# -- the runner's edges -------------------------------------------------------------------------
def catalogue(name: str) -> dict:
    (path,) = CATALOGUE.glob(f"{name}*.yaml")
    return next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Runbook")


def resolved(runbook: dict) -> guard.Resolved:
    body = {**runbook, "metadata": {**runbook["metadata"], "namespace": "shop"}}
    policy = Policy.parse({"metadata": {"name": "orders", "namespace": "shop"}, "spec": {
        "runbookRef": {"name": body["metadata"]["name"]},
        "targets": {"selector": {"matchLabels": {"app": "orders"}}}}})
    return guard.Resolved(policy, Runbook.parse(body), None)


def dsn_secret(dsn: str) -> dict:
    import base64
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "orders-db", "namespace": "shop"},
            "data": {"dsn": base64.b64encode(dsn.encode()).decode()}}


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_database_is_recorded_with_a_warning_and_the_timer_goes_on():
    now = [T0]
    kube = FakeKube(dsn_secret(f"postgresql://mc:x@127.0.0.1:{free_port()}/orders"))
    ctx = guard.Context(kube, None, lambda: now[0])
    bundle = resolved(catalogue("rb-002"))
    first = asyncio.run(runner.tick(ctx, bundle, {}))
    state = from_dict(schedule.ChecksStatus, first.status)
    assert state.database == "orders-db"
    assert [c.name for c in state.checks] == ["query-plan-diff", "index-recommendations"]
    assert all(not c.ok and c.error.startswith("OperationalError: connection failed")
               for c in state.checks), state.checks
    assert [(t, r) for t, r, _ in first.events] == [("Warning", "ScheduledCheckFailed")] * 2
    assert first.wait == schedule.MAX_WAIT
    # Not due again for an hour: nothing read, nothing told.
    now[0] = T0 + 60
    second = asyncio.run(runner.tick(ctx, bundle, first.status))
    assert second.status == first.status and second.events == []
    # The Secret gone: said, with the Secret's name.
    now[0] = T0 + 6 * 3600
    kube.objects.pop(("Secret", "shop", "orders-db"), None)
    gone = asyncio.run(runner.tick(ctx, bundle, second.status))
    assert {c["error"] for c in gone.status["checks"]} == {
        "Secret shop/orders-db does not exist"}, gone.status


def test_a_check_reads_its_own_secret_else_the_slow_query_steps():
    bundle = resolved(catalogue("rb-002"))
    rb = bundle.runbook
    assert rb.check_database(DIFF) == SecretRef("orders-db", "dsn")
    own = replace(DIFF, database=SecretRef("orders-db-checks", "dsn"))
    assert rb.check_database(own) == SecretRef("orders-db-checks", "dsn")
    assert resolved(catalogue("rb-001")).runbook.check_database(DIFF) is None


def test_only_select_statements_are_watched_the_slowest_first():
    from missioncontrol.actions.slowqueries import Counters
    counters = {"1": Counters("SET statement_timeout = $1", 900, 9000.0, 0),
                "2": Counters(HISTORY, 100, 5000.0, 1000),
                "3": Counters("INSERT INTO orders VALUES ($1)", 50, 8000.0, 50),
                "4": Counters("select id from products", 10, 100.0, 10)}
    assert runner.watched(counters, top=5) == [("2", HISTORY), ("4", "select id from products")]
    assert runner.watched(counters, top=1) == [("2", HISTORY)]


# -- a daemon only where the runbook asks -----------------------------------------------------
def test_the_automation_daemon_runs_only_for_policies_whose_runbook_asks():
    (daemon,) = [h for h in kopf.get_default_registry()._spawning.get_all_handlers()
                 if h.id == "automation"]
    assert daemon.when is not None, "the automation daemon runs for every policy"
    index = {("shop", name): [automation.runbook_asks(
        {**catalogue(name), "metadata": {"name": name, "namespace": "shop"}})]
        for name in ("rb-001", "rb-002", "rb-003")}
    assert {k[1]: v for k, v in index.items()} == {
        "rb-001": [False], "rb-002": [True], "rb-003": [True]}

    def wants(runbook: str, status: dict | None = None, namespace: str = "shop") -> bool:
        return daemon.when(spec={"runbookRef": {"name": runbook}}, status=status or {},
                           namespace=namespace, runbook_automation=index, body={},
                           meta={}, logger=None, memo=None)
    assert not wants("rb-001")
    assert wants("rb-002") and wants("rb-003")
    assert not wants("missing") and not wants("rb-002", namespace="other")
    # Values it published are owed back: it runs until they are.
    assert wants("rb-001", {"automation": {"targets": [{"namespace": "shop"}]}})
    # A record of scheduled checks the runbook no longer has: it runs once to clear it.
    assert wants("rb-001", {"scheduledChecks": {"checks": []}})
    assert not automation.runbook_asks({"spec": {"id": 3}})


def test_a_scheduled_check_may_name_its_own_database():
    body = catalogue("rb-002")
    body["spec"]["automation"]["scheduledChecks"][0]["databaseSecretRef"] = {
        "name": "orders-db-checks", "key": "dsn"}
    rb = Runbook.parse(body)
    own, default = rb.automation.scheduled_checks
    assert own.database == SecretRef("orders-db-checks", "dsn") and default.database is None
    assert rb.check_database(default) == SecretRef("orders-db", "dsn")
    # The catalogue judges it like a step's Secret: it must exist.
    assert ("scheduled check query-plan-diff", own.database) in rb.secret_refs()
