"""Asking the planner, read-only: the generic plan of a normalized statement (PostgreSQL 15
has no EXPLAIN (GENERIC_PLAN): the statement is PREPAREd and EXPLAINed under
plan_cache_mode = force_generic_plan with NULL arguments, which a generic plan ignores), the
size of relations, the leading columns of their indexes, and a HypoPG hypothetical index's
effect on a plan. Each call runs in signals.postgres.read_only (deadlines, no writes)."""

from __future__ import annotations

import json

import psycopg

from ..signals.postgres import rows
from .indexes import Proposal, Recommendation, judged
from .plans import Plan, parameters, parse


async def generic_plan(conn: psycopg.AsyncConnection, query: str) -> Plan:
    count = parameters(query)
    await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    await conn.execute("DEALLOCATE ALL")
    await conn.execute(f"PREPARE mc_plan AS {query}")
    try:
        args = f"({', '.join(['NULL'] * count)})" if count else ""
        found = await rows(conn, f"EXPLAIN (FORMAT JSON) EXECUTE mc_plan{args}")
    finally:
        await conn.execute("DEALLOCATE mc_plan")
    explained = next(iter(found[0].values()))
    return parse(json.loads(explained) if isinstance(explained, str) else explained)


async def sizes(conn: psycopg.AsyncConnection, relations: set[str]) -> dict[str, float]:
    found = await rows(conn, "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' "
                             "AND relname = ANY(%s)", (sorted(relations),))
    return {r["relname"]: float(r["reltuples"]) for r in found}


async def leading_columns(conn: psycopg.AsyncConnection,
                          relations: set[str]) -> dict[str, set[str]]:
    found = await rows(conn, """
        SELECT t.relname AS relation, a.attname AS column
          FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
         WHERE t.relname = ANY(%s)""", (sorted(relations),))
    out: dict[str, set[str]] = {}
    for r in found:
        out.setdefault(r["relation"], set()).add(r["column"])
    return out


async def hypothetical(conn: psycopg.AsyncConnection, proposal: Proposal, *, query: str,
                       before: Plan) -> Recommendation:
    """The statement's generic plan with the proposed index as a HypoPG hypothetical index
    (it exists only in this session's planner: nothing is built or written)."""
    sql = f"CREATE INDEX ON {proposal.table} ({', '.join(proposal.columns)})"
    created = await rows(conn, "SELECT indexname FROM hypopg_create_index(%s)", (sql,))
    try:
        after = await generic_plan(conn, query)
    finally:
        await conn.execute("SELECT hypopg_reset()")
    return judged(proposal, query=query, before=before, after=after,
                  hypothetical=created[0]["indexname"])
