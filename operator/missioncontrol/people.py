"""The escalation protocol, as the engine runs it each round: severity, the response
channel, paging by the ownership map (and again, until acknowledged), acknowledgements,
stakeholder updates on the severity's cadence, and the final all-clear; and, once the
incident is resolved, what it still owes people (failed pages, the all-clear), retried until
delivered or expired.

Decisions come from comms.py (pure); this module sends and records. Every send is
recorded in the Incident's status, so a restart repeats nothing."""

from __future__ import annotations

from dataclasses import replace

from . import comms, metrics
from . import incident as inc
from .paging import Ask, redeliver, send
from .rounds import Loaded, Round


async def communicate(run: Round, loaded: Loaded) -> None:
    now = run.e.clock()
    await follow_severity(run, loaded, now)
    run.start_background("channel", announce_channel(run, loaded))
    # A page not delivered within the expiry is given up, also while the incident is open.
    await run.apply(lambda s: comms.expire(s, now, run.e.delivery_expiry))
    run.start_background("redeliver", redeliver_due(run, loaded))
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
    plan = comms.update_due(run.status, cadence, now, retry_after=run.e.redeliver_every)
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


async def deliver_owed(run: Round, loaded: Loaded) -> float:
    """A resolved incident's round: what could not be delivered while it was open goes
    out now (failed pages, then the all-clear, then PagerDuty resolves for pages that
    reached PagerDuty late), or is given up after the expiry. Returns the wait until the
    next retry is due."""
    now = run.e.clock()
    every = run.e.redeliver_every
    await run.apply(lambda s: comms.expire(s, now, run.e.delivery_expiry))
    await redeliver_due(run, loaded)
    plan = comms.update_due(run.status, _cadence(run, loaded), now, retry_after=every)
    if plan is not None and plan.final:
        await stakeholder_update(run, loaded, plan)
    await resolve_pagers(run, loaded)
    pending = comms.pending_condition(run.status, every)
    if pending is not None:
        was = run.status.condition("NotificationsPending")

        def record(s: inc.IncidentStatus) -> inc.IncidentStatus:
            s = inc.set_condition(s, now, "NotificationsPending", *pending)
            # This round runs only when something was owed: now it has all gone out.
            if (was is None or was.status == "True") and pending[1] == "Delivered":
                s = inc.note(s, now, "NotificationsDelivered", pending[2])
            return s

        await run.apply(record)
    return max(run.e.tick, min(every, comms.next_retry_in(run.status, run.e.clock(), every)))


async def redeliver_due(run: Round, loaded: Loaded) -> None:
    due = comms.redelivery_due(run.status, run.e.clock(), run.e.redeliver_every)
    if due:
        first = not any(p.outcome == "delivered" for p in run.status.pages)
        run.observe_time_to_page(loaded, first, await redeliver(run.pager(loaded), pages=due))


def _acks(run: Round) -> list[dict]:
    return run.body["spec"].get("acknowledgements") or []


def _cadence(run: Round, loaded: Loaded) -> float:
    severity = run.status.severity or loaded.runbook.severity
    return loaded.policy.cadence_for(severity) if loaded.policy else 1800.0


async def follow_severity(run: Round, loaded: Loaded, now: float) -> None:
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


async def announce_channel(run: Round, loaded: Loaded) -> None:
    if run.status.channel is not None:
        return
    prefix = loaded.policy.channel_prefix if loaded.policy else "inc"
    name = comms.channel_name(prefix=prefix, cluster=run.brief(loaded).cluster,
                              incident=run.name)
    now = run.e.clock()
    route = loaded.policy.channel_route if loaded.policy else None
    outcome, error = "no route", None
    if route is not None and run.dry_run:
        outcome = "planned"
    elif route is not None:
        namespace = loaded.policy.namespace
        message = run.brief(loaded).message(
            kind="channel", summary=f"Response channel #{name} is open for incident "
            f"{run.name}: join it", details={"channel": name}, at=now)
        outcome, _, error = await send(run.e.kube, namespace=namespace, route=route,
                                       message=message, policy=run.e.delivery)
    message = f"response channel #{name} announced ({outcome})" + (f": {error}" if error
                                                                   else "")
    await run.apply(lambda s: inc.note(replace(s, channel=inc.Channel(name, now, outcome)),
                                       now, "ChannelOpened", message))


