"""Actions, one module per action, registered here (the one place that lists them). Each is
idempotent: it checks the live object and the Incident's record before changing anything,
records what it changed and how to undo it, and in dry-run mode only says what it would do.
See base.Action for the interface the engine and the runbook page use."""

from __future__ import annotations

from ..model import Step
from . import (
    blast,
    config,
    consumers,
    freeze,
    gitopsowner,
    notify,
    replay,
    rollback,
    slowqueries,
)
from .base import Action, StepContext, StepResult

ACTIONS: dict[str, Action] = {a.name: a for a in (
    freeze.ACTION, blast.ACTION, rollback.ACTION, config.ROUTE_READS, config.SET_FLAGS,
    config.RATE_LIMIT, consumers.ACTION, replay.ACTION, slowqueries.ACTION, notify.ACTION,
    gitopsowner.ACTION)}


def action(step: Step) -> Action:
    """The action a step runs (the runbook's schema allows no other names)."""
    return ACTIONS[step.action]


__all__ = ["ACTIONS", "Action", "StepContext", "StepResult", "action"]
