"""The result of one check of one condition."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    UNKNOWN = "Unknown"   # no data, NaN, the source unreachable: never read as pass or fail


@dataclass(frozen=True)
class Check:
    condition: str
    outcome: Outcome
    at: float
    value: float | None = None
    message: str = ""
    # A failure that starts a run of its own: what failed the checks before is healthy now
    # (a readiness check whose earlier failing pods are Ready), so those checks do not count.
    new_run: bool = False
