"""RB-002's scheduled checks as decisions, no I/O: which checks are due (a timer per policy,
each check at its own `every`), what a run found against the baselines kept in the policy's
status (status.scheduledChecks), when an Event is due (a finding that appears, changes or
goes; an error that appears, changes or clears: never every run), and what an open incident
of the policy takes from it (incident.plan_findings and a timeline entry per new finding).

What is kept is small and bounded: at most MAX_STATEMENTS baselines (the statements watched
most recently), MAX_FINDINGS findings, texts cut. runner.py reads the database."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .. import incident as inc
from ..model import ScheduledCheck
from ..records import from_dict, stamp
from .indexes import Recommendation
from .plans import Plan, Scan, differences

PLAN_DIFF, INDEXES = "QueryPlanDiff", "IndexRecommendations"
MAX_STATEMENTS = 10     # baselines kept (and statements watched per run)
MAX_FINDINGS = 20
MAX_SCANS = 8           # scans kept per baseline plan
QUERY_CHARS = 500
FILTER_CHARS = 200
ERROR_CHARS = 500
MESSAGE_CHARS = 1000
MIN_WAIT, MAX_WAIT = 1.0, 60.0   # the daemon looks again at least this often (policy edits)


@dataclass(frozen=True)
class Baseline:
    """The plan a watched statement had when first seen (or last improved)."""
    queryid: str
    query: str
    plan: Plan
    at: float | None = stamp()


@dataclass(frozen=True)
class CheckRun:
    name: str
    check: str
    every: float
    last_run_at: float | None = stamp()
    ok: bool = True
    error: str | None = None       # why the last run could not look (database, query)
    statements: int = 0            # statements it looked at in the last run


@dataclass(frozen=True)
class ChecksStatus:
    database: str = ""             # the Secret of the database read
    checks: tuple[CheckRun, ...] = ()
    baselines: tuple[Baseline, ...] = ()
    findings: tuple[inc.PlanFinding, ...] = ()


@dataclass(frozen=True)
class Watched:
    queryid: str
    query: str
    plan: Plan


@dataclass(frozen=True)
class Observation:
    """What runner.observe read: the watched statements' current generic plans, the size of
    the relations they scan, and HypoPG's verdict on each index proposed for them."""
    watched: tuple[Watched, ...] = ()
    sizes: dict[str, float] = field(default_factory=dict)
    recommendations: tuple[tuple[str, Recommendation], ...] = ()   # (queryid, verdict)
    error: str | None = None


def due(checks: tuple[ScheduledCheck, ...], state: ChecksStatus, *,
        now: float) -> tuple[ScheduledCheck, ...]:
    """The checks whose `every` has passed since their last run (never run: due now)."""
    last = {c.name: c.last_run_at for c in state.checks}
    return tuple(c for c in checks if last.get(c.name) is None or now - last[c.name] >= c.every)


def wait(checks: tuple[ScheduledCheck, ...], state: ChecksStatus, *, now: float) -> float:
    """Seconds until the next check is due, looked at again within MAX_WAIT anyway."""
    last = {c.name: c.last_run_at for c in state.checks}
    left = [c.every - (now - last[c.name]) if last.get(c.name) is not None else 0.0
            for c in checks]
    return min(max(min(left, default=MAX_WAIT), MIN_WAIT), MAX_WAIT)


def failed(state: ChecksStatus, ran: tuple[ScheduledCheck, ...], *, error: str, now: float,
           database: str) -> ChecksStatus:
    """A run that could not look: its checks say why; baselines and findings stay as they were
    (a database not read is no news, neither good nor bad)."""
    return _ran(state, ran, now=now, database=database, error=error[:ERROR_CHARS] or "failed")


def judged(state: ChecksStatus, ran: tuple[ScheduledCheck, ...], seen: Observation, *,
           now: float, database: str) -> ChecksStatus:
    """A run's findings. QueryPlanDiff compares each watched statement's plan with its
    baseline (plans.differences decides what matters); a statement seen the first time gets
    its plan as baseline, and a plan no worse than its baseline becomes the baseline (estimates
    drift with each ANALYZE). IndexRecommendations keeps the proposals HypoPG confirmed. The
    findings of a check that ran replace its previous ones; a finding still there keeps its
    `since`."""
    if seen.error is not None:
        return failed(state, ran, error=seen.error, now=now, database=database)
    kinds = {c.check for c in ran}
    old = {_key(f): f for f in state.findings}
    baselines = {b.queryid: b for b in state.baselines}
    found: list[inc.PlanFinding] = []
    for w in seen.watched:
        base = baselines.get(w.queryid)
        changes = differences(base.plan, w.plan, sizes=seen.sizes) if base else []
        if PLAN_DIFF in kinds and changes:
            found.append(inc.PlanFinding(
                PLAN_DIFF, w.queryid, w.query[:QUERY_CHARS],
                "; ".join(changes)[:MESSAGE_CHARS], now, cost_before=base.plan.total_cost,
                cost_after=w.plan.total_cost))
        if base is None or (not changes and w.plan.total_cost <= base.plan.total_cost):
            baselines[w.queryid] = Baseline(w.queryid, w.query[:QUERY_CHARS], _small(w.plan),
                                            now)
    if INDEXES in kinds:
        queries = {w.queryid: w.query for w in seen.watched}
        for queryid, rec in seen.recommendations:
            if rec.confirmed:
                found.append(inc.PlanFinding(
                    INDEXES, queryid, queries.get(queryid, rec.query)[:QUERY_CHARS],
                    rec.describe()[:MESSAGE_CHARS], now, cost_before=rec.cost_before,
                    cost_after=rec.cost_after, ddl=rec.proposal.ddl))
    found = [replace(f, since=old[_key(f)].since) if _key(f) in old else f for f in found]
    # The statements watched now first, then the others most recent first: the cap drops
    # the statements longest out of sight.
    watched = [w.queryid for w in seen.watched]
    rest = sorted((b for q, b in baselines.items() if q not in watched),
                  key=lambda b: -(b.at or 0.0))
    kept_baselines = tuple([baselines[q] for q in dict.fromkeys(watched)] +
                           rest)[:MAX_STATEMENTS]
    # A statement out of this run's top (its time share moved) was not looked at: its
    # findings stay while its baseline does, so it is not cleared and told again each time it
    # comes back. A check that did not run keeps all of its own.
    known = {b.queryid for b in kept_baselines}
    kept = [f for f in state.findings if f.check not in kinds
            or (f.queryid not in watched and f.queryid in known)]
    state = replace(state, baselines=kept_baselines,
                    findings=tuple((kept + found)[:MAX_FINDINGS]))
    return _ran(state, ran, now=now, database=database, error=None,
                statements=len(seen.watched))


