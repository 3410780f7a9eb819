"""QueryPlanDiff and IndexRecommendations against the real primary: the generic plan of the
order-history statement before and after its index is dropped, and HypoPG's verdict on the
index proposed for it. Read-only: the test drops and recreates the index itself."""

from __future__ import annotations

import asyncio

import pytest

from missioncontrol.dbchecks import explain, indexes, plans
from missioncontrol.signals.postgres import read_only

pytestmark = pytest.mark.cluster
HISTORY = ("SELECT id, status, total, created_at FROM orders WHERE customer_id = $1 "
           "ORDER BY created_at DESC LIMIT $2")


async def check(dsn: str) -> tuple[plans.Plan, dict, dict]:
    async with read_only(dsn) as conn:
        plan = await explain.generic_plan(conn, HISTORY)
        names = {s.relation for s in plan.scans}
        return plan, await explain.sizes(conn, names), await explain.leading_columns(conn,
                                                                                      names)


async def recommend(dsn: str, plan: plans.Plan, proposal: indexes.Proposal):
    async with read_only(dsn) as conn:
        return await explain.hypothetical(conn, proposal, query=HISTORY, before=plan)


def test_the_dropped_index_shows_in_the_plan_diff_and_hypopg_confirms_it(postgres, measured):
    dsn = postgres.dsn("primary", "missioncontrol")
    baseline, sizes, leading = asyncio.run(check(dsn))
    assert {s.node for s in baseline.scans} & set(plans.INDEXED_SCANS), baseline
    assert "customer_id" in leading["orders"]
    assert indexes.proposals(baseline, sizes=sizes, leading=leading) == []
    postgres.execute("primary", "DROP INDEX orders_customer_id_idx", role="app")
    try:
        current, sizes, leading = asyncio.run(check(dsn))
        diff = plans.differences(baseline, current, sizes=sizes)
        assert diff and " -> Seq Scan on orders (" in diff[0], diff
        assert "was using index orders_customer_id_idx" in diff[0]
        found = indexes.proposals(current, sizes=sizes, leading=leading)
        assert found == [indexes.Proposal("orders", ("customer_id",))]
        rec = asyncio.run(recommend(dsn, current, found[0]))
        assert rec.confirmed, rec
        assert rec.cost_after * 2 <= rec.cost_before
        measured.append(f"QueryPlanDiff: {'; '.join(diff)}")
        measured.append(f"IndexRecommendations: {rec.describe()}")
        # HypoPG left nothing behind, and nothing was built.
        assert postgres.query("primary", "SELECT count(*) FROM pg_indexes WHERE tablename = "
                              "'orders'") == [(1,)]
    finally:
        postgres.execute("primary", "CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON "
                         "orders (customer_id)", role="app")


def test_the_runner_watches_the_top_select_and_finds_the_diff_and_the_index(postgres, measured):
    """runner.observe as the automation daemon runs it: the top SELECTs of pg_stat_statements
    (the app's statements, run here a few times as the app's role), their generic plans and
    HypoPG's verdict, in one read-only session; the baseline before the drop, the findings
    after it."""
    from missioncontrol.dbchecks import runner, schedule
    from missioncontrol.model import ScheduledCheck

    checks = (ScheduledCheck("query-plan-diff", "QueryPlanDiff", 3600.0),
              ScheduledCheck("index-recommendations", "IndexRecommendations", 3600.0))
    kinds = {c.check for c in checks}
    for customer in range(5):
        postgres.query("primary", HISTORY.replace("$1", "%s").replace("$2", "%s"),
                       (customer, 10), role="app")
    dsn = postgres.dsn("primary", "missioncontrol")
    first = asyncio.run(runner.observe(dsn, kinds=kinds))
    assert first.error is None, first.error
    history = [w for w in first.watched if "FROM orders WHERE customer_id = $1" in w.query]
    assert history, [w.query for w in first.watched]
    state = schedule.judged(schedule.ChecksStatus(), checks, first, now=1.0, database="db")
    assert state.findings == ()
    postgres.execute("primary", "DROP INDEX orders_customer_id_idx", role="app")
    try:
        later = asyncio.run(runner.observe(dsn, kinds=kinds))
        state = schedule.judged(state, checks, later, now=2.0, database="db")
        found = {f.check: f for f in state.findings if f.queryid == history[0].queryid}
        assert set(found) == {"QueryPlanDiff", "IndexRecommendations"}, state.findings
        assert " -> Seq Scan on orders (" in found["QueryPlanDiff"].message
        assert found["IndexRecommendations"].ddl == (
            "CREATE INDEX CONCURRENTLY ON orders (customer_id)")
        measured.append(f"runner QueryPlanDiff: {found['QueryPlanDiff'].message}")
        measured.append(f"runner IndexRecommendations: {found['IndexRecommendations'].message}")
        assert postgres.query("primary", "SELECT count(*) FROM pg_indexes WHERE tablename = "
                              "'orders'") == [(1,)]
    finally:
        postgres.execute("primary", "CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON "
                         "orders (customer_id)", role="app")


def test_the_runner_says_why_when_the_database_is_not_there():
    from harness.procs import free_port
    from missioncontrol.dbchecks import runner
    seen = asyncio.run(runner.observe(f"postgresql://x:y@127.0.0.1:{free_port()}/none",
                                      kinds={"QueryPlanDiff"}))
    assert seen.error.startswith("OperationalError: connection failed"), seen.error
    assert seen.watched == ()


def test_many_statements_in_one_run_keep_their_plans(postgres):
    """A run explains up to MAX_STATEMENTS statements on one connection, each in a savepoint.
    psycopg prepares a statement it has run five times on the server, and a generic plan
    deallocates what a failed one left behind: every one of a dozen statements (past that
    threshold, one of them unplannable) still gets its plan."""
    from missioncontrol.dbchecks import runner

    async def run() -> list:
        async with read_only(postgres.dsn("primary", "missioncontrol")) as conn:
            found = []
            for n in range(12):
                query = ("SELECT nope FROM orders" if n == 3 else
                         f"SELECT id, total FROM orders WHERE customer_id = $1 LIMIT {n + 1}")
                found.append(await runner._isolated(conn, explain.generic_plan(conn, query)))
            return found

    found = asyncio.run(run())
    assert found[3] is None
    assert all(p is not None and p.scans for n, p in enumerate(found) if n != 3), found
