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
