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
