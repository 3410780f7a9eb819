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

    @classmethod
    def said(cls, kind: str, value: bool, reason: str, message: str = "", *,
             generation: int | None = None) -> Condition:
        """A condition as a judgement states it; `put` gives it its transition time."""
        return cls(kind, "True" if value else "False", reason, message[:1000], None,
                   generation)


def put(conditions: tuple[Condition, ...], said: Condition, *,
        now: float) -> tuple[Condition, ...]:
    current = next((c for c in conditions if c.type == said.type), None)
    if current and (current.status, current.reason, current.message,
                    current.observed_generation) == (said.status, said.reason, said.message,
                                                     said.observed_generation):
        return conditions
    moment = current.last_transition_time if current and current.status == said.status \
        else now
    new = Condition(said.type, said.status, said.reason, said.message, moment,
                    said.observed_generation)
    return tuple(new if c.type == said.type else c for c in conditions) if current \
        else (*conditions, new)


def get(conditions: tuple[Condition, ...], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)
