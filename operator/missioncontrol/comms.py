"""The escalation protocol's clockwork, pure: when stakeholder updates are due and what
they say, which roles to page again, whether the specialists were paged in time, and what
is still owed to people (the outbox: failed pages and the all-clear, retried until they
are delivered or expire, also after the incident resolved).

All of it reads the Incident's status (what was sent, when), never a timer in memory, so a
restarted operator sends what is due and nothing twice."""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import durations
from . import incident as inc
from .timeutil import iso


@dataclass(frozen=True)
class UpdatePlan:
    message: str
    final: bool
    next_at: float | None
    at: float | None = None   # a retry: the record (and idempotency key) it sends again


SENT = ("delivered", "planned", "sending", "unconfirmed")   # may have reached people
GAVE_UP = ("no route", "expired")   # an update that will not be tried again
OWED = ("failed", "unconfirmed", "sending")   # a page not known to have reached anyone


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
    resolved = status.phase == inc.RESOLVED
    final = next((u for u in reversed(status.updates) if u.final), None)
    if resolved and final is not None:
        # The all-clear is composed once; a failed one goes again as it was, same key.
        if final.outcome in GAVE_UP or (final.last_tried is not None
                                        and now - final.last_tried < retry_after):
            return None
        return UpdatePlan(final.message, True, None, at=final.at)
    tried = status.updates[-1] if status.updates else None
    if tried is not None and tried.outcome not in SENT and tried.last_tried is not None \
            and now - tried.last_tried < min(retry_after, cadence):
        return None
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
    waiting = (f" Step {status.awaiting_approval} awaits a person's approval."
               if status.awaiting_approval else "")
    return UpdatePlan(f"Status: {status.phase}.{waiting} Since the last update: {done_text}. "
                      f"Recovery SLO: {slo}. Next update by {iso(next_at)}.", False, next_at)


def overdue(status: inc.IncidentStatus, cadence: float, now: float,
            grace: float = 60.0) -> bool:
    """Stakeholders were promised an update that has not reached them."""
    if not status.open or status.detected_at is None:
        return False
    last = last_update(status)
    promised = last.next_at if last is not None and last.next_at else status.detected_at
    return now > promised + min(grace, cadence)


def channel_name(*, prefix: str, cluster: str, incident: str) -> str:
    """The response channel: `inc-<incident>`, with the cluster's name in between in a fleet
    (the same incident name in two clusters must not open one channel). At most 80
    characters, Slack's limit."""
    return "-".join(p for p in (prefix, cluster, incident) if p)[:80]


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
        if latest.last_tried is not None and now - latest.last_tried >= repage_after:
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
        # When it reached them: the latest attempt (a page delivered on a retry reached
        # people then, not when it was first tried).
        at = page.last_tried
        if page.kind == "page" and page.outcome == "delivered" and at is not None \
                and not page.about:
            reached[page.role] = min(at, reached.get(page.role, at))
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


# -- the outbox: what is owed to people, also after the incident resolved ----------------------
def owed_pages(status: inc.IncidentStatus) -> tuple[inc.Page, ...]:
    """Pages to someone that are not known to have reached them. Once the incident is
    resolved, an acknowledgement is no longer news (the resolve says more)."""
    return tuple(p for p in status.pages if p.contact and p.outcome in OWED
                 and not (p.kind == "acknowledge" and not status.open))


def final_owed(status: inc.IncidentStatus) -> bool:
    """Resolved, and the all-clear has not gone out (nor been given up)."""
    if status.phase != inc.RESOLVED or status.detected_at is None:
        return False
    return not any(u.final and (u.outcome in SENT or u.outcome in GAVE_UP)
                   for u in status.updates)


def resolves_owed(status: inc.IncidentStatus) -> tuple[str, ...]:
    """Roles with a PagerDuty alert still open (triggered, never resolved) though the
    incident is resolved: a page delivered late needs its resolve too."""
    if status.phase != inc.RESOLVED:
        return ()
    resolved = {(p.role, p.contact) for p in status.pages if p.kind == "resolve"}
    return tuple(sorted({p.role for p in status.pages
                         if p.kind == "page" and p.route == "PagerDuty"
                         and p.outcome == "delivered" and (p.role, p.contact) not in resolved}))


