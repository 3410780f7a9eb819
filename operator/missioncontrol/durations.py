"""Go-style durations ("30s", "5m", "1h30m", "250ms"), as the CRDs spell them."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse(text: str) -> float:
    """Seconds in a duration string; ValueError says what is expected."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, like 30s, 5m, 1h30m")
    return sum(float(number) * _UNIT[unit] for number, unit in _PART.findall(text))


def format(seconds: float) -> str:  # noqa: A001 - the natural name, used as durations.format
    """A short human duration: 45s, 12m, 1h05m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m" if secs == 0 or minutes >= 10 else f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def exact(seconds: float) -> str:
    """A duration that keeps every second, in the form it is written: 10m, 10m30s, 1h30s.
    Unlike `format`, two different durations never print alike."""
    whole = int(seconds)
    fraction = round(seconds - whole, 3)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if secs or fraction or not (hours or minutes):
        parts.append(f"{secs + fraction:g}s")
    return "".join(parts)
