"""Identify slow queries (RB-002): the statements of pg_stat_statements that took the most
time while the incident is open. pg_stat_statements counts from its last reset, so its totals
are mostly history; the step takes a baseline when it starts (the incident has just opened),
reads again `SAMPLE` seconds later and ranks the differences: what is slow now. Statements of
the operator's own role are left out.

The result goes into status.slowQueries (the evidence), the step's message (the timeline, the
stakeholder update, the postmortem). A database that cannot be read fails the step with the
reason, and the runbook goes on (its step has continueOnFailure)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..incident import SlowQueries, SlowStatement
from ..model import IdentifySlowQueries, Step
from ..references import secret_value
from ..signals.postgres import DatabaseError, read_only, rows
from .base import Action, StepContext, StepResult

SAMPLE = 10.0   # seconds between the baseline and the reading
SHOWN = 3       # statements named in the step's message (all `top` are in status)

STATEMENTS = """
SELECT queryid::text AS queryid, max(query) AS query, sum(calls)::bigint AS calls,
       sum(total_exec_time) AS total_ms, sum(rows)::bigint AS rows
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
   AND queryid IS NOT NULL
 GROUP BY queryid
"""


@dataclass(frozen=True)
class Counters:
    query: str
    calls: int
    total_ms: float
    rows: int


def ranked(baseline: dict[str, Counters], now: dict[str, Counters], *,
           top: int) -> list[SlowStatement]:
    """The statements that ran between the two readings, by the time they took then, the
    most first (ties: the higher mean first). A statement new since the baseline counts from
    zero; one whose counters went down was reset in between and counts from zero too."""
    out = []
    for queryid, current in now.items():
        before = baseline.get(queryid)
        if before is not None and before.calls <= current.calls:
            calls, total = current.calls - before.calls, current.total_ms - before.total_ms
            rows_ = current.rows - before.rows
        else:
            calls, total, rows_ = current.calls, current.total_ms, current.rows
        if calls <= 0:
            continue
        out.append(SlowStatement(queryid, current.query[:1000], calls, round(total / calls, 3),
                                 round(total, 3), rows_))
    out.sort(key=lambda s: (-s.total_ms, -s.mean_ms, s.queryid))
    return out[:top]


def summary(statements: list[SlowStatement], *, sample: float, secret: str) -> str:
    if not statements:
        return (f"no statement ran in the {sample:g}s sampled from pg_stat_statements "
                f"(database of Secret {secret})")
    named = "; ".join(
        f"#{n} queryid {s.queryid}: {s.calls} calls, mean {s.mean_ms:.1f} ms, total "
        f"{s.total_ms:.0f} ms, {s.rows} rows: {_oneline(s.query)[:160]}"
        for n, s in enumerate(statements[:SHOWN], 1))
    return (f"top {len(statements)} statements by time over {sample:g}s of pg_stat_statements "
            f"(database of Secret {secret}): {named}")


async def read_counters(dsn: str) -> dict[str, Counters]:
    async with read_only(dsn) as conn:
        found = await rows(conn, STATEMENTS)
    return {r["queryid"]: Counters(r["query"] or "", int(r["calls"]), float(r["total_ms"]),
                                   int(r["rows"])) for r in found}


async def identify_slow_queries(ctx: StepContext, step: Step, *, sample: float = SAMPLE,
                                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
                                ) -> StepResult:
    params: IdentifySlowQueries = step.params
    secret = params.database.name
    dsn, problem = await secret_value(ctx.kube, ctx.namespace, params.database)
    if dsn is None:
        return StepResult.failed(f"cannot read pg_stat_statements: {problem}")
    try:
        baseline_at = ctx.clock()
        baseline = await read_counters(dsn)
        await sleep(sample)
        checked_at = ctx.clock()
        current = await read_counters(dsn)
    except DatabaseError as exc:
        return StepResult.failed(f"cannot read pg_stat_statements in the database of Secret "
                                 f"{secret}: {exc}")
    statements = ranked(baseline, current, top=params.top)
    # Only read: dryRun looks as well (it changes nothing), and says so by the step state.
    found = SlowQueries(secret, baseline_at, checked_at, tuple(statements))
    message = summary(statements, sample=sample, secret=secret)
    return StepResult.ok(message, updates={"slow_queries": found})


def _oneline(text: str) -> str:
    return " ".join(text.split())


class SlowQueriesAction(Action):
    """It only reads, but it is not `read_only` in the engine's sense (run beside the steps
    after it): its sample must see the traffic before the next steps move it (seen: routing
    the reads to the replica a second after the incident opened left the slow statement out of
    a sample taken beside it). The catalogue's step has continueOnFailure, so an unreachable
    database holds nothing back."""
    name = "identifySlowQueries"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await identify_slow_queries(ctx, step)

    def describe(self, params: IdentifySlowQueries) -> list[str]:
        return [f"List the top {params.top} slow queries (pg_stat_statements, by time spent "
                f"since the incident opened) of the database in Secret "
                f"`{params.database.name}` (key `{params.database.key}`)."]


ACTION = SlowQueriesAction()
