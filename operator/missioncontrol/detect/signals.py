"""Outcomes from readings: a threshold crossed, a value that rose sharply, a release whose
pods are not Ready. The readings come from the signal adapters; these functions only judge."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import durations, timeutil
from ..model import Alert, Readiness, RisesSharply, Threshold
from .outcome import Check, Outcome


def _known(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def threshold(name: str, detector: Threshold, value: float | None, now: float,
              error: str = "") -> Check:
    if not _known(value):
        why = error or "no data"
        return Check(name, Outcome.UNKNOWN, now, None, f"{why}: outcome unknown")
    verdict = Outcome.FAIL if detector.breached(value) else Outcome.PASS
    return Check(name, verdict, now, value, f"value {value:.4g} (fires {detector.describe()})")


def rises_sharply(name: str, detector: RisesSharply, current: float | None,
                  baseline: float | None, now: float, error: str = "") -> Check:
    """Sharp rise: at least `min_increase` above the window's lowest value, and at least
    `factor` times it (a baseline of 0 counts as rising once `min_increase` is passed)."""
    if not (_known(current) and _known(baseline)):
        why = error or "no data"
        return Check(name, Outcome.UNKNOWN, now, None, f"{why}: outcome unknown")
    increase = current - baseline
    sharp = increase >= detector.min_increase and (
        current >= detector.factor * baseline if baseline > 0 else increase > 0)
    verdict = Outcome.FAIL if sharp else Outcome.PASS
    return Check(name, verdict, now, current,
                 f"value {current:.4g}, lowest in window {baseline:.4g} "
                 f"(fires at x{detector.factor:g} and +{detector.min_increase:g})")


@dataclass(frozen=True)
class AlertReport:
    """The latest report Alertmanager sent of one alert (one fingerprint) about a target."""
    fingerprint: str
    alertname: str
    labels: tuple[tuple[str, str], ...]
    firing: bool
    received_at: float
    starts_at: float | None = None
    summary: str = ""     # the alert's summary (or description) annotation


def alert(name: str, detector: Alert, reports: tuple[AlertReport, ...], now: float,
          error: str = "") -> Check:
    """Firing fails the check, resolved passes it; no report, or only reports older than
    `stale_after` (Alertmanager re-sends a firing alert every repeat_interval, and a resolved
    one once), is unknown: silence from Alertmanager is not health."""
    fresh = [r for r in reports if now - r.received_at <= detector.stale_after]
    firing = sorted((r for r in fresh if r.firing), key=lambda r: r.starts_at or 0.0)
    if firing:
        first = firing[0]
        since = f" since {timeutil.iso(first.starts_at)}" if first.starts_at else ""
        more = f" (and {len(firing) - 1} more)" if len(firing) > 1 else ""
        about = f": {first.summary}" if first.summary else ""
        return Check(name, Outcome.FAIL, now, float(len(firing)),
                     f"alert {detector.alertname} firing{since}{more}{about}")
    if fresh:
        latest = max(fresh, key=lambda r: r.received_at)
        return Check(name, Outcome.PASS, now, 0.0,
                     f"alert {detector.alertname} resolved (reported "
                     f"{durations.format(max(0.0, now - latest.received_at))} ago)")
    if reports:
        latest = max(reports, key=lambda r: r.received_at)
        return Check(name, Outcome.UNKNOWN, now, None,
                     f"alert {detector.alertname} last reported "
                     f"{durations.format(now - latest.received_at)} ago, longer than staleAfter "
                     f"{durations.format(detector.stale_after)}: outcome unknown")
    why = error or f"no report of alert {detector.alertname} for this Deployment"
    return Check(name, Outcome.UNKNOWN, now, None, f"{why}: outcome unknown")


@dataclass(frozen=True)
class PodReading:
    name: str
    ready: bool
    not_ready_since: float   # creation, or the last transition of its Ready condition
    created: float = 0.0


@dataclass(frozen=True)
class ProbeEvents:
    """A readiness-probe `Unhealthy` Event of one pod, as the kubelet aggregates it."""
    pod: str
    key: str          # the Event's name
    count: int
    message: str


@dataclass(frozen=True)
class ReleaseReading:
    replica_set: str
    pods: tuple[PodReading, ...]
    events: tuple[ProbeEvents, ...]


def readiness(name: str, detector: Readiness, reading: ReleaseReading | None,
              seen: dict[str, int], failing: tuple[str, ...],
              now: float) -> tuple[Check, dict[str, int], tuple[str, ...]]:
    """One readiness check of a release's pods, judged by their state now.

    A pod that is Ready now passes, whatever the kubelet reported of it before: its earlier
    probe failures were its start (or a blip it recovered from) and are cancelled. A pod not
    Ready fails the check when it has been not Ready for longer than the grace period, or when
    the kubelet reported readiness-probe failures on it since the last check and the pod is
    older than the grace period (counted by the Event's aggregated count, so one Event is never
    counted twice). The check fails if any pod fails; passes if none does and at least one is
    Ready (pods still inside their grace period are not judged yet: a rolling update starts its
    pods one after the other); otherwise (no pods yet, all still starting) it is unknown.

    `failing` are the pods that failed the previous check; the pods failing this one are
    returned. When every pod that failed before is Ready now, their failing checks are
    cancelled: this failure starts a new run (a rolling update whose second pod is late after
    the first one has turned Ready counts from one again).

    Judging the state at the check, not the failures on the way, is what keeps a slow start
    safe whatever the probe period: with a 1 s probe the kubelet reports a failure every second
    until the pod is Ready, and those failures must not count once it is."""
    if reading is None:
        return Check(name, Outcome.UNKNOWN, now, None, "no release to check"), seen, failing
    counts = {e.key: e.count for e in reading.events}
    not_ready = {p.name for p in reading.pods if not p.ready}
    started = {p.name for p in reading.pods
               if p.name in not_ready and now - p.created >= detector.grace_period}
    new_events = [e for e in reading.events if e.pod in started and e.count > seen.get(e.key, 0)]
    new_failures = sum(e.count - seen.get(e.key, 0) for e in new_events)
    late = [p for p in reading.pods
            if not p.ready and now - p.not_ready_since >= detector.grace_period]
    total = len(reading.pods)
    ready = total - len(not_ready)
    if late or new_failures:
        failing_now = tuple(sorted({p.name for p in late} | {e.pod for e in new_events}))
        recovered = bool(failing) and set(failing) <= {p.name for p in reading.pods if p.ready}
        message = _failure(reading, detector, late=len(late), new_failures=new_failures,
                           sample=new_events[0].message if new_events else "")
        if recovered:
            message += f"; a new run: {', '.join(failing)} Ready now"
        return Check(name, Outcome.FAIL, now, float(len(failing_now)), message,
                     new_run=recovered), counts, failing_now
    if not total:
        return Check(name, Outcome.UNKNOWN, now, None,
                     f"{reading.replica_set} has no pods yet"), counts, ()
    starting = (f", {total - ready} starting within the {detector.grace_period:g}s grace "
                f"period" if ready < total else "")
    if ready:
        return Check(name, Outcome.PASS, now, 0.0,
                     f"{ready}/{total} pods of {reading.replica_set} Ready{starting}"), counts, ()
    return Check(name, Outcome.UNKNOWN, now, None,
                 f"{total - ready}/{total} pods of {reading.replica_set} not Ready yet, "
                 f"within the {detector.grace_period:g}s grace period"), counts, ()


def _failure(reading: ReleaseReading, detector: Readiness, *, late: int, new_failures: int,
             sample: str) -> str:
    parts = []
    if late:
        parts.append(f"{late}/{len(reading.pods)} pods of {reading.replica_set} not Ready for "
                     f"more than {detector.grace_period:g}s")
    if new_failures:
        plural = "s" if new_failures != 1 else ""
        parts.append(f"{new_failures} readiness-probe failure{plural} since the last check on "
                     f"pods still not Ready ({sample})")
    return "; ".join(parts)
