"""What `kubectl mc get` and `kubectl mc describe` print: plain text, aligned columns, times
as ages and time left (the way kubectl prints them), everything read from the Incident as
the API returns it. Pure: the object and `now` in, lines out."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from .. import incident as inc
from .. import timeutil
from ..postmortem import duration
from ..records import from_dict

NONE = "-"
BOARD = ("NAME", "RUNBOOK", "TARGET", "SEVERITY", "PHASE", "SLO", "FREEZE", "ACKED",
         "APPROVAL", "OWNER", "AGE")


def columns(rows: list[list[str]], *, indent: str = "") -> list[str]:
    """Rows padded into columns three spaces apart, like kubectl's tables."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    return [indent + "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
            for row in rows]


def age(moment: float | None, now: float) -> str:
    return NONE if moment is None else duration(max(0.0, now - moment))


@dataclass(frozen=True)
class Incident:
    """An Incident body, typed for reading."""
    name: str
    namespace: str
    spec: dict
    status: inc.IncidentStatus
    created: float | None
    has_status: bool

    @classmethod
    def of(cls, body: dict) -> Incident:
        meta = body.get("metadata") or {}
        raw = body.get("status") or {}
        return cls(meta.get("name", "?"), meta.get("namespace", ""), body.get("spec") or {},
                   from_dict(inc.IncidentStatus, raw),
                   timeutil.parse(meta.get("creationTimestamp")), bool(raw))

    @property
    def acknowledgements(self) -> list[dict]:
        return [a for a in self.spec.get("acknowledgements") or [] if isinstance(a, dict)]

    def paged_roles(self) -> list[str]:
        return list(dict.fromkeys(p.role for p in self.status.pages if p.kind == "page"))


def slo_left(incident: Incident, now: float) -> str:
    """The recovery SLO as of now (the operator's column is as of its last write): time left,
    breached, or met once resolved in time."""
    s = incident.status
    if not incident.has_status:
        return NONE
    if s.slo.breached:
        return "breached"
    if s.phase in (inc.RESOLVED, inc.CLOSED) or s.slo.deadline is None:
        if s.resolved_at is not None and s.slo.deadline is not None:
            return "met" if s.resolved_at <= s.slo.deadline else "breached"
        # Closed before it recovered: the clock stopped; a "left" from the last round would
        # read as still running.
        return NONE if (s.slo.status or "").endswith("left") else (s.slo.status or NONE)
    left = s.slo.deadline - now
    return f"{duration(left)} left" if left > 0 else "breached"


def freeze(incident: Incident) -> str:
    f = incident.status.freeze
    if f is None:
        return NONE
    if f.active:
        return f"on ({f.scope})" if f.scope else "on"
    return "lifted" if f.lifted_at is not None else NONE


def acked(incident: Incident) -> str:
    """Acknowledged roles out of the roles paged: `1/2`; `-` when nobody was paged."""
    paged = incident.paged_roles()
    roles = {a.get("role") for a in incident.acknowledgements}
    if not paged:
        return f"{len(roles)}/0" if roles else NONE
    return f"{len(roles & set(paged))}/{len(paged)}"


def approval(incident: Incident) -> str:
    """The step waiting for a person's approval, if one is: `rollback waiting`."""
    step = incident.status.awaiting_approval
    return f"{step} waiting" if step else NONE


def board_row(body: dict, now: float, *, all_namespaces: bool) -> list[str]:
    i = Incident.of(body)
    target = i.spec.get("target") or {}
    row = [i.name, (i.spec.get("runbook") or {}).get("id", NONE),
           target.get("name", NONE), i.spec.get("severity") or NONE,
           i.status.phase if i.has_status else NONE, slo_left(i, now), freeze(i), acked(i),
           approval(i), i.spec.get("owner") or NONE, age(i.created, now)]
    return [i.namespace, *row] if all_namespaces else row


def board(bodies: list[dict], now: float, *, all_namespaces: bool,
          header: bool = True) -> list[str]:
    head = (["NAMESPACE", *BOARD] if all_namespaces else list(BOARD)) if header else []
    rows = [board_row(b, now, all_namespaces=all_namespaces) for b in bodies]
    lines = columns([head, *rows] if head else rows)
    return lines


# -- describe ---------------------------------------------------------------------------------
def _stamp(moment: float, now: float) -> str:
    """UTC time of day (with the date when it is not today): 10:04:12."""
    stamp = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    same_day = stamp.date() == datetime.datetime.fromtimestamp(now, datetime.UTC).date()
    return stamp.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")


def _clock(moment: float | None, now: float) -> str:
    """A moment as UTC time of day and how long ago: 10:04:12 (3m05s ago)."""
    if moment is None:
        return NONE
    delta = now - moment
    ago = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return f"{_stamp(moment, now)} ({ago})"