def events(before: ChecksStatus, after: ChecksStatus) -> list[tuple[str, str, str]]:
    """(type, reason, message) due: a finding new or changed in its words (its figures move
    with every ANALYZE and are not news), a finding gone, an error new, changed or cleared."""
    out = []
    old = {_key(f): f for f in before.findings}
    new = {_key(f): f for f in after.findings}
    for key, f in new.items():
        if key not in old or _gist(old[key].message) != _gist(f.message):
            reason = "QueryPlanChanged" if f.check == PLAN_DIFF else "IndexRecommended"
            out.append(("Warning", reason, describe(f)))
    for key, f in old.items():
        if key not in new and f.check in {c.check for c in after.checks
                                          if c.ok and c.last_run_at is not None}:
            out.append(("Normal", "PlanCheckCleared", f"no longer found: {describe(f)}"))
    errors = {c.name: c.error for c in before.checks}
    for c in after.checks:
        if c.error and _gist(c.error) != _gist(errors.get(c.name) or ""):
            out.append(("Warning", "ScheduledCheckFailed", f"{c.check} ({c.name}): {c.error}"))
        elif not c.error and errors.get(c.name):
            out.append(("Normal", "ScheduledCheckRecovered",
                        f"{c.check} ({c.name}) reads the database again"))
    return out


def describe(f: inc.PlanFinding) -> str:
    return f"{f.check}: {f.message} (queryid {f.queryid}: {' '.join(f.query.split())[:200]})"


def findings_of(policy_status: dict | None) -> tuple[inc.PlanFinding, ...]:
    """The findings in a policy's status as the API returns it (unreadable: none)."""
    try:
        found = from_dict(ChecksStatus, (policy_status or {}).get("scheduledChecks") or {}
                          ).findings
    except (AttributeError, TypeError, ValueError, KeyError):
        return ()
    if not isinstance(found, tuple):
        return ()
    return tuple(f for f in found if isinstance(f, inc.PlanFinding))


def attach(status: inc.IncidentStatus, findings: tuple[inc.PlanFinding, ...], *,
           now: float) -> inc.IncidentStatus:
    """An open incident of the policy takes the policy's current findings as its evidence, and
    a timeline entry for each one new to it (or changed in its words). Findings that went
    stay on the incident: they were true while it was open."""
    if not status.open or not findings:
        return status
    have = {_key(f): f for f in status.plan_findings}
    fresh = [f for f in findings
             if _key(f) not in have or _gist(have[_key(f)].message) != _gist(f.message)]
    if not fresh:
        return status
    merged = {**have, **{_key(f): f for f in findings}}
    status = replace(status, plan_findings=tuple(list(merged.values())[-MAX_FINDINGS:]))
    for f in fresh:
        kind = "QueryPlanChanged" if f.check == PLAN_DIFF else "IndexRecommended"
        status = inc.note(status, now, kind, describe(f))
    return status


def _ran(state: ChecksStatus, ran: tuple[ScheduledCheck, ...], *, now: float, database: str,
         error: str | None, statements: int = 0) -> ChecksStatus:
    runs = {c.name: c for c in state.checks}
    for c in ran:
        runs[c.name] = CheckRun(c.name, c.check, c.every, now, error is None, error, statements)
    return replace(state, database=database, checks=tuple(runs.values()))


def configured(state: ChecksStatus, checks: tuple[ScheduledCheck, ...]) -> ChecksStatus:
    """Only the checks the runbook still has: a removed check's record and findings go."""
    names = {c.name for c in checks}
    kinds = {c.check for c in checks}
    return replace(state, checks=tuple(c for c in state.checks if c.name in names),
                   findings=tuple(f for f in state.findings if f.check in kinds))


def _small(plan: Plan) -> Plan:
    return Plan(plan.total_cost, tuple(
        Scan(s.node, s.relation, s.index, (s.filter or "")[:FILTER_CHARS] or None)
        for s in plan.scans[:MAX_SCANS]))


def _key(f: inc.PlanFinding) -> tuple[str, str, str | None]:
    return f.check, f.queryid, f.ddl


_FIGURES = re.compile(r"\d+(\.\d+)?")


def _gist(text: str) -> str:
    return _FIGURES.sub("#", text)
