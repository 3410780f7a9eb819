"""A policy's maintenance window: `spec.pausedUntil` (and `pauseReason`, `pausedBy`), set by
`kubectl mc pause` and removed by `kubectl mc resume`.

While it lasts the guard keeps watching (releases are followed, checks counted, the last
healthy release recorded) but opens no incident, so nothing is frozen, rolled back or paged
for the policy's targets. It ends by itself when the time passes: nobody has to remember to
resume. A target whose trigger still fires then opens its incident at its next check (while
its release is inside the runbook's afterRelease window). Pure: a function of the policy,
the targets' detector state and `now`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import timeutil
from .detect.release import TargetState, armed
from .detect.state import fires
from .model import Policy, Runbook

REASON = "Paused"


@dataclass(frozen=True)
class Pause:
    until: float
    reason: str = ""
    by: str = ""

    def describe(self) -> str:
        """The window in words, without a countdown: the Ready condition's message changes
        (and an Event is posted) only when something real changes."""
        who = f" by {self.by}" if self.by else ""
        why = f": {self.reason}" if self.reason else ""
        return f"paused until {timeutil.iso(self.until)}{who}{why}"


def in_force(policy: Policy, now: float) -> Pause | None:
    """The pause holding the policy now, or None (never paused, or the window is over)."""
    if policy.paused_until is None or now >= policy.paused_until:
        return None
    return Pause(policy.paused_until, policy.pause_reason, policy.paused_by)


def held(runbook: Runbook, states: Iterable[TargetState], now: float) -> list[str]:
    """The targets that would have an incident open now, were the policy not paused: armed,
    and a trigger condition firing ("namespace/name (condition, ...)")."""
    out = []
    for state in sorted(states, key=lambda s: s.key):
        if not armed(runbook, state, now):
            continue
        firing = [c.name for c in runbook.trigger.conditions
                  if c.name in state.checks and fires(c, state.checks[c.name], now)]
        if firing:
            out.append(f"{state.namespace}/{state.name} ({', '.join(firing)})")
    return out


def message(pause: Pause, *, guarding: str, holding: list[str]) -> str:
    """The Ready condition's message while paused."""
    text = (f"{pause.describe()}; {guarding}, but no incident is opened and nothing is done "
            f"for its targets until then (the pause ends by itself)")
    if holding:
        text += (f"; held back: an incident for {', '.join(holding)}, opened at the next "
                 f"check after the pause if it still fires")
    return text
