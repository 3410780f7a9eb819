"""Pure detection: each check of a signal yields an Outcome; detectors turn a series of
outcomes into "fired" or not. No I/O here, and time is passed in (a fake clock in tests).

"No data" is UNKNOWN: it neither counts as a failure nor resets one."""

from .outcome import Check, Outcome

__all__ = ["Check", "Outcome"]
