"""The escalation protocol's clockwork, pure: when stakeholder updates are due and what
they say, which roles to page again, whether the specialists were paged in time.

All of it reads the Incident's status (what was sent, when), never a timer in memory, so a
restarted operator sends what is due and nothing twice."""

from __future__ import annotations

from dataclasses import dataclass

from . import durations
from . import incident as inc
from .timeutil import iso


@dataclass(frozen=True)
class UpdatePlan:
    message: str
    final: bool
    next_at: float | None


SENT = ("delivered", "planned", "sending", "unconfirmed")   # may have reached people


def last_update(status: inc.IncidentStatus) -> inc.Update | None:
    sent = [u for u in status.updates if u.outcome in SENT]
    return sent[-1] if sent else None


def update_due(status: inc.IncidentStatus, cadence: float, now: float,
               retry_after: float = 30.0) -> UpdatePlan | None:
    """The next stakeholder update, if one is due: at detection, then every `cadence`
    while the incident is open, then one final all-clear once it is resolved. A failed
    delivery is retried after `retry_after`."""
    if status.detected_at is None or status.phase == inc.CLOSED:
        return None
    last = last_update(status)
    if last is not None and last.final:
        return None
    tried = status.updates[-1] if status.updates else None
    if tried is not None and tried.outcome == "failed" and tried.at is not None \
            and now - tried.at < min(retry_after, cadence):
        return None
    resolved = status.phase == inc.RESOLVED
    if not resolved and last is not None and last.at is not None \
            and now - last.at < cadence:
        return None
    return compose(status, last, cadence, now, final=resolved)


def compose(status: inc.IncidentStatus, last: inc.Update | None, cadence: float, now: float,
            *, final: bool) -> UpdatePlan:
    since = last.at if last is not None and last.at is not None else 0.0
    done = [f"{e.type}: {e.message}" for e in status.timeline
            if e.at is not None and e.at > since and e.type not in ("Detected",)]
    done_text = "; ".join(done[-5:]) if done else "no change"
    if len(done) > 5:
        done_text = f"{len(done) - 5} earlier entries, then: " + done_text
    slo = status.slo.status or "unknown"
    if final:
        took = durations.format((status.resolved_at or now) - (status.detected_at or now))
        return UpdatePlan(f"All clear: resolved after {took}; recovery SLO {slo}. "
                          f"Since the last update: {done_text}. No further updates.",
                          True, None)
    next_at = now + cadence
    return UpdatePlan(f"Status: {status.phase}. Since the last update: {done_text}. "
                      f"Recovery SLO: {slo}. Next update by {iso(next_at)}.", False, next_at)


def overdue(status: inc.IncidentStatus, cadence: float, now: float,
            grace: float = 60.0) -> bool:
    """Stakeholders were promised an update that has not reached them."""
    if not status.open or status.detected_at is None:
        return False
    last = last_update(status)
    promised = last.next_at if last is not None and last.next_at else status.detected_at
    return now > promised + min(grace, cadence)


def acknowledged_roles(acknowledgements: list[dict]) -> dict[str, str]:
    return {a["role"]: a.get("by", "") for a in acknowledgements or [] if a.get("role")}


def repage_due(status: inc.IncidentStatus, roles: tuple[str, ...], acked: dict[str, str],
               repage_after: float, now: float) -> dict[str, int]:
    """Roles to page again, with their round: paged, unacknowledged, and the last round
    older than `repage_after`, while nobody has mitigated the incident."""
    if status.phase not in (inc.DETECTED, inc.MITIGATING, inc.FAILED):
        return {}
    due: dict[str, int] = {}
    for role in roles:
        if role in acked:
            continue
        pages = [p for p in status.pages if p.role == role and p.kind == "page"
                 and p.outcome in ("delivered", "unconfirmed")]
        if not pages:
            continue
        latest = max(pages, key=lambda p: (p.round, p.at or 0))
        if latest.at is not None and now - latest.at >= repage_after:
            due[role] = latest.round + 1
    return due


def specialists_paged(status: inc.IncidentStatus, roles: tuple[str, ...], page_within: float,
                      now: float) -> tuple[bool, str, str] | None:
    """The 5-minute promise: every role the runbook pages at once reached within the window.
    None while it is too early to say."""
    if not roles or status.detected_at is None:
        return None
    deadline = status.detected_at + page_within
    reached = {}
    for page in status.pages:
        if page.kind == "page" and page.outcome == "delivered" and page.at is not None:
            reached[page.role] = min(page.at, reached.get(page.role, page.at))
    late = [r for r in roles if reached.get(r) is not None and reached[r] > deadline]
    missing = [r for r in roles if r not in reached]
    window = durations.format(page_within)
    if not missing and not late:
        slowest = max(reached[r] for r in roles) - status.detected_at
        return True, "PagedInTime", (f"{', '.join(roles)} paged within "
                                     f"{durations.format(slowest)} (promise: {window})")
    if late:
        return False, "PagedLate", f"{', '.join(late)} paged after the {window} promise"
    if now > deadline:
        return False, "NotPaged", f"{', '.join(missing)} not reached within {window}"
    return None
