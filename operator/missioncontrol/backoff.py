"""The adaptive retry backoff of RB-003's automation: from the retry queue's depth, sampled
every interval, the backoff the consumers should wait before a retry. Pure: the caller reads
the depth and publishes the value (automation.py); time is passed in.

- The depth rose by more than the band since the last sample: the backoff doubles, up to max.
- It fell by more than the band, or the queue is empty: the backoff halves, down to initial.
- Otherwise (a flat queue, within the band) it stays: a queue that only wobbles never makes
  the backoff swing.
- No reading (Prometheus down, no series): nothing changes and the sample is not kept, so
  the next trend is measured from the last real reading. No data is never a trend.

The band is relative (5 % of the last depth) with a floor of one event, so a large queue's
noise counts as flat as well as a small queue's."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

FACTOR = 2.0          # one step at most per interval, either way
BAND = 0.05
BAND_FLOOR = 1.0


@dataclass(frozen=True)
class Backoff:
    value: float                      # seconds, the backoff published
    depth: float | None = None        # the last depth read
    at: float | None = None           # when it was read
    trend: str = "flat"               # rising | falling | flat | unknown: the last judgement


def start(initial: float) -> Backoff:
    return Backoff(value=initial)


def step(state: Backoff, *, depth: float | None, now: float, initial: float,
         maximum: float) -> Backoff:
    """The backoff after one more sample of the queue depth."""
    value = min(max(state.value, initial), maximum)   # bounds changed since: back inside
    if depth is None or math.isnan(depth) or math.isinf(depth):
        return replace(state, value=value, trend="unknown")
    if state.depth is None:
        return Backoff(value, depth, now, "flat")
    band = max(BAND_FLOOR, BAND * state.depth)
    change = depth - state.depth
    if change > band and depth > 0:
        return Backoff(min(maximum, value * FACTOR), depth, now, "rising")
    if change < -band or depth == 0:
        return Backoff(max(initial, value / FACTOR), depth, now,
                       "falling" if change < -band else "flat")
    return Backoff(value, depth, now, "flat")


def shown(seconds: float) -> str:
    """As the contract spells a duration: seconds with up to three decimals and "s"."""
    return f"{round(seconds, 3):g}s"
