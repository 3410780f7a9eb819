"""Timestamps as Kubernetes writes them (RFC 3339, UTC), and the one clock of the operator."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

Clock = Callable[[], float]
wall: Clock = time.time


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_precise(moment: float) -> str:
    """With milliseconds: for timeline entries that happen within one second."""
    stamp = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse(text: str | None) -> float | None:
    if not text:
        return None
    if isinstance(text, datetime.datetime):
        return text.timestamp()
    value = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()
