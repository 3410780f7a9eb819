"""QueryPlanDiff and IndexRecommendations: the pure comparison of plans (EXPLAIN FORMAT JSON,
as PostgreSQL 15 writes it) and the index proposals."""

from __future__ import annotations

from missioncontrol.dbchecks import indexes, plans

INDEXED = [{"Plan": {
    "Node Type": "Limit", "Total Cost": 120.77, "Plans": [{
        "Node Type": "Sort", "Total Cost": 120.79, "Plans": [{
            "Node Type": "Bitmap Heap Scan", "Relation Name": "orders", "Total Cost": 119.98,
            "Recheck Cond": "(customer_id = $1)", "Plans": [{
                "Node Type": "Bitmap Index Scan", "Index Name": "orders_customer_id_idx",
                "Total Cost": 4.65, "Index Cond": "(customer_id = $1)"}]}]}]}}]
SEQUENTIAL = [{"Plan": {
    "Node Type": "Limit", "Total Cost": 13706.46, "Plans": [{
        "Node Type": "Gather Merge", "Total Cost": 13706.53, "Plans": [{
            "Node Type": "Sort", "Total Cost": 13705.78, "Plans": [{
                "Node Type": "Seq Scan", "Relation Name": "orders", "Total Cost": 13705.0,
                "Filter": "(customer_id = $1)"}]}]}]}}]
SIZES = {"orders": 600_000.0}


def test_a_plan_lists_its_scans_with_their_conditions():
    plan = plans.parse(INDEXED)
    assert plan.total_cost == 120.77
    # The bitmap index scan has no relation of its own: its heap scan carries its index.
    assert plan.scans == (plans.Scan("Bitmap Heap Scan", "orders", "orders_customer_id_idx",
                                     "(customer_id = $1)"),)


def test_an_index_scan_become_a_sequential_scan_of_a_large_table_is_reported():
    found = plans.differences(plans.parse(INDEXED), plans.parse(SEQUENTIAL), sizes=SIZES)
    assert found == ["Bitmap Heap Scan -> Seq Scan on orders (600000 rows; was using index "
                     "orders_customer_id_idx)", "estimated cost 120.77 -> 13706.46 (x113.5)"]
    # The same plan, a small table, or a cost within the factor: nothing that matters.
    assert plans.differences(plans.parse(INDEXED), plans.parse(INDEXED), sizes=SIZES) == []
    small = plans.differences(plans.parse(INDEXED), plans.parse(SEQUENTIAL),
                              sizes={"orders": 500}, cost_factor=1000)
    assert small == []


def test_filtered_columns_and_parameters():
    assert plans.filtered_columns("(customer_id = $1)") == ("customer_id",)
    assert plans.filtered_columns("((status = 'paid'::text) AND (total > 10.0))") == (
        "status", "total")
    assert plans.filtered_columns(None) == ()
    assert plans.parameters("SELECT 1 FROM t WHERE a = $1 AND b = $2 LIMIT $3") == 3
    assert plans.parameters("SELECT 1") == 0


def test_a_sequential_scan_on_an_unindexed_column_gets_a_proposal():
    plan = plans.parse(SEQUENTIAL)
    found = indexes.proposals(plan, sizes=SIZES, leading={"orders": {"id"}})
    assert found == [indexes.Proposal("orders", ("customer_id",))]
    assert found[0].ddl == "CREATE INDEX CONCURRENTLY ON orders (customer_id)"
    # Already the leading column of an index, or a small table: no proposal.
    assert indexes.proposals(plan, sizes=SIZES, leading={"orders": {"customer_id"}}) == []
    assert indexes.proposals(plan, sizes={"orders": 100}, leading={}) == []


def test_a_proposal_stands_only_if_the_planner_uses_it_and_it_halves_the_cost():
    proposal = indexes.Proposal("orders", ("customer_id",))
    hypo = plans.parse([{"Plan": {"Node Type": "Index Scan", "Relation Name": "orders",
                                  "Index Name": "<13556>btree_orders_customer_id",
                                  "Total Cost": 120.0}}])
    rec = indexes.judged(proposal, query="q", before=plans.parse(SEQUENTIAL), after=hypo,
                         hypothetical="<13556>btree_orders_customer_id")
    assert rec.confirmed
    assert rec.describe() == ("CREATE INDEX CONCURRENTLY ON orders (customer_id): confirmed "
                              "by HypoPG, estimated cost 13706.46 -> 120.00")
    unused = indexes.judged(proposal, query="q", before=plans.parse(SEQUENTIAL),
                            after=plans.parse(SEQUENTIAL), hypothetical="<1>btree_x")
    assert not unused.confirmed and unused.describe().endswith("(index not used)")
