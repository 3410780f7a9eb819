"""Where a guarded Deployment stands: its current release, its last known healthy release,
and the running checks of each trigger condition. Pure; round-trips through policy status."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..model import Alert, Readiness, RisesSharply, Runbook, Threshold
from ..records import stamp
from . import signals
from .outcome import Check, Outcome
from .state import ConditionState, advance


@dataclass(frozen=True)
class DeploymentReading:
    """What the signal adapter saw of one Deployment."""
    namespace: str
    name: str
    revision: int
    replica_set: str | None      # the ReplicaSet of the current revision
    complete: bool               # rolled out: every replica updated, ready and available
    replicas: int = 0
    ready_replicas: int = 0
    available: int = 0           # available replicas of the current ReplicaSet itself
    paused: bool = False

    @property
    def running(self) -> bool:
        """Do pods of the current template really serve? Rolled out, not paused, and at
        least one replica of that ReplicaSet available. A Deployment scaled to 0 "rolls out"
        a new template without running a single pod of it; a paused one has not rolled out
        what its template says."""
        return (self.complete and not self.paused and self.replicas >= 1
                and self.available >= 1 and self.replica_set is not None)


@dataclass(frozen=True)
class TargetState:
    namespace: str
    name: str
    revision: int = 0
    replica_set: str | None = None
    released_at: float | None = stamp()
    healthy_since: float | None = stamp()
    last_healthy_revision: int | None = None
    last_healthy_replica_set: str | None = None
    last_healthy_at: float | None = stamp()
    # The healthy release before that: the rollback target while the newest healthy
    # release is itself the one failing (an error spike after it had looked stable).
    previous_healthy_revision: int | None = None
    previous_healthy_replica_set: str | None = None
    previous_healthy_at: float | None = stamp()
    checks: dict[str, ConditionState] = field(default_factory=dict)
    event_counts: dict[str, int] = field(default_factory=dict)
    failing_pods: tuple[str, ...] = ()     # the pods that failed the last readiness check
    incident: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def known_healthy(self) -> bool:
        return self.last_healthy_replica_set is not None

    def rollback_target(self) -> tuple[int | None, str | None]:
        """The newest healthy release that is not the current one."""
        if self.last_healthy_replica_set and self.last_healthy_replica_set != self.replica_set:
            return self.last_healthy_revision, self.last_healthy_replica_set
        if self.previous_healthy_replica_set \
                and self.previous_healthy_replica_set != self.replica_set:
            return self.previous_healthy_revision, self.previous_healthy_replica_set
        return None, None

    def returned_to_known_good(self) -> bool:
        """Is the current release one that had proven healthy before it was released again
        (a rollback)? Then it is not a new release to be suspicious of."""
        for replica_set, at in ((self.last_healthy_replica_set, self.last_healthy_at),
                                (self.previous_healthy_replica_set, self.previous_healthy_at)):
            if replica_set == self.replica_set and at is not None \
                    and self.released_at is not None and at < self.released_at:
                return True
        return False

    def distrust_current(self) -> TargetState:
        """The current release failed: it is no rollback target any more."""
        if self.last_healthy_replica_set == self.replica_set:
            return replace(self, last_healthy_revision=self.previous_healthy_revision,
                           last_healthy_replica_set=self.previous_healthy_replica_set,
                           last_healthy_at=self.previous_healthy_at,
                           previous_healthy_revision=None, previous_healthy_replica_set=None,
                           previous_healthy_at=None)
        if self.previous_healthy_replica_set == self.replica_set:
            return replace(self, previous_healthy_revision=None,
                           previous_healthy_replica_set=None, previous_healthy_at=None)
        return self


def observe(state: TargetState, reading: DeploymentReading, *, stable_for: float,
            now: float) -> TargetState:
    """Follow releases, and record a release as healthy once it has run: fully rolled out,
    with pods of it available, for `stable_for` seconds without a break. A Deployment at 0
    replicas or paused proves nothing and keeps its previous last healthy release."""
    if reading.replica_set != state.replica_set:
        # A new release (or a rollback to an older ReplicaSet): checks start afresh.
        state = replace(state, revision=reading.revision, replica_set=reading.replica_set,
                        released_at=now, healthy_since=None, checks={}, event_counts={},
                        failing_pods=())
    elif reading.revision != state.revision:
        state = replace(state, revision=reading.revision)
    if not reading.running:
        return replace(state, healthy_since=None) if state.healthy_since is not None else state
    since = state.healthy_since if state.healthy_since is not None else now
    state = replace(state, healthy_since=since)
    if now - since >= stable_for and state.last_healthy_replica_set != reading.replica_set \
            and state.incident is None:
        state = replace(state, previous_healthy_revision=state.last_healthy_revision,
                        previous_healthy_replica_set=state.last_healthy_replica_set,
                        previous_healthy_at=state.last_healthy_at,
                        last_healthy_revision=reading.revision,
                        last_healthy_replica_set=reading.replica_set, last_healthy_at=now)
    return state


def armed(runbook: Runbook, state: TargetState, now: float) -> bool:
    """Is the trigger watching this target now? Not while an incident is open for it; for
    after-release runbooks, for `window` after each new release (a rollback to a release
    that had proven healthy before is not a new release)."""
    if state.incident is not None or state.replica_set is None:
        return False
    window = runbook.trigger.after_release_window
    if window is None:
        return True
    if state.returned_to_known_good():
        return False
    return state.released_at is not None and now - state.released_at <= window


@dataclass(frozen=True)
class Readings:
    """The signal values for one target at one tick; a missing entry is unknown."""
    release: signals.ReleaseReading | None = None
    values: dict[str, float | None] = field(default_factory=dict)      # condition -> value
    baselines: dict[str, float | None] = field(default_factory=dict)   # risesSharply lows
    errors: dict[str, str] = field(default_factory=dict)               # condition -> why unknown
    alerts: dict[str, tuple[signals.AlertReport, ...]] = field(default_factory=dict)


def evaluate(runbook: Runbook, state: TargetState, readings: Readings,
             now: float) -> tuple[TargetState, list[Check], list[Check]]:
    """Run every condition that is due; return the new state, the checks made, and the
    checks whose condition fired."""
    checks: dict[str, ConditionState] = dict(state.checks)
    event_counts, failing_pods = state.event_counts, state.failing_pods
    made: list[Check] = []
    fired: list[Check] = []
    for condition in runbook.trigger.conditions:
        current = checks.get(condition.name, ConditionState())
        if not current.due(condition.interval, now):
            continue
        detector = condition.detector
        error = readings.errors.get(condition.name, "")
        if isinstance(detector, Readiness):
            check, event_counts, failing_pods = signals.readiness(
                condition.name, detector, readings.release, event_counts, failing_pods, now)
        elif isinstance(detector, Threshold):
            check = signals.threshold(condition.name, detector,
                                      readings.values.get(condition.name), now, error)
        elif isinstance(detector, Alert):
            check = signals.alert(condition.name, detector,
                                  readings.alerts.get(condition.name, ()), now, error)
        elif isinstance(detector, RisesSharply):
            check = signals.rises_sharply(condition.name, detector,
                                          readings.values.get(condition.name),
                                          readings.baselines.get(condition.name), now, error)
        else:  # pragma: no cover - the model has no other detector
            check = Check(condition.name, Outcome.UNKNOWN, now, None, "unknown detector")
        checks[condition.name], did_fire = advance(condition, current, check)
        made.append(check)
        if did_fire:
            fired.append(check)
    return replace(state, checks=checks, event_counts=event_counts,
                   failing_pods=failing_pods), made, fired


def next_due(runbook: Runbook, state: TargetState, now: float) -> float:
    """Seconds until the next condition of this target is due."""
    waits = []
    for condition in runbook.trigger.conditions:
        last = state.checks.get(condition.name, ConditionState()).last_check
        waits.append(0.0 if last is None else max(0.0, last + condition.interval - now))
    return min(waits) if waits else 60.0