def owed(status: inc.IncidentStatus) -> bool:
    """A resolved incident still owes people a notification: its daemon runs on for it.
    No clock: what has expired is marked by the daemon (see `expire`), which then ends."""
    if status.phase != inc.RESOLVED:
        return False
    return bool(owed_pages(status)) or final_owed(status) or bool(resolves_owed(status))


def redelivery_due(status: inc.IncidentStatus, now: float,
                   retry_after: float) -> tuple[inc.Page, ...]:
    """Owed pages to send again now: cut short by a crash (unconfirmed) at once, failed
    ones `retry_after` after their latest attempt. "sending" is under way here."""
    return tuple(p for p in owed_pages(status) if p.outcome == "unconfirmed"
                 or (p.outcome == "failed" and (p.last_tried is None
                                                or now - p.last_tried >= retry_after)))


def next_retry_in(status: inc.IncidentStatus, now: float, retry_after: float) -> float:
    """Seconds until the next owed delivery comes due (`retry_after` when none waits)."""
    times = [p.last_tried + retry_after for p in owed_pages(status)
             if p.outcome == "failed" and p.last_tried is not None]
    times += [0.0 for p in owed_pages(status) if p.outcome == "unconfirmed"]
    final = next((u for u in reversed(status.updates) if u.final), None)
    if final_owed(status) and final is not None and final.last_tried is not None:
        times.append(final.last_tried + retry_after)
    elif final_owed(status):
        times.append(0.0)
    return max(0.0, min(times) - now) if times else retry_after


def expire(status: inc.IncidentStatus, now: float, expiry: float) -> inc.IncidentStatus:
    """Give up what could not be delivered within `expiry` of its first attempt (the
    all-clear: of the resolution), with one timeline entry saying what was lost."""
    def old(at: float | None) -> bool:
        return at is not None and now - at >= expiry

    given_up = [p for p in owed_pages(status) if p.outcome != "sending" and old(p.at)]
    why = f"not delivered within {durations.format(expiry)}: given up"
    pages = tuple(replace(p, outcome="expired", error=(f"{why} (last error: {p.error})"
                                                       if p.error else why)[:500])
                  if p in given_up else p for p in status.pages)
    updates = status.updates
    lost = [f"page to {p.role} ({p.contact})" for p in given_up]
    if final_owed(status) and old(status.resolved_at):
        final = next((u for u in reversed(updates) if u.final), None)
        if final is not None and final.outcome == "failed":
            updates = tuple(replace(u, outcome="expired", error=why) if u is final else u
                            for u in updates)
        else:
            updates = (*updates, inc.Update(at=now, phase=status.phase, outcome="expired",
                                            final=True, error=why))[-inc.LIST_LIMIT:]
        lost.append("the all-clear")
    if not lost:
        return status
    status = replace(status, pages=pages, updates=updates)
    return inc.note(status, now, "DeliveryExpired", f"{', '.join(lost)} {why}")


def pending_condition(status: inc.IncidentStatus,
                      retry_after: float) -> tuple[bool, str, str] | None:
    """NotificationsPending, once the incident is resolved: True while something owed is
    retried; False when it all went out, or what could not was given up."""
    if status.phase != inc.RESOLVED:
        return None
    pages = owed_pages(status)
    if pages or final_owed(status):
        what = [f"{len(pages)} page(s)"] if pages else []
        what += ["the all-clear"] if final_owed(status) else []
        return True, "Retrying", (f"{' and '.join(what)} not delivered yet: retried every "
                                  f"{durations.format(retry_after)}")
    if any(p.outcome == "expired" for p in status.pages) or any(
            u.outcome == "expired" for u in status.updates):
        return False, "Expired", "some notifications could not be delivered in time"
    return False, "Delivered", "every notification owed has been delivered"
