"""Notify: page the roles a step names, through the ServiceOwnership map."""

from __future__ import annotations

from ..markdown import and_list, oneline
from ..model import Notify, Step
from .base import Action, StepContext, StepResult


async def notify(ctx: StepContext, step: Step) -> StepResult:
    params: Notify = step.params
    # The formats already name the runbook and target: the message says what fired.
    summary = params.message or ctx.status.reason or ctx.incident["spec"].get("summary", "")
    pages = await ctx.page(params.roles, "page", summary)
    sent = [p for p in ctx.status.pages if p.role in params.roles] + list(pages)
    delivered = sorted({f"{p.role} ({p.contact})" for p in sent
                        if p.outcome in ("delivered", "unconfirmed")})
    planned = sorted({f"{p.role} ({p.contact})" for p in sent if p.outcome == "planned"})
    failed = sorted({f"{p.role}: {p.error}" for p in pages if p.outcome == "failed"})
    if ctx.dry_run:
        return StepResult.planned(f"would page {', '.join(planned) or 'nobody'}")
    if failed and not delivered:
        return StepResult.failed(f"no page delivered: {'; '.join(failed)}")
    message = f"paged {', '.join(delivered) or 'nobody'}"
    if failed:
        message += f"; not delivered: {'; '.join(failed)}"
    return StepResult.ok(message)


class NotifyAction(Action):
    name = "notify"
    read_only = True

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await notify(ctx, step)

    def describe(self, params: Notify) -> list[str]:
        message = f": \"{oneline(params.message)}\"" if params.message else ""
        return [f"Page {and_list(params.roles)}{message}."]


ACTION = NotifyAction()
