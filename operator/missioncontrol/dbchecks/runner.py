"""Running a policy's scheduled checks (the I/O around schedule.py): the DSN from the Secret
the runbook names, the statements to watch (the top SELECTs of pg_stat_statements by time, as
identifySlowQueries reads them), their generic plans, and HypoPG's verdict on each index
proposed, all in one read-only session (signals.postgres.read_only: connect deadline,
statement_timeout) under a deadline for the whole run. Never DDL: HypoPG's indexes exist only
in the session's planner.

A database that cannot be read is an error recorded on the checks (and a Warning Event, once
per error): the timer goes on."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field

import psycopg

from .. import guard
from ..actions.slowqueries import Counters, ranked, read_counters
from ..model import Runbook, ScheduledCheck
from ..records import from_dict, to_dict
from ..references import secret_value
from ..signals.postgres import DatabaseError, read_only
from . import explain, schedule
from .indexes import proposals
from .plans import Plan

log = logging.getLogger(__name__)
RUN_DEADLINE = 60.0    # seconds for one whole run (each statement has its statement_timeout)
# Only plain SELECTs are explained: EXPLAIN of a write or a utility statement is no read.
_SELECT = re.compile(r"^\s*\(?\s*select\b", re.IGNORECASE)


@dataclass
class Outcome:
    status: dict                                         # the new status.scheduledChecks
    events: list[tuple[str, str, str]] = field(default_factory=list)
    wait: float = schedule.MAX_WAIT


async def tick(ctx: guard.Context, resolved: guard.Resolved, recorded: dict) -> Outcome:
    """One look at the policy's scheduled checks: run those due, record what they found."""
    runbook = resolved.runbook
    checks = runbook.automation.scheduled_checks
    before = schedule.configured(from_dict(schedule.ChecksStatus, recorded or {}), checks)
    now = ctx.clock()
    ran = schedule.due(checks, before, now=now)
    after = before
    for database, group in _by_database(runbook, ran).items():
        if database is None:
            after = schedule.failed(after, group, now=now, database="", error=(
                "no database to read: give the check a databaseSecretRef, or the runbook an "
                "identifySlowQueries step"))
            continue
        dsn, problem = await secret_value(ctx.kube, runbook.namespace, database)
        if dsn is None:
            after = schedule.failed(after, group, now=now, database=database.name,
                                    error=problem or "no DSN")
            continue
        seen = await observe(dsn, kinds={c.check for c in group})
        after = schedule.judged(after, group, seen, now=now, database=database.name)
    status = to_dict(after)
    return Outcome(status, schedule.events(before, after) if ran else [],
                   schedule.wait(checks, after, now=ctx.clock()))


def _by_database(runbook: Runbook, ran: tuple[ScheduledCheck, ...]) -> dict:
    out: dict = {}
    for check in ran:
        out.setdefault(runbook.check_database(check), []).append(check)
    return {k: tuple(v) for k, v in out.items()}


async def observe(dsn: str, *, kinds: set[str], top: int = schedule.MAX_STATEMENTS,
                  deadline: float = RUN_DEADLINE) -> schedule.Observation:
    try:
        return await asyncio.wait_for(_observe(dsn, kinds=kinds, top=top), deadline)
    except TimeoutError:
        return schedule.Observation(error=f"the checks did not finish within {deadline:g}s")
    except DatabaseError as exc:
        return schedule.Observation(error=str(exc))


def watched(counters: dict[str, Counters], *, top: int) -> list[tuple[str, str]]:
    """(queryid, full text) of the top SELECTs by total time (pure)."""
    order = ranked({}, {q: c for q, c in counters.items() if _SELECT.match(c.query)},
                   top=top)
    return [(s.queryid, counters[s.queryid].query) for s in order]


async def _observe(dsn: str, *, kinds: set[str], top: int) -> schedule.Observation:
    statements = watched(await read_counters(dsn), top=top)
    async with read_only(dsn) as conn:
        plans: list[schedule.Watched] = []
        for queryid, query in statements:
            plan = await _isolated(conn, explain.generic_plan(conn, query))
            if plan is not None:
                plans.append(schedule.Watched(queryid, query, plan))
        relations = {s.relation for w in plans for s in w.plan.scans}
        sizes = await explain.sizes(conn, relations) if relations else {}
        verdicts = []
        if schedule.INDEXES in kinds and relations:
            leading = await explain.leading_columns(conn, relations)
            for w in plans:
                for proposal in proposals(w.plan, sizes=sizes, leading=leading):
                    rec = await _isolated(conn, explain.hypothetical(
                        conn, proposal, query=w.query, before=w.plan))
                    if rec is not None:
                        verdicts.append((w.queryid, rec))
    return schedule.Observation(tuple(plans), sizes, tuple(verdicts))


async def _isolated(conn: psycopg.AsyncConnection, work) -> Plan | None:
    """One statement's part of the run in a savepoint: a statement that cannot be planned
    (a temporary table, a timeout) is left out, and the others are still looked at."""
    await conn.execute("SAVEPOINT mc_check")
    try:
        result = await work
    except psycopg.errors.QueryCanceled:
        raise   # statement_timeout: the database is too slow for this run
    except psycopg.Error as exc:
        log.info("scheduled check: a statement left out: %s", str(exc).splitlines()[0])
        await conn.execute("ROLLBACK TO SAVEPOINT mc_check")
        return None
    await conn.execute("RELEASE SAVEPOINT mc_check")
    return result
