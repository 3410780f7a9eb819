"""An Incident as a Markdown postmortem, ready to paste into the postmortem doc.

Built from the Incident object as the API returns it (metadata, spec, status) and nothing
else, so it can be rendered after the operator is gone. Every section is there in every
postmortem: what is missing (no freeze, nobody paged yet) is said in one line, never left out
silently. Times are UTC, durations short (45s, 1m35s, 1h05m), each event also counted from
detection (T+1m35s), the way incident reviews read them."""

from __future__ import annotations

import datetime
import json
import shlex

from . import durations, timeutil
from . import incident as inc
from .markdown import code, oneline
from .records import from_dict

NONE = "—"


def render_postmortem(incident: dict) -> str:
    meta = incident.get("metadata") or {}
    spec = incident.get("spec") or {}
    raw = incident.get("status") or {}
    s: inc.IncidentStatus = from_dict(inc.IncidentStatus, raw)
    pm = _Postmortem(meta, spec, s, has_status=bool(raw))
    sections = [
        [pm.title()],
        ["## Summary", "", *pm.summary()],
        ["## Impact and blast radius", "", *pm.blast_radius()],
        ["## Slow queries", "", *pm.slow_queries()],
        ["## Query plans", "", *pm.plan_findings()],
        ["## Timeline", "", *pm.timeline()],
        ["## What the runbook did", "", *pm.steps()],
        ["## Deploy freeze", "", *pm.freeze()],
        ["## Rollback", "", *pm.rollback()],
        ["## People", "", *pm.people()],
        ["## Recovery SLO", "", *pm.slo()],
        ["## Action items", "", *pm.action_items()],
        ["## Conditions", "", *pm.conditions()],
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


# -- formatting -------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """45s, 1m35s, 10m01s, 1h05m, 2d03h: to the second below an hour (a review compares
    minutes and seconds against the SLO), where durations.format rounds to the minute from
    10m; under a second is `<1s`, not a misleading 0s."""
    if 0 < seconds < 1:
        return "<1s"
    return _whole(seconds)


def _whole(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds >= 86400:
        days, rest = divmod(seconds, 86400)
        return f"{days}d{rest // 3600:02d}h"
    minutes, secs = divmod(seconds, 60)
    if 0 < minutes < 60 and secs:
        return f"{minutes}m{secs:02d}s"
    return durations.format(seconds)


def when(moment: float | None) -> str:
    """A full UTC timestamp, to the second: 2030-01-01 10:00:00 UTC."""
    if moment is None:
        return NONE
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def since(moment: float | None, origin: float | None) -> str:
    """The offset from detection, as incident reviews count: T+1m35s (T-5s before it)."""
    if moment is None or origin is None:
        return NONE
    delta = moment - origin
    return f"T-{_whole(-delta)}" if delta < 0 else f"T+{_whole(delta)}"


def _utc(moment: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC)


def _cell(text: object) -> str:
    """One Markdown table cell: on one line, pipes escaped, never empty."""
    value = oneline("" if text is None else str(text)).replace("|", "\\|")
    return value or NONE


def _table(head: list[str], rows: list[list[object]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def _sentence(text: str) -> str:
    text = oneline(text)
    return text if not text or text[-1] in ".!?" else text + "."


def _plural(count: int, word: str, many: str = "") -> str:
    return f"{count} {word if count == 1 else many or word + 's'}"


def _value(value: str | None, missing: str) -> str:
    return code(value) if value not in (None, "") else missing


def _due(text: str) -> str:
    if len(text) <= 10:          # YYYY-MM-DD
        return text
    try:
        moment = timeutil.parse(text)
    except ValueError:
        return text
    return _utc(moment).strftime("%Y-%m-%d %H:%M UTC") if moment is not None else text


# -- the document -----------------------------------------------------------------------------
class _Postmortem:
    def __init__(self, meta: dict, spec: dict, status: inc.IncidentStatus, *, has_status: bool):
        self.meta, self.spec, self.s, self.has_status = meta, spec, status, has_status
        self.name = meta.get("name") or "(unnamed incident)"
        target = spec.get("target") or {}
        self.namespace = meta.get("namespace") or target.get("namespace") or "default"
        self.target = (f"{target.get('kind') or 'Deployment'} "
                       f"{target.get('namespace', '?')}/{target.get('name', '?')}")
        runbook = spec.get("runbook") or {}
        self.runbook_id = runbook.get("id") or "(unknown runbook)"
        self.runbook_name = runbook.get("name")
        self.severity = spec.get("severity") or status.severity
        self.t0 = status.detected_at
        mode = status.mode if has_status else spec.get("mode")
        self.dry_run = mode in inc.QUIET_MODES
        self.silenced = mode == inc.SILENCED
        # One date for the whole incident: the timeline then shows times of day only.
        stamps = [e.at for e in status.timeline if e.at is not None]
        days = {_utc(t).date() for t in [*stamps, *([self.t0] if self.t0 else [])]}
        self.one_day = len(days) <= 1

    def kubectl(self, args: str) -> str:
        return f"kubectl {args} -n {shlex.quote(self.namespace)}"

    def clock(self, moment: float | None) -> str:
        """A time in a table: the time of day when the incident fits in one UTC day."""
        if moment is None:
            return NONE
        return _utc(moment).strftime("%H:%M:%S" if self.one_day else "%Y-%m-%d %H:%M:%S")

    def at(self, moment: float | None) -> str:
        """A time in a sentence: the full timestamp, and how long after detection."""
        if moment is None:
            return NONE
        offset = since(moment, self.t0)
        return when(moment) + (f" ({offset})" if offset != NONE else "")

    # -- title and summary ----------------------------------------------------------------------
    def title(self) -> str:
        return (f"# Postmortem: {self.name} — {self.runbook_id} on {self.target} "
                f"({self.severity or 'severity not declared'})")

    def summary(self) -> list[str]:
        s, spec = self.s, self.spec
        facts = [f"Runbook {self.runbook_id}"
                 + (f" (`{self.runbook_name}`)" if self.runbook_name else "")]
        if s.cluster:
            facts.insert(0, f"Cluster `{s.cluster}`")
        if spec.get("policy"):
            facts.append(f"policy `{spec['policy']}`")
        facts.append(f"owner {spec['owner']}" if spec.get("owner")
                     else "no incident owner declared")
        severity = f"severity {self.severity}" if self.severity else "severity not declared"
        if s.severity and self.severity and s.severity != self.severity:
            severity += f" (the operator last acted on {s.severity})"
        facts.append(severity)
        lines = [", ".join(facts) + "."]
        if not self.has_status:
            lines += ["", "The operator has not written a status for this incident yet: it "
                      "has not been detected, worked on or timed. Everything below is empty "
                      "for that reason."]
        what = _sentence(spec.get("summary") or f"{self.runbook_id} fired for {self.target}.")
        paragraph = [what]
        if s.reason and oneline(s.reason) not in oneline(spec.get("summary")):
            paragraph.append(f"Why it fired: {_sentence(s.reason)}")
        if self.t0 is not None:
            paragraph.append(f"Detected at {when(self.t0)}.")
        paragraph.append(self._progress())
        if self.silenced:
            paragraph.append("It opened silenced: nothing in the cluster is changed and nobody "
                             "is paged; the steps below are what would be done.")
        elif self.dry_run:
            paragraph.append("It runs in dry-run mode: nothing in the cluster is changed; the "
                             "steps below are what would be done." if s.open else
                             "It ran in dry-run mode: nothing in the cluster was changed; the "
                             "steps below are what would have been done.")
        else:
            paragraph.append("It runs in enforce mode: its steps change the cluster."
                             if s.open else
                             "It ran in enforce mode: the steps below changed the cluster.")
        if s.silence is not None:
            paragraph.append(f"{silence_line(s.silence)}.")
        if s.escalated:
            paragraph.append("It was escalated (see People).")
        lines += ["", " ".join(p for p in paragraph if p)]
        lines += ["", *self._key_times()]
        if s.evidence:
            lines += ["", "Trigger checks when it opened:", ""]
            for e in s.evidence:
                value = f" (value {e.value:g})" if e.value is not None else ""
                lines.append(f"- **{e.condition}**: {e.outcome}{value}"
                             + (f" — {oneline(e.message)}" if e.message else "")
                             + (f", at {self.clock(e.at)} UTC" if e.at is not None else ""))
        return lines

    def _progress(self) -> str:
        s, t0 = self.s, self.t0
        if t0 is None:
            return ""
        parts = []
        if s.mitigated_at is not None:
            parts.append(f"mitigated after {duration(s.mitigated_at - t0)}")
        else:
            parts.append("not mitigated yet" if s.open else "never mitigated")
        if s.resolved_at is not None:
            parts.append(f"resolved after {duration(s.resolved_at - t0)}")
        elif s.open:
            parts.append("not resolved yet")
        if s.closed_at is not None:
            parts.append(f"closed after {duration(s.closed_at - t0)}")
        text = "; ".join(parts)
        return f"{text[0].upper()}{text[1:]} (phase {s.phase})."

    def _key_times(self) -> list[str]:
        s, t0 = self.s, self.t0
        rows = [("Detected", s.detected_at, ""),
                ("First response started", s.mitigating_at, ""),
                ("Mitigated", s.mitigated_at,
                 f"first response took {duration(s.mitigated_at - s.mitigating_at)}"
                 if s.mitigated_at is not None and s.mitigating_at is not None else ""),
                ("Resolved", s.resolved_at,
                 f"stable since {self.clock(s.healthy_since)} UTC, "
                 f"{duration(s.resolved_at - s.healthy_since)} before recovery was confirmed"
                 if s.resolved_at is not None and s.healthy_since is not None else ""),
                ("Closed", s.closed_at, "")]
        lines = []
        for label, moment, extra in rows:
            if moment is None:
                pending = "not yet" if s.open or label == "Closed" else "never"
                lines.append(f"- {label}: {pending}")
                continue
            after = f"{duration(moment - t0)} after detection" \
                if t0 is not None and label != "Detected" else ""
            detail = "; ".join(x for x in (after, extra) if x)
            lines.append(f"- {label}: {when(moment)}" + (f" ({detail})" if detail else ""))
        if s.open and s.healthy_since is not None and s.resolved_at is None:
            lines.append(f"- Healthy since {when(s.healthy_since)}; not yet long enough to "
                         "confirm recovery")
        return lines

    # -- impact ---------------------------------------------------------------------------------
    def blast_radius(self) -> list[str]:
        b = self.s.blast_radius
        if b is None:
            return ["The blast radius has not been assessed" +
                    (" yet." if self.s.open else ": no blast-radius step ran for this "
                     "incident.")]
        lines = [f"Checked at {self.at(b.checked_at)}."
                 + (f" {_sentence(b.summary)}" if b.summary else "")]
        if b.synthetic_checks:
            failing = [c.name for c in b.synthetic_checks if not c.ok]
            lines += ["", f"Synthetic checks: {len(b.synthetic_checks) - len(failing)}/"
                      f"{len(b.synthetic_checks)} passed"
                      + (f" (failing: {', '.join(failing)})." if failing else "."), ""]
            lines += _table(["Check", "URL", "Result", "HTTP status", "Latency", "Detail"], [
                [c.name, c.url, "pass" if c.ok else "FAIL",
                 c.status if c.status is not None else NONE,
                 _latency(c.latency_seconds), c.error] for c in b.synthetic_checks])
        else:
            lines += ["", "No synthetic checks were run."]
        if b.dashboards:
            lines += ["", "Dashboards:", ""]
            lines += _table(["Dashboard", "Query", "State", "Value"], [
                [d.name, code(d.query), d.state, d.value] for d in b.dashboards])
        else:
            lines += ["", "No dashboards were queried."]
        return lines

    def slow_queries(self) -> list[str]:
        q = self.s.slow_queries
        if q is None:
            return ["No slow-query analysis (identifySlowQueries) ran" +
                    (" yet." if self.s.open else " for this incident.")]
        lines = [f"The statements of pg_stat_statements (database of Secret {code(q.database)}) "
                 f"that took the most time from {self.at(q.baseline_at)} to "
                 f"{self.at(q.checked_at)}, the most first:", ""]
        if not q.statements:
            return [*lines[:-1], "", "None ran in that time."]
        return lines + _table(["#", "queryid", "Calls", "Mean (ms)", "Total (ms)", "Rows",
                               "Statement"],
                              [[n, code(st.queryid), st.calls, f"{st.mean_ms:.1f}",
                                f"{st.total_ms:.0f}", st.rows, code(oneline(st.query))]
                               for n, st in enumerate(q.statements, 1)])

    def plan_findings(self) -> list[str]:
        found = self.s.plan_findings
        if not found:
            return ["The scheduled database checks (QueryPlanDiff, IndexRecommendations) found "
                    "nothing while it was open" + (" so far." if self.s.open else ".")]
        return ["What the policy's scheduled database checks found while it was open "
                "(indexes are proposed only: the operator never runs DDL):", ""] + _table(
            ["Check", "Since", "queryid", "Finding", "Estimated cost", "Statement"],
            [[f.check, self.at(f.since), code(f.queryid), f.message,
              f"{f.cost_before:.2f} -> {f.cost_after:.2f}"
              if f.cost_before is not None and f.cost_after is not None else NONE,
              code(oneline(f.query))] for f in found])

    # -- timeline -------------------------------------------------------------------------------
    def timeline(self) -> list[str]:
        entries = sorted(self.s.timeline, key=lambda e: (e.at is None, e.at or 0.0))
        events = (f"`{self.kubectl('get events')} --field-selector "
                  f"involvedObject.kind=Incident,involvedObject.name={self.name} "
                  f"--sort-by=.lastTimestamp`")
        if not entries:
            return ["No timeline entries in the status yet. The operator also posts each "
                    f"entry as a Kubernetes Event of the Incident: {events}."]
        when_col = "Time (UTC)" if self.one_day else "Date and time (UTC)"
        lines = _table([when_col, "T+", "Event", "What happened"], [
            [self.clock(e.at), since(e.at, self.t0), e.type, e.message] for e in entries])
        if len(entries) >= inc.TIMELINE_LIMIT:
            note = (f"The status keeps only the newest {inc.TIMELINE_LIMIT} entries, and holds "
                    f"{len(entries)}: older entries were dropped from it. They are in the "
                    "Kubernetes Events of the Incident")
        else:
            note = (f"The status keeps the newest {inc.TIMELINE_LIMIT} entries and holds "
                    f"{len(entries)}, so this is the whole timeline so far. Once it grows past "
                    f"{inc.TIMELINE_LIMIT}, older entries are only in the Kubernetes Events of "
                    "the Incident")
        lines += ["", f"{note}: {events}. The API server keeps Events for one hour by default "
                  "(kube-apiserver `--event-ttl`): copy them into this document early."]
        return lines

    # -- steps ----------------------------------------------------------------------------------
    def steps(self) -> list[str]:
        steps = self.s.steps
        if not steps:
            return ["No first-response steps are recorded for this incident."]
        lead = ("Dry run: nothing was changed. Each step says what it would have changed, "
                "from -> to." if self.dry_run else
                "Each change reads from -> to: to undo it, set the field back to its value "
                "before the arrow.")
        lines = [lead, ""] if any(step.changes for step in steps) else []
        for number, step in enumerate(steps, 1):
            lines.append(f"{number}. **{step.id}** (`{step.action}`): {self._step_state(step)}")
            if step.approval:
                lines.append(f"   - Approval: {oneline(step.approval)}")
            if step.message and step.message != step.approval:
                lines.append(f"   - Result: {oneline(step.message)}")
            verb = "Would change" if step.state == inc.PLANNED else "Changed"
            for c in step.changes:
                lines.append(f"   - {verb} {_object(c)} {code(c.field)}: "
                             f"{_value(c.from_, '(unset)')} -> {_value(c.to, '(removed)')}")
        return lines

    def _step_state(self, step: inc.StepRecord) -> str:
        if step.started_at is None:
            return f"{step.state}, not started."
        tries = f", {_plural(step.attempts, 'attempt')}" if step.attempts else ""
        if step.finished_at is None:
            word = "since" if step.state in (inc.PENDING, inc.RUNNING) else "at"
            return f"{step.state} {word} {self.clock(step.started_at)} UTC{tries}."
        took = duration(step.finished_at - step.started_at)
        return (f"{step.state} in {took}, {self.clock(step.started_at)} to "
                f"{self.clock(step.finished_at)} UTC{tries}.")

    # -- freeze and rollback --------------------------------------------------------------------
    def freeze(self) -> list[str]:
        f = self.s.freeze
        if f is None:
            return ["No deploy freeze: the runbook did not freeze deployments for this "
                    "incident" + (", or its freeze step has not run yet." if self.s.open
                                  else ".")]
        objects = ", ".join(f"`{o}`" for o in f.objects) or "no objects"
        scope = f"Scope {f.scope or 'unknown'}: {objects}."
        if f.active:
            lines = [f"**Still active** since {self.at(f.since)}. {scope}"
                     + (f" Frozen for: {_sentence(f.reason)}" if f.reason else ""),
                     "", "Lift it now (it also lifts itself once the incident is resolved):",
                     "", "```",
                     f"{self.kubectl(f'patch incident {self.name}')} --type merge "
                     "-p '{\"spec\":{\"liftFreeze\":true}}'", "```"]
        else:
            held = (f", {duration(f.lifted_at - f.since)}"
                    if f.lifted_at is not None and f.since is not None else "")
            lines = [f"From {when(f.since)} to {when(f.lifted_at)}{held}. {scope}",
                     "", f"Lifted because: {_sentence(f.reason) or 'not recorded.'}"]
        if f.allowed_template_hash:
            lines += ["", "Rolling back to the last healthy pod template (fingerprint "
                      f"`{f.allowed_template_hash}`) stayed allowed during the freeze."]
        return lines + self.gitops()

    def gitops(self) -> list[str]:
        g = self.s.gitops
        if g is None:
            return []
        at = f" at revision `{g.revision}`" if g.revision else " (its revision unknown)"
        lines = ["", f"GitOps: {g.kind} `{g.namespace}/{g.name}` suspended {when(g.suspended_at)}"
                 f"{at}, read from {g.source or 'its own status'}."]
        if g.released_at is None:
            lines.append("Still suspended: the freeze holds until its source revision moves on "
                         "or a person lifts it; closing the incident resumes it.")
        else:
            lines.append(f"Resumed {when(g.released_at)}: {_sentence(g.released_because)}")
        return lines

    def rollback(self) -> list[str]:
        r = self.s.rollback
        step = next((st for st in self.s.steps if st.action == "rollback"), None)
        if r is None:
            return ["No rollback: " + ("none was planned for this incident." if step is None
                                       else f"step `{step.id}` is {step.state}, with no "
                                       "target recorded.")]
        source = _revision(r.from_revision, r.from_replica_set)
        if r.to_revision is None and not r.to_replica_set:
            lines = [f"From {source}: no healthy revision was known to roll back to."]
        else:
            target = _revision(r.to_revision, r.to_replica_set)
            lines = [f"From {source} -> to {target}"
                     + (f", at {self.at(r.at)}." if r.at is not None else ".")]
        if step is None:
            lines += ["", "The runbook has no rollback step: this is the release it would have "
                      "gone back to."]
        else:
            done = {inc.SUCCEEDED: "rolled back", inc.PLANNED: "dry run, not rolled back",
                    inc.PENDING: "not run yet", inc.RUNNING: "running"}.get(step.state, "")
            lines += ["", f"Rollback step `{step.id}`: {step.state}"
                      + (f" ({done})" if done else "")
                      + (f" — {_sentence(step.message)}" if step.message else ".")]
        return lines

    # -- people ---------------------------------------------------------------------------------
    def people(self) -> list[str]:
        s = self.s
        acks = {a.get("role"): a for a in self.spec.get("acknowledgements") or []
                if a.get("role")}
        lines: list[str] = []
        if s.pages:
            lines += self._page_summary(acks)
            lines += ["", *_table(
                ["Role", "Contact", "Route", "Kind", "Sent (UTC)", "Outcome", "Attempts",
                 "Round", "Acknowledged", "Error"],
                [[p.role, p.contact or "(nobody holds the role)", p.route, p.kind,
                  self.clock(p.at), p.outcome, p.attempts, p.round, self._ack(p, acks),
                  p.error] for p in s.pages])]
        else:
            lines.append("Nobody has been paged" + (" yet." if s.open else "."))
        unpaged = [a for role, a in acks.items() if not any(p.role == role for p in s.pages)]
        for a in unpaged:
            lines += ["", f"Acknowledged without a recorded page: {a['role']} by {a.get('by')}"
                      + (f" at {self._ack_time(a)}" if a.get("at") else "") + "."]
        lines += ["", "**Escalations**", ""]
        if s.escalations:
            for e in s.escalations:
                lines.append(f"- {self.clock(e.at)} UTC ({since(e.at, self.t0)}), rule "
                             f"`{e.after}`: {oneline(e.when)}; paged "
                             f"{', '.join(e.roles) or 'nobody'}")
        else:
            lines.append("No escalations.")
        lines += ["", "**Response channel**", ""]
        c = s.channel
        lines.append(f"#{c.name}, announced at {self.at(c.announced_at)} "
                     f"({c.outcome or 'outcome not recorded'})." if c is not None else
                     "No response channel has been announced.")
        lines += ["", "**Stakeholder updates**", ""]
        if s.updates:
            lines += _table(["Sent (UTC)", "Phase", "Outcome", "Message", "Next due"], [
                [self.clock(u.at), u.phase, u.outcome + (f" ({u.error})" if u.error else ""),
                 u.message, "final" if u.final else self.clock(u.next_at)] for u in s.updates])
            failed = sum(1 for u in s.updates if u.outcome == "failed")
            if failed:
                lines += ["", f"{_plural(failed, 'update')} did not reach stakeholders."]
        else:
            lines.append("No stakeholder updates have been sent.")
        return lines

    def _page_summary(self, acks: dict[str, dict]) -> list[str]:
        s, t0 = self.s, self.t0
        out = []
        delivered = [p.at for p in s.pages if p.outcome == "delivered" and p.at is not None]
        if delivered and t0 is not None:
            out.append(f"First page delivered {duration(min(delivered) - t0)} after "
                       "detection.")
        acked = [p.acknowledged_at for p in s.pages if p.acknowledged_at is not None]
        if acked and t0 is not None:
            out.append(f"First acknowledgement {duration(min(acked) - t0)} after detection.")
        roles = dict.fromkeys(p.role for p in s.pages if p.kind == "page")
        waiting = [r for r in roles if r not in acks and not any(
            p.role == r and p.acknowledged_at is not None for p in s.pages)]
        if waiting:
            out.append(f"Never acknowledged: {', '.join(waiting)}.")
        return [" ".join(out)] if out else []

    def _ack(self, page: inc.Page, acks: dict[str, dict]) -> str:
        by = (acks.get(page.role) or {}).get("by")
        if page.acknowledged_at is not None:
            return self.clock(page.acknowledged_at) + (f" by {by}" if by else "")
        if by and page.kind == "page":
            ack = acks[page.role]
            return f"by {by}" + (f" at {self._ack_time(ack)}" if ack.get("at") else "")
        return NONE

    def _ack_time(self, ack: dict) -> str:
        try:
            return self.clock(timeutil.parse(ack.get("at")))
        except ValueError:
            return str(ack.get("at"))

    # -- SLO ------------------------------------------------------------------------------------
    def slo(self) -> list[str]:
        s = self.s
        deadline = s.slo.deadline
        if deadline is None:
            return ["No recovery SLO deadline is recorded for this incident."]
        budget = f" ({duration(deadline - self.t0)} after detection)" \
            if self.t0 is not None else ""
        lines = [f"Deadline: {when(deadline)}{budget}."]
        if s.resolved_at is not None:
            margin = duration(abs(deadline - s.resolved_at))
            if s.resolved_at <= deadline:
                lines.append(f"**Met**: resolved at {self.clock(s.resolved_at)} UTC, "
                             f"{margin} before the deadline.")
            else:
                lines.append(f"**Breached** by {margin}: resolved at "
                             f"{self.clock(s.resolved_at)} UTC.")
        elif s.slo.breached:
            lines.append("**Breached**: not resolved by the deadline"
                         + (" and never resolved." if not s.open else
                            "; still not resolved, so the overrun is still growing."))
        elif s.open:
            lines.append("Not resolved yet"
                         + (f"; when the status was last written: {s.slo.status}."
                            if s.slo.status else "."))
        else:
            lines.append(f"Not resolved (phase {s.phase}); the SLO was not breached while "
                         "the incident was open.")
        return [" ".join(lines)]

    # -- action items ---------------------------------------------------------------------------
    def action_items(self) -> list[str]:
        items = [i for i in self.spec.get("actionItems") or [] if isinstance(i, dict)]
        patch = self.kubectl(f"patch incident {self.name}")
        if not items:
            example = json.dumps({"spec": {"actionItems": [
                {"title": "What must be done", "assignee": "who", "due": "YYYY-MM-DD"}]}})
            return ["**None yet.** The recovery confirmation must carry post-incident action "
                    "items, each with an assignee: the incident cannot be closed without them. "
                    "Add them with:", "", "```",
                    f"{patch} --type merge -p {shlex.quote(example)}", "```"]
        lines = []
        missing = []
        for index, item in enumerate(items):
            who = oneline(item.get("assignee") or "")
            if not who:
                missing.append(index)
            due = f" (due {_due(item['due'])})" if item.get("due") else ""
            lines.append(f"- [ ] {oneline(item.get('title') or '(untitled)')} — "
                         + (who if who else "**no assignee**") + due)
        if missing:
            ops = [{"op": "add", "path": f"/spec/actionItems/{i}/assignee", "value": "who"}
                   for i in missing]
            lines += ["", f"**{_plural(len(missing), 'action item')} without an assignee**: "
                      "the incident cannot be closed until every item has one. Assign "
                      + ("it" if len(missing) == 1 else "them") + " with:", "", "```",
                      f"{patch} --type json -p {shlex.quote(json.dumps(ops))}", "```"]
        elif self.s.phase == inc.CLOSED:
            lines += ["", f"Closed at {when(self.s.closed_at)} with these items."]
        elif not self.s.open and self.has_status:
            lines += ["", "Every item has an assignee: close the incident with:", "", "```",
                      f"{patch} --type merge -p '{{\"spec\":{{\"close\":true}}}}'", "```"]
        return lines

    # -- conditions -----------------------------------------------------------------------------
    def conditions(self) -> list[str]:
        if not self.s.conditions:
            return ["No conditions are set."]
        return _table(["Type", "Status", "Reason", "Since (UTC)", "Message"], [
            [c.type, c.status, c.reason, when(c.last_transition_time), c.message]
            for c in self.s.conditions])


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _object(change: inc.Change) -> str:
    if change.kind == "Namespace" or not change.namespace:
        return f"{change.kind} {change.name}"
    return f"{change.kind} {change.namespace}/{change.name}"


def _revision(number: int | None, replica_set: str | None) -> str:
    text = f"revision {number}" if number is not None else "an unknown revision"
    return text + (f" (ReplicaSet `{replica_set}`)" if replica_set else "")


def silence_line(silence: inc.SilenceRecord) -> str:
    by = f" by {silence.created_by}" if silence.created_by else ""
    until = f" until {timeutil.iso(silence.ends_at)}" if silence.ends_at else ""
    comment = f": {silence.comment}" if silence.comment else ""
    matchers = f" ({silence.matchers})" if silence.matchers else ""
    return f"Alertmanager silence `{silence.id}`{by}{until}{matchers}{comment}"
