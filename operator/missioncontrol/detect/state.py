"""How one condition's checks add up: consecutive failures, or failing for a sustained time.

The state is a small dataclass that round-trips through the policy's status, so a restarted
operator continues the count where it stopped."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..model import Alert, Condition, Threshold
from ..records import stamp
from .outcome import Check, Outcome


@dataclass(frozen=True)
class ConditionState:
    failures: int = 0                         # consecutive failed checks
    failing_since: float | None = stamp()     # first failed check of the current failing run
    last_outcome: str | None = None
    last_value: float | None = None
    last_check: float | None = stamp()
    last_message: str = ""

    def due(self, interval: float, now: float) -> bool:
        return self.last_check is None or now - self.last_check >= interval - 0.05


def advance(condition: Condition, state: ConditionState, check: Check) -> tuple[ConditionState,
                                                                               bool]:
    """Fold one check into the state; say whether the condition fires now.

    PASS resets the run; FAIL extends it (or starts a new one, see Check.new_run); UNKNOWN
    leaves the count as it was (a gap in the data is not evidence either way) but is
    remembered as the last outcome."""
    stamped = replace(state, last_outcome=str(check.outcome), last_value=check.value,
                      last_check=check.at, last_message=check.message[:300])
    if check.outcome is Outcome.PASS:
        return replace(stamped, failures=0, failing_since=None), False
    if check.outcome is Outcome.UNKNOWN:
        return stamped, False
    if check.new_run:
        state = replace(state, failures=0, failing_since=None)
    new = replace(stamped, failures=state.failures + 1,
                  failing_since=state.failing_since if state.failing_since is not None
                  else check.at)
    return new, fires(condition, new, check.at)


def fires(condition: Condition, state: ConditionState, now: float) -> bool:
    detector = condition.detector
    needed = getattr(detector, "consecutive_failures", None) or 1
    if state.failures < needed:
        return False
    if isinstance(detector, Threshold | Alert) and detector.sustain is not None:
        return state.failing_since is not None and now - state.failing_since >= detector.sustain
    return True
