"""Identify slow queries (RB-002). Reading pg_stat_statements needs a PostgreSQL driver,
which the operator does not ship yet: the step fails with a clear message and the runbook
goes on (the engine escalates), rather than pretending to have looked."""

from __future__ import annotations

from ..model import IdentifySlowQueries, Step
from .base import Action, StepContext, StepResult


async def identify_slow_queries(ctx: StepContext, step: Step) -> StepResult:
    params: IdentifySlowQueries = step.params
    return StepResult.failed(
        f"identifySlowQueries is not available in this version: look at the top "
        f"{params.top} statements of pg_stat_statements in the database of Secret "
        f"{params.database.name} by hand",
        escalate="slow-query analysis needs a person")


class SlowQueriesAction(Action):
    name = "identifySlowQueries"
    read_only = True

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await identify_slow_queries(ctx, step)

    def describe(self, params: IdentifySlowQueries) -> list[str]:
        return [f"List the top {params.top} slow queries of the database in Secret "
                f"`{params.database.name}` (key `{params.database.key}`)."]


ACTION = SlowQueriesAction()
