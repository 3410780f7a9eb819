"""Confirm the blast radius: the runbook's dashboards (PromQL) and synthetic HTTP checks,
all run at once, their results written into the incident."""

from __future__ import annotations

import asyncio

from .. import templates
from ..durations import format as dur
from ..incident import BlastRadius, DashboardResult
from ..markdown import code
from ..model import AssessBlastRadius, Dashboard, Step
from ..signals import synthetic
from .base import Action, StepContext, StepResult


async def assess_blast_radius(ctx: StepContext, step: Step) -> StepResult:
    params: AssessBlastRadius = step.params
    namespace, name = ctx.target
    values = {"namespace": namespace, "name": name}
    checks = await asyncio.gather(*(synthetic.run(c, templates.render(c.url, values))
                                    for c in params.synthetic_checks))
    dashboards = await asyncio.gather(*(_dashboard(ctx, d, values) for d in params.dashboards))
    failing = [c.name for c in checks if not c.ok]
    summary = (f"{len(checks) - len(failing)}/{len(checks)} synthetic checks passed"
               + (f" (failing: {', '.join(failing)})" if failing else "")
               + f"; {sum(d.state == 'Ok' for d in dashboards)}/{len(dashboards)} "
                 f"dashboards answered")
    radius = BlastRadius(checked_at=ctx.clock(), synthetic_checks=tuple(checks),
                         dashboards=tuple(dashboards), summary=summary)
    # Reading changes nothing, so it runs in dry-run mode too.
    return StepResult.ok(summary, updates={"blast_radius": radius})


async def _dashboard(ctx: StepContext, dashboard: Dashboard,
                     values: dict[str, str]) -> DashboardResult:
    query = templates.render(dashboard.query, values)
    if ctx.prometheus is None:
        return DashboardResult(dashboard.name, query, "Error", "no Prometheus configured")
    try:
        result = await ctx.prometheus.query(query)
    except Exception as exc:  # noqa: BLE001 - recorded, never fatal
        return DashboardResult(dashboard.name, query, "Error", f"{type(exc).__name__}: {exc}"[:200])
    if not result:
        return DashboardResult(dashboard.name, query, "NoData", None)
    shown = []
    for series in result[:5]:
        labels = ",".join(f"{k}={v}" for k, v in sorted((series.get("metric") or {}).items())
                          if k != "__name__")
        shown.append(f"{{{labels}}} {float(series['value'][1]):.4g}")
    more = f" (+{len(result) - 5} more)" if len(result) > 5 else ""
    return DashboardResult(dashboard.name, query, "Ok", ("; ".join(shown) + more)[:1000])


class BlastRadiusAction(Action):
    name = "assessBlastRadius"
    read_only = True

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await assess_blast_radius(ctx, step)

    def describe(self, params: AssessBlastRadius) -> list[str]:
        return ([f"Dashboard {d.name}: {code(d.query)}" for d in params.dashboards]
                + [f"Synthetic check {c.name}: {c.method} {code(c.url)} expects "
                   f"{c.expect_status} within {dur(c.timeout)}" for c in params.synthetic_checks])


ACTION = BlastRadiusAction()
