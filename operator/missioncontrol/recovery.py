"""Pure decisions about an open incident: is the target healthy again, is it time to call
it mitigated or resolved, which escalation rules are due. The engine supplies the facts."""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import durations
from . import incident as inc
from .model import EscalationRule, Runbook


@dataclass(frozen=True)
class Health:
    """The target as the engine saw it this round."""
    exists: bool
    rolled_out: bool              # fully rolled out, every replica ready and available
    on_expected_template: bool    # after a rollback: running the healthy template
    failing: tuple[str, ...] = ()  # trigger conditions whose last check failed
    passing: tuple[str, ...] = ()  # ... whose last check passed
    unknown: tuple[str, ...] = ()  # ... whose last check had no data

    @property
    def healthy(self) -> bool:
        return self.exists and self.rolled_out and self.on_expected_template and not self.failing

    def describe(self) -> str:
        parts = []
        if self.passing:
            parts.append(f"passing: {', '.join(self.passing)}")
        if self.unknown:
            parts.append(f"no data: {', '.join(self.unknown)}")
        return "; ".join(parts)


def progress(status: inc.IncidentStatus, runbook: Runbook, health: Health,
             now: float) -> inc.IncidentStatus:
    """Move between Mitigating, Mitigated and Resolved as the target's health says."""
    if not status.open:
        return status
    if not health.healthy:
        if status.healthy_since is not None:
            status = replace(status, healthy_since=None)
            if status.phase == inc.MITIGATED:
                status = inc.move(status, now, inc.MITIGATING,
                                  "the target is unhealthy again: back to mitigating")
                status = inc.set_condition(status, now, "Mitigated", False, "Relapsed")
        return status
    if status.healthy_since is None:
        status = replace(status, healthy_since=now)
    if status.phase in (inc.DETECTED, inc.MITIGATING, inc.FAILED):
        status = inc.move(status, now, inc.MITIGATED,
                          f"the target is healthy again ({health.describe() or 'rolled out'})")
    stable = now - status.healthy_since
    if stable >= runbook.recovery.stable_for and health.passing:
        status = inc.move(status, now, inc.RESOLVED,
                          f"stable for {durations.format(stable)}; {health.describe()}")
    return status


def watched(status: inc.IncidentStatus, now: float, *, last_seen: float | None,
            gap: float) -> inc.IncidentStatus:
    """Stable means watched throughout: a healthy stretch with a hole in it longer than `gap`
    (an API server outage, a restart or a failover: `last_seen` None, nobody here saw it)
    counts again from now. No data is never health."""
    since = status.healthy_since
    if not status.open or since is None:
        return status
    seen = last_seen if last_seen is not None else since
    if now - seen <= gap:
        return status
    status = replace(status, healthy_since=now)
    return inc.note(status, now, "StableRestarted",
                    f"healthy since {durations.format(now - since)} ago but not watched for "
                    f"{durations.format(now - seen)}: counting stableFor again from now")


def holds(rule: EscalationRule, status: inc.IncidentStatus) -> bool:
    if rule.when == "Always":
        return True
    if rule.when == "NotMitigated":
        return status.phase not in (inc.MITIGATED, inc.RESOLVED, inc.CLOSED)
    if rule.when == "NotRecovered":
        return status.phase not in (inc.RESOLVED, inc.CLOSED)
    if rule.when == "SLOBreached":
        return status.slo.breached
    return False


def rule_key(rule: EscalationRule) -> str:
    """The rule's identity in status.escalations: its `after`, to the second."""
    return durations.exact(rule.after)


def due_rules(status: inc.IncidentStatus, runbook: Runbook,
              now: float) -> list[EscalationRule]:
    """Escalation rules whose time has come and whose condition holds, not yet fired. They
    fire while the incident is open only: never after it is resolved."""
    if not status.open or status.detected_at is None:
        return []
    fired = {e.after for e in status.escalations}
    return [r for r in runbook.escalation.rules
            if now - status.detected_at >= r.after and rule_key(r) not in fired
            and holds(r, status)]


def next_rule_in(status: inc.IncidentStatus, runbook: Runbook, now: float) -> float | None:
    if status.detected_at is None:
        return None
    fired = {e.after for e in status.escalations}
    waits = [status.detected_at + r.after - now for r in runbook.escalation.rules
             if rule_key(r) not in fired]
    waits = [w for w in waits if w > 0]
    return min(waits) if waits else None
