"""The escalation protocol, as the engine runs it each round: severity, the response
channel, paging by the ownership map (and again, until acknowledged), acknowledgements,
stakeholder updates on the severity's cadence, and the final all-clear.

Decisions come from comms.py (pure); this module sends and records. Every send is
recorded in the Incident's status, so a restart repeats nothing."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from . import comms, metrics
from . import incident as inc
from .paging import send

if TYPE_CHECKING:
    from .engine import Loaded, Run


async def communicate(run: Run, loaded: Loaded) -> None:
    now = run.e.clock()
    await follow_severity(run, loaded, now)
    run.start_background("channel", announce_channel(run, loaded))
    await acknowledge(run, loaded, now)
    for role, round_ in comms.repage_due(run.status, loaded.runbook.escalation.page,
                                         comms.acknowledged_roles(_acks(run)),
                                         loaded.runbook.escalation.repage_after, now).items():
        run.start_background(f"repage:{role}:{round_}", repage(run, loaded, role, round_))
    paged = comms.specialists_paged(run.status, loaded.runbook.escalation.page,
                                    loaded.runbook.escalation.page_within, now)
    if paged is not None:
        await run.apply(lambda s: inc.set_condition(s, now, "SpecialistsPaged", *paged))
    cadence = _cadence(run, loaded)
    plan = comms.update_due(run.status, cadence, now)
    if plan is not None:
        if plan.final:
            await stakeholder_update(run, loaded, plan)   # before the daemon ends
            await resolve_pagers(run, loaded)
        else:
            run.start_background(f"update:{len(run.status.updates)}",
                                 stakeholder_update(run, loaded, plan))
    late = comms.overdue(run.status, cadence, now)
    current = run.status.condition("UpdateOverdue")
    if late or current is not None:
        await run.apply(lambda s: inc.set_condition(
            s, now, "UpdateOverdue", late, "Overdue" if late else "OnCadence",
            "a stakeholder update is overdue" if late else
            f"updates every {cadence / 60:g}m"))


def _acks(run: Run) -> list[dict]:
    return run.body["spec"].get("acknowledgements") or []


def _cadence(run: Run, loaded: Loaded) -> float:
    severity = run.status.severity or loaded.runbook.severity
    return loaded.policy.cadence_for(severity) if loaded.policy else 1800.0


async def follow_severity(run: Run, loaded: Loaded, now: float) -> None:
    """The owner sets spec.severity; the change goes into the timeline, and the cadence
    follows it at once (an update goes out now under the new severity)."""
    wanted = run.body["spec"].get("severity") or loaded.runbook.severity
    current = run.status.severity
    if current == wanted:
        return
    if current is None:
        await run.apply(lambda s: replace(s, severity=wanted))
        return
    await run.apply(lambda s: inc.note(replace(s, severity=wanted), now, "SeverityChanged",
                                       f"severity {current} -> {wanted}"))
    if run.status.open:
        plan = comms.compose(run.status, comms.last_update(run.status),
                             _cadence(run, loaded), now, final=False)
        run.start_background(f"update:{len(run.status.updates)}",
                             stakeholder_update(run, loaded, plan))


async def announce_channel(run: Run, loaded: Loaded) -> None:
    if run.status.channel is not None:
        return
    prefix = loaded.policy.channel_prefix if loaded.policy else "inc"
    name = f"{prefix}-{run.name}"[:80]
    now = run.e.clock()
    route = loaded.policy.channel_route if loaded.policy else None
    outcome, error = "no route", None
    if route is not None and run.dry_run:
        outcome = "planned"
    elif route is not None:
        namespace = loaded.policy.namespace
        outcome, _, error = await send(
            run.e.kube, namespace=namespace, route=route, brief=run.brief(loaded),
            kind="channel", summary=f"Response channel #{name} is open for incident "
            f"{run.name}: join it", details={"channel": name}, now=now,
            policy=run.e.delivery)
    message = f"response channel #{name} announced ({outcome})" + (f": {error}" if error
                                                                   else "")
    await run.apply(lambda s: inc.note(replace(s, channel=inc.Channel(name, now, outcome)),
                                       now, "ChannelOpened", message))


async def repage(run: Run, loaded: Loaded, role: str, round_: int) -> None:
    await run.page(loaded, (role,), "page",
                   f"still unacknowledged (page {round_}): {run.status.reason}",
                   round=round_)


async def acknowledge(run: Run, loaded: Loaded, now: float) -> None:
    acked = comms.acknowledged_roles(_acks(run))
    fresh = [role for role in acked
             if any(p.role == role and p.kind == "page" and p.acknowledged_at is None
                    for p in run.status.pages)]
    if not fresh:
        return
    first = not any(p.acknowledged_at for p in run.status.pages)

    def record(s: inc.IncidentStatus) -> inc.IncidentStatus:
        pages = tuple(replace(p, acknowledged_at=now) if p.role in fresh and p.kind == "page"
                      and p.acknowledged_at is None else p for p in s.pages)
        s = replace(s, pages=pages)
        for role in fresh:
            s = inc.note(s, now, "Acknowledged", f"{role} acknowledged by {acked[role]}")
        return s

    await run.apply(record)
    if first and run.status.detected_at is not None:
        metrics.TIME_TO_ACKNOWLEDGE.labels(runbook=loaded.runbook.id).observe(
            now - run.status.detected_at)
    run.start_background(f"ack:{','.join(sorted(fresh))}", run.page(
        loaded, tuple(fresh), "acknowledge", "acknowledged", only_route="PagerDuty"))


async def resolve_pagers(run: Run, loaded: Loaded) -> None:
    """PagerDuty alerts close with the incident."""
    roles = tuple(sorted({p.role for p in run.status.pages
                          if p.route == "PagerDuty" and p.outcome == "delivered"}))
    if roles:
        await run.page(loaded, roles, "resolve", "resolved", only_route="PagerDuty")


async def stakeholder_update(run: Run, loaded: Loaded, plan: comms.UpdatePlan) -> None:
    """One update, recorded as "sending" before it goes out (see paging.page_roles)."""
    now = run.e.clock()
    routes = []
    if loaded.policy is not None and loaded.policy.updates_route is not None:
        routes.append((loaded.policy.namespace, loaded.policy.updates_route))
    elif loaded.ownership is not None:
        routes = [(loaded.ownership.namespace, c.route)
                  for c in loaded.ownership.contacts("stakeholders")]
    update = inc.Update(at=now, phase=run.status.phase, message=plan.message[:1000],
                        outcome="sending", final=plan.final, next_at=plan.next_at)
    if not routes:
        update = replace(update, outcome="failed", error=(
            "no stakeholder route: set spec.stakeholderUpdates.route or a stakeholders role "
            "in the ServiceOwnership map"))
    elif run.dry_run:
        update = replace(update, outcome="planned")
    else:
        await _record_update(run, update, None)
        errors = []
        delivered = False
        for namespace, route in routes:
            try:
                result, _, err = await send(
                    run.e.kube, namespace=namespace, route=route, brief=run.brief(loaded),
                    kind="update", summary=plan.message, now=now, policy=run.e.delivery)
            except Exception as exc:  # noqa: BLE001 - recorded, never raised
                result, err = "failed", f"{type(exc).__name__}: {exc}"
            delivered = delivered or result == "delivered"
            if err:
                errors.append(err)
        update = replace(update, outcome="delivered" if delivered else "failed",
                         error="; ".join(errors)[:500] or None)
    kind = "FinalUpdate" if plan.final else "StakeholderUpdate"
    await _record_update(run, update, (kind, f"stakeholder update {update.outcome}"
                                       + (f": {update.error}" if update.error else "")))


async def _record_update(run: Run, update: inc.Update, note: tuple[str, str] | None) -> None:
    def upsert(s: inc.IncidentStatus) -> inc.IncidentStatus:
        if any(u.at == update.at for u in s.updates):
            updates = tuple(update if u.at == update.at else u for u in s.updates)
        else:
            updates = (*s.updates, update)[-inc.LIST_LIMIT:]
        s = replace(s, updates=updates)
        return inc.note(s, update.at, *note) if note else s

    await run.apply(upsert)
