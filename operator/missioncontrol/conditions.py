"""Kubernetes-style conditions (type, status, reason, message, lastTransitionTime), kept
the one way for every kind: a condition's transition time moves only when its status does."""

from __future__ import annotations

from dataclasses import dataclass

from .records import stamp


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: float | None = stamp()
    observed_generation: int | None = None


def put(conditions: tuple[Condition, ...], *, now: float, kind: str, value: bool, reason: str,
        message: str = "", generation: int | None = None) -> tuple[Condition, ...]:
    text = "True" if value else "False"
    current = next((c for c in conditions if c.type == kind), None)
    if current and (current.status, current.reason, current.message,
                    current.observed_generation) == (text, reason, message, generation):
        return conditions
    moment = current.last_transition_time if current and current.status == text else now
    new = Condition(kind, text, reason, message[:1000], moment, generation)
    return tuple(new if c.type == kind else c for c in conditions) if current \
        else (*conditions, new)


def get(conditions: tuple[Condition, ...], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)