def _one_line(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _took(step: inc.StepRecord) -> str:
    if step.started_at is None or step.finished_at is None:
        return NONE
    return duration(step.finished_at - step.started_at)


def _change(change: inc.Change) -> str:
    where = (change.name if change.kind == "Namespace" or not change.namespace
             else f"{change.namespace}/{change.name}")
    return (f"{change.kind} {where} {change.field}: {change.from_ or NONE} -> "
            f"{change.to or NONE}")


def describe(body: dict, now: float) -> str:
    """An incident at a glance: what, how bad, how long left, then its conditions, steps
    (with what they changed), pages, acknowledgements, action items and timeline."""
    i = Incident.of(body)
    s, spec = i.status, i.spec
    target = spec.get("target") or {}
    runbook = spec.get("runbook") or {}
    severity = spec.get("severity") or NONE
    if s.severity and s.severity != spec.get("severity"):
        severity += f" (the operator last acted on {s.severity})"
    head = [
        ["Name:", i.name], ["Namespace:", i.namespace],
        *([["Cluster:", s.cluster]] if s.cluster else []),
        ["Runbook:", f"{runbook.get('id', NONE)} ({runbook.get('name', NONE)})"
                     + (f", policy {spec['policy']}" if spec.get("policy") else "")],
        ["Target:", f"{target.get('kind') or 'Deployment'} {target.get('namespace', '?')}/"
                    f"{target.get('name', '?')}"],
        ["Severity:", severity], ["Owner:", spec.get("owner") or NONE],
        ["Mode:", spec.get("mode") or NONE],
        ["Phase:", (s.phase if i.has_status else "(no status yet)")
                   + (", escalated" if s.escalated else "")],
        ["Detected:", _clock(s.detected_at, now)],
        ["SLO:", slo_left(i, now) + (f", deadline {_stamp(s.slo.deadline, now)} UTC"
                                     if s.slo.deadline is not None else "")],
        ["Freeze:", _freeze_line(s.freeze, now)],
    ]
    r = s.rollback
    if r is not None and r.from_revision is not None:
        to = "?" if r.to_revision is None else str(r.to_revision)
        head.append(["Rollback:", f"revision {r.from_revision} -> {to}"
                                  + (f" ({r.to_replica_set})" if r.to_replica_set else "")])
    if spec.get("summary"):
        head.append(["Summary:", _one_line(spec["summary"], 300)])
    if s.reason:
        head.append(["Reason:", _one_line(s.reason, 300)])
    out = columns(head)
    out += _section("Conditions", ["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], [
        [c.type, c.status, c.reason or NONE, age(c.last_transition_time, now),
         _one_line(c.message, 100) or NONE] for c in s.conditions])
    steps: list[list[str]] = []
    for step in s.steps:
        steps.append([step.id, step.action, step.state, _took(step),
                      _one_line(step.message, 100) or NONE])
        if step.approval and step.approval != step.message:
            steps.append(["", "", "", "", f"gate: {_one_line(step.approval, 100)}"])
        steps += [["", "", "", "", f"changed {_change(c)}"] for c in step.changes]
    out += _section("Steps", ["ID", "ACTION", "STATE", "TOOK", "MESSAGE"], steps)
    by: dict[str, list[str]] = {}
    for a in i.acknowledgements:
        by.setdefault(a.get("role", ""), []).append(a.get("by", "?"))
    out += _section("Pages", ["ROLE", "CONTACT", "KIND", "ROUND", "OUTCOME", "SENT", "ACKED BY"], [
        [p.role, p.contact or NONE, p.kind, str(p.round), p.outcome or NONE, age(p.at, now),
         ", ".join(by.get(p.role, [])) or NONE if p.kind == "page" else NONE]
        for p in s.pages])
    out += _section("Acknowledgements", ["ROLE", "BY", "AT"], [
        [a.get("role", NONE), a.get("by", NONE), _clock(_parse(a.get("at")), now)]
        for a in i.acknowledgements])
    out += _section("Action items", ["TITLE", "ASSIGNEE", "DUE"], [
        [_one_line(a.get("title"), 80), a.get("assignee") or "(none: needed to close)",
         a.get("due") or NONE] for a in spec.get("actionItems") or []])
    out += _section("Timeline", ["AT", "TYPE", "MESSAGE"], [
        [_clock(e.at, now), e.type, _one_line(e.message, 120)] for e in s.timeline])
    out += ["", *_next(i)]
    return "\n".join(out) + "\n"


def _parse(text: str | None) -> float | None:
    try:
        return timeutil.parse(text)
    except (TypeError, ValueError):
        return None


def _freeze_line(f: inc.Freeze | None, now: float) -> str:
    if f is None:
        return "none"
    objects = f", {', '.join(f.objects)}" if f.objects else ""
    if f.active:
        return f"active since {_clock(f.since, now)}, scope {f.scope or 'unknown'}{objects}"
    if f.lifted_at is not None:
        return f"lifted {_clock(f.lifted_at, now)}" + (f": {f.reason}" if f.reason else "")
    return "none"


def _section(title: str, head: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["", f"{title}: none"]
    return ["", f"{title}:", *columns([head, *rows], indent="  ")]


def _next(i: Incident) -> list[str]:
    """What the on-call can do next, as commands to copy."""
    ns = f" -n {i.namespace}" if i.namespace else ""
    s = i.status
    if s.phase in (inc.CLOSED, inc.REJECTED):
        return [f"Postmortem: kubectl mc postmortem {i.name}{ns}"]
    lines = []
    acked_roles = {a.get("role") for a in i.acknowledgements}
    waiting = [r for r in i.paged_roles() if r not in acked_roles]
    if waiting:
        lines.append(f"Acknowledge: kubectl mc ack {i.name}{ns} --role {waiting[0]}"
                     + (f"   (waiting: {', '.join(waiting)})" if len(waiting) > 1 else ""))
    if s.awaiting_approval:
        lines.append(f"Approve: kubectl mc approve {i.name} {s.awaiting_approval}{ns}   "
                     f"(or reject: kubectl mc reject {i.name} {s.awaiting_approval}{ns})")
    if s.freeze is not None and s.freeze.active:
        lines.append(f"Lift the freeze: kubectl mc lift-freeze {i.name}{ns}")
    lines.append(f"Close: kubectl mc close {i.name}{ns} --action-item "
                 f"\"title=...,assignee=...\"")
    return lines