async def repage(run: Round, loaded: Loaded, role: str, round_: int) -> None:
    await run.page(loaded, (role,), Ask(
        "page", f"still unacknowledged (page {round_}): {run.status.reason}", round=round_))


async def acknowledge(run: Round, loaded: Loaded, now: float) -> None:
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
        loaded, tuple(fresh), Ask("acknowledge", "acknowledged", only_route="PagerDuty")))


async def resolve_pagers(run: Round, loaded: Loaded) -> None:
    """PagerDuty alerts close with the incident."""
    roles = tuple(sorted({p.role for p in run.status.pages
                          if p.route == "PagerDuty" and p.outcome == "delivered"}))
    if roles:
        await run.page(loaded, roles, Ask("resolve", "resolved", only_route="PagerDuty"))


async def stakeholder_update(run: Round, loaded: Loaded, plan: comms.UpdatePlan) -> None:
    """One update, recorded as "sending" right before its first HTTP request (see
    paging.send). A plan with `at` sends a failed update again, as it was (same key)."""
    now = run.e.clock()
    routes = []
    if loaded.policy is not None and loaded.policy.updates_route is not None:
        routes.append((loaded.policy.namespace, loaded.policy.updates_route))
    elif loaded.ownership is not None:
        routes = [(loaded.ownership.namespace, c.route)
                  for c in loaded.ownership.contacts("stakeholders")]
    before = next((u for u in run.status.updates if u.at == plan.at), None) \
        if plan.at is not None else None
    update = inc.Update(at=plan.at if plan.at is not None else now, phase=run.status.phase,
                        message=plan.message[:1000], outcome="sending", final=plan.final,
                        next_at=plan.next_at, tried_at=now,
                        attempts=before.attempts if before else 0)
    if not routes:
        # Retrying will not make a route: tried again on the cadence, not given up on.
        update = replace(update, outcome="no route", error=(
            "no stakeholder route: set spec.stakeholderUpdates.route or a stakeholders role "
            "in the ServiceOwnership map"))
    elif run.dry_run:
        update = replace(update, outcome="planned")
    else:
        marked = []

        async def sending() -> None:
            if not marked:
                marked.append(True)
                await _record_update(run, update, None)

        errors = []
        delivered = False
        attempts = 0
        for namespace, route in routes:
            try:
                result, tries, err = await send(
                    run.e.kube, namespace=namespace, route=route, message=run.brief(
                        loaded).message(kind="update", summary=update.message, at=update.at),
                    policy=run.e.delivery, before=sending)
            except Exception as exc:  # noqa: BLE001 - recorded, never raised
                result, tries, err = "failed", 0, f"{type(exc).__name__}: {exc}"
            delivered = delivered or result == "delivered"
            attempts += tries
            if err:
                errors.append(err)
        update = replace(update, outcome="delivered" if delivered else "failed",
                         error="; ".join(errors)[:500] or None,
                         attempts=update.attempts + attempts)
    kind = "FinalUpdate" if plan.final else "StakeholderUpdate"
    text = f"stakeholder update {update.outcome}" + (f": {update.error}" if update.error
                                                     else "")
    if before is not None and update.outcome == "delivered":
        text = f"stakeholder update delivered after {update.attempts} attempts"
    # The timeline says what changed, not every retry of the same failure.
    previous = before or (run.status.updates[-1] if run.status.updates else None)
    same = previous is not None and (previous.outcome, previous.error) == (
        update.outcome, update.error) and previous.outcome != "delivered"
    await _record_update(run, update, None if same else (kind, text))


async def _record_update(run: Round, update: inc.Update, note: tuple[str, str] | None) -> None:
    def upsert(s: inc.IncidentStatus) -> inc.IncidentStatus:
        if any(u.at == update.at for u in s.updates):
            updates = tuple(update if u.at == update.at else u for u in s.updates)
        else:
            updates = (*s.updates, update)[-inc.LIST_LIMIT:]
        s = replace(s, updates=updates)
        return inc.note(s, update.last_tried, *note) if note else s

    await run.apply(upsert)
