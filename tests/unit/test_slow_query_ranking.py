"""The ranking of pg_stat_statements between a baseline and a reading (pure), and how the
result reads in the step's message and the postmortem."""

from __future__ import annotations

from missioncontrol import incident as inc
from missioncontrol.actions.slowqueries import Counters, ranked, summary
from missioncontrol.postmortem import render_postmortem
from missioncontrol.records import to_dict


def c(calls: int, total: float, rows: int = 0, query: str = "q") -> Counters:
    return Counters(query, calls, total, rows)


def test_what_ran_since_the_baseline_is_ranked_by_its_time_not_its_history():
    baseline = {"1": c(1000, 90_000.0), "2": c(10, 10.0), "3": c(5, 5.0)}
    now = {"1": c(1001, 90_001.0), "2": c(60, 8010.0, rows=1000), "3": c(5, 5.0),
           "4": c(2, 30.0)}
    top = ranked(baseline, now, top=10)
    # 1 has the largest total since the reset, but took 1 ms since the baseline; 3 did not run.
    assert [s.queryid for s in top] == ["2", "4", "1"]
    assert (top[0].calls, top[0].total_ms, top[0].mean_ms, top[0].rows) == (50, 8000.0, 160.0,
                                                                            1000)
    assert top[1] == inc.SlowStatement("4", "q", 2, 15.0, 30.0, 0)   # new: counted from zero


def test_counters_reset_in_between_count_from_zero_and_top_cuts():
    top = ranked({"1": c(500, 500.0)}, {"1": c(3, 30.0), "2": c(1, 1.0)}, top=1)
    assert top == [inc.SlowStatement("1", "q", 3, 10.0, 30.0, 0)]
    assert ranked({}, {}, top=5) == []


def test_the_message_names_the_top_statements_with_their_numbers():
    top = ranked({}, {"42": c(4, 1000.0, 80, "SELECT *\n  FROM orders WHERE customer_id = $1")},
                 top=10)
    assert summary(top, sample=10, secret="orders-db") == (
        "top 1 statements by time over 10s of pg_stat_statements (database of Secret "
        "orders-db): #1 queryid 42: 4 calls, mean 250.0 ms, total 1000 ms, 80 rows: "
        "SELECT * FROM orders WHERE customer_id = $1")
    assert "no statement ran" in summary([], sample=10, secret="orders-db")


def test_the_postmortem_has_the_slow_queries_table():
    status = inc.IncidentStatus(slow_queries=inc.SlowQueries(
        "orders-db", 1893492000.0, 1893492010.0,
        (inc.SlowStatement("42", "SELECT 1 FROM orders WHERE customer_id = $1", 4, 250.0,
                           1000.0, 80),)))
    text = render_postmortem({"metadata": {"name": "i", "namespace": "shop"},
                              "spec": {"runbook": {"id": "RB-002", "name": "rb-002"},
                                       "target": {"namespace": "shop", "name": "orders"}},
                              "status": to_dict(status)})
    section = text.split("## Slow queries")[1].split("##")[0]
    assert "| 1 | `42` | 4 | 250.0 | 1000 | 80 | `SELECT 1 FROM orders WHERE customer_id = $1` |" \
        in section, section
    nothing = render_postmortem({"metadata": {}, "spec": {}, "status": {}})
    assert "## Slow queries\n\nNo slow-query analysis (identifySlowQueries) ran" in nothing
