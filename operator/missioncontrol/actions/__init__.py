"""Executors, one module per action. Each is idempotent: it checks the live object and the
Incident's record before changing anything, records what it changed and how to undo it, and
in dry-run mode only says what it would do."""

from __future__ import annotations

from .base import StepContext, StepResult
from .blast import assess_blast_radius
from .config import rate_limit, route_reads_to_replica, set_flags
from .consumers import pause_consumers
from .freeze import freeze_deployments
from .notify import notify
from .replay import replay_sample
from .rollback import rollback
from .slowqueries import identify_slow_queries

EXECUTORS = {
    "freezeDeployments": freeze_deployments,
    "assessBlastRadius": assess_blast_radius,
    "rollback": rollback,
    "routeReadsToReplica": route_reads_to_replica,
    "setFlags": set_flags,
    "rateLimit": rate_limit,
    "pauseConsumers": pause_consumers,
    "replaySample": replay_sample,
    "identifySlowQueries": identify_slow_queries,
    "notify": notify,
}

__all__ = ["EXECUTORS", "StepContext", "StepResult"]
