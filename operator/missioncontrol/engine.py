"""Driving one open Incident: its runbook's first-response steps in order, paging, recovery
against the SLO, escalation. Runs as the Incident's kopf daemon; all its state is in the
Incident's status, so a restarted operator picks up exactly where the last one stopped.

Steps that change something run one after another, each recorded before and after it runs.
Steps that only read or tell (blast radius, paging) run beside them and gate nothing.

An incident whose policy or target is gone stops its automation (AutomationStopped): the
freeze goes, people are paged once, and it stays open for them. A resolved incident that
still owes people a page or the all-clear keeps its daemon until it is delivered or
expires (comms.owed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from . import comms, gates, gitops, metrics, people, recovery, reverts, tenancy
from . import incident as inc
from .actions import ACTIONS, StepContext, StepResult
from .actions import action as action_of
from .actions import freeze as freezing
from .dbchecks import schedule
from .detect.release import TargetState
from .guard import POLICY_NAMESPACE, find_ownership
from .guard import Context as GuardContext
from .kube import ApiException, Backoff, Missed, NotFound, Unavailable
from .model import (
    Ownership,
    Policy,
    Recovery,
    Runbook,
    Stable,
    Step,
    Trigger,
    effective_runbook,
)
from .paging import Ask, Brief, Pager, page_roles
from .parse import ModelError
from .records import from_dict, to_dict
from .rounds import Engine, Loaded
from .signals.kubernetes import rolled_out

log = logging.getLogger(__name__)
STEP_TIMEOUT = 120.0
CLOSE_REFUSED, REVERT_SKIPPED = "CloseRefused", "RevertSkipped"
VERIFY_KEY = "verify"   # verify:<step id>, the escalation of a step without effect
WARNINGS = ("Failed", "Escalated", "SLOBreached", inc.AUTOMATION_STOPPED, "DeliveryExpired",
            "QueryPlanChanged",
            CLOSE_REFUSED, REVERT_SKIPPED, "RevertFailed")


AUTOMATION_STOPPED_PAGE = "automation-stopped"   # Page.about of the page that says so
# Rounds come every tick; a healthy stretch not watched for longer than this (an outage, a
# restart) does not count towards stableFor.
UNWATCHED_GAP = 30.0


class Run:
    """One incident being driven. All status changes go through `apply`, one at a time."""

    def __init__(self, engine: Engine, body: dict) -> None:
        self.e = engine
        self.body = body
        self.status: inc.IncidentStatus = unconfirmed(
            from_dict(inc.IncidentStatus, body.get("status")))
        self.committed = to_dict(self.status)
        self.lock = asyncio.Lock()
        self.tasks: dict[str, asyncio.Task] = {}
        self.paging: set[tuple] = set()   # deliveries under way (see paging.page_roles)
        self.missed = Missed()   # tries an API server outage made fail, told on an Event
        self.seen_at: float | None = None   # when this Run last judged the target's health

    # -- status ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]

    @property
    def dry_run(self) -> bool:
        return self.status.mode in inc.QUIET_MODES or self.e.force_dry_run

    async def apply(self, change: Callable[[inc.IncidentStatus], inc.IncidentStatus]) -> None:
        async with self.lock:
            before = self.status
            self.status = change(self.status)
            await self._commit(before)

    async def _commit(self, before: inc.IncidentStatus) -> None:
        self.status = replace(self.status, slo=inc.slo_status(self.status, self.e.clock())[0])
        data = to_dict(self.status)
        if data == self.committed:
            return
        # Written through an outage: what happened must be recorded before anything goes on.
        await self.e.kube.patiently(lambda: self.e.kube.patch_status(
            "Incident", self.namespace, self.name, to_dict(self.status, nulls=True)),
            missed=lambda exc: self.missed.add(self.e.clock(), exc))
        self.committed = data
        # New entries by content, not position: the list is capped and drops its oldest.
        seen = set(before.timeline)
        for entry in (e for e in self.status.timeline if e not in seen):
            kind = "Warning" if entry.type in WARNINGS else "Normal"
            self.e.post_event(self.body, kind, entry.type, entry.message)

    # -- the loop -----------------------------------------------------------------------------
    async def drive(self, stopped: Any, latest: Callable[[], dict]) -> None:
        # An API server outage is waited out here, never left to kopf's daemon backoff.
        backoff = Backoff()
        try:
            while not stopped:
                self.body = latest()
                try:
                    wait = await self.round()
                except Unavailable as exc:
                    self.missed.add(self.e.clock(), exc)
                    delay = backoff.next()
                    # An outage (a starting API server's 503s included): kube.Health logs it.
                    if exc.answered and not self.e.kube.health.down:
                        log.warning("incident %s/%s: round skipped: %s; retrying in %.1f s",
                                    self.namespace, self.name, exc, delay)
                    if await self.e.kube.health.pause(delay, stopped):
                        backoff.reset()   # it is back: the next failure is a new story
                    continue
                except ApiException as exc:
                    log.warning("incident %s/%s: API error %s, retrying", self.namespace,
                                self.name, exc.status)
                    wait = self.e.tick
                backoff.reset()
                told = self.missed.told(self.e.clock(), "incident rounds delayed")
                if told:
                    self.e.post_event(self.body, "Warning", "APIUnavailable", told)
                if self.status.phase == inc.CLOSED and not reverts.owed(self.status):
                    return
                if not (self.status.open or comms.owed(self.status) or reverts.owed(self.status)
                        or gitops.holding(self.status) or _close_asked(self.body["spec"])):
                    # Nothing left: kopf stops this daemon as its filter stops matching. It
                    # must not return by itself: kopf never starts a daemon that did so
                    # again for the object, and a close asked later is this daemon's work
                    # (asked before kopf stopped it, the filter still matches: close here).
                    while not stopped and not _close_asked(latest()["spec"]):
                        await stopped.wait(self.e.tick)
                    if stopped:
                        return
                    continue
                await self.pause(stopped, wait, latest)
        finally:
            # Let deliveries under way finish (they are recorded); then stop what is left.
            running = [t for t in self.tasks.values() if not t.done()]
            if running:
                await asyncio.wait(running, timeout=30)
            for task in self.tasks.values():
                task.cancel()

    async def pause(self, stopped: Any, wait: float, latest: Callable[[], dict]) -> None:
        """Until the next round; a request to close it (spec.close) cuts the wait short."""
        until = self.e.clock() + wait
        while not stopped and not _close_asked(latest()["spec"]):
            left = until - self.e.clock()
            if left <= 0:
                return
            await stopped.wait(min(left, self.e.tick))

    async def round(self) -> float:
        if await self.close():
            return 0.0
        # Owed undo needs only the status: it goes on whatever became of the runbook.
        await self.revert()
        if gitops.holding(self.status):
            await self.watch_hold()
        loaded = await self.load()
        if isinstance(loaded, str):
            await self.apply(lambda s: inc.note(s, self.e.clock(), "Failed", loaded)
                             if not s.timeline or s.timeline[-1].message != loaded else s)
            # What a resolved incident owes still expires: its daemon does not run forever.
            await self.apply(lambda s: s if s.open else comms.expire(
                s, self.e.clock(), self.e.delivery_expiry))
            return 30.0
        await self.remember_ownership(loaded)
        if self.e.cluster and not self.status.cluster:
            # Kept: its postmortem, and whoever runs it next, name the cluster it was in.
            await self.apply(lambda s: replace(s, cluster=self.e.cluster))
        if not self.status.open:
            wait = await people.deliver_owed(self, loaded)
            return min(wait, self.e.tick) if gitops.holding(self.status) else wait
        if loaded.gone is not None or self.status.automation_stopped:
            await self.stop_automation(loaded)
            await self.escalate_on_time(loaded)
            await people.communicate(self, loaded)
            return self.e.tick
        runbook = loaded.runbook
        now = self.e.clock()
        if self.status.phase == inc.DETECTED and not self.dry_run:
            await self.apply(lambda s: inc.move(s, now, inc.MITIGATING,
                                                f"running {runbook.id} first response"))
        self.start_background("page:initial", self.page_initial(loaded))
        await self.run_steps(loaded)
        # The policy's scheduled database checks (RB-002), as evidence while it is open; a
        # record left by checks the runbook no longer has is no evidence.
        findings = schedule.findings_of(loaded.policy_status) \
            if runbook.automation.scheduled_checks else ()
        if findings:
            await self.apply(lambda s: schedule.attach(s, findings, now=self.e.clock()))
        await self.track(loaded)
        await self.revert()
        await people.communicate(self, loaded)
        return self.e.tick

    async def close(self) -> bool:
        """People asked to close it (spec.close): done here, by the daemon that writes the rest
        of the status, so no round in flight can write an open copy over the close."""
        spec = self.body["spec"]
        if not spec.get("close") or self.status.phase == inc.CLOSED:
            return False
        items = spec.get("actionItems") or []
        now = self.e.clock()
        if not inc.closable(items):
            # The API refuses this already; said once here too rather than ignored silently.
            if not any(e.type == CLOSE_REFUSED for e in self.status.timeline):
                await self.apply(lambda s: inc.note(
                    s, now, CLOSE_REFUSED, "closing needs action items, each with an assignee"))
            return False
        freeze, lifted = self.status.freeze, None
        if freeze is not None and freeze.active:
            lifted = await freezing.lift(self.e.kube, incident=self.name,
                                         namespace=self.namespace, freeze=freeze, now=now,
                                         reason="the incident is closed")
        await self.apply(lambda s: reverts.plan(inc.close(gates.abandon(
            replace(s, freeze=lifted) if lifted is not None else s, now,
            "the incident was closed"), now, items), now, inc.CLOSED))
        log.info("incident %s/%s: closed", self.namespace, self.name)
        await self.revert()
        return True

    async def load(self) -> Loaded | str:
        spec = self.body["spec"]
        kube = self.e.kube
        where = (self.body["metadata"].get("annotations") or {}).get(POLICY_NAMESPACE,
                                                                     self.namespace)
        if not tenancy.policy_namespace_allowed(self.namespace, where):
            return (f"the policy namespace {where} this incident names is neither its own "
                    f"nor a cluster-policy namespace: cannot run its steps")
        if spec["target"]["namespace"] != self.namespace:
            return (f"the target {spec['target']['namespace']}/{spec['target']['name']} is "
                    f"not in the incident's namespace: cannot run its steps")
        runbook_body = await kube.get("Runbook", where, spec["runbook"]["name"])
        policy_body = await kube.get("IncidentPolicy", where, spec["policy"]) \
            if spec.get("policy") else None
        if runbook_body is None and not self.status.open:
            return f"runbook {spec['runbook']['name']} not found: cannot run its steps"
        try:
            policy = Policy.parse(policy_body) if policy_body else None
            if runbook_body is None:
                runbook = self.runbook_stand_in(where)
            else:
                runbook = Runbook.parse(runbook_body)
                if policy is not None:
                    runbook = effective_runbook(runbook, policy)
        except ModelError as exc:
            return f"cannot run the runbook: {exc}"
        if spec.get("severity"):
            runbook = replace(runbook, severity=spec["severity"])
        target = spec["target"]
        try:
            deployment = await kube.json(kube.apps.read_namespaced_deployment, target["name"],
                                         target["namespace"])
        except NotFound:
            deployment = None
        ownership = None
        if deployment is not None and policy is not None:
            ctx = GuardContext(kube, self.e.prometheus, self.e.clock)
            ownership = await find_ownership(ctx, policy, deployment)
        elif self.status.ownership is not None:
            # The way to people must outlive the objects that led to them.
            ref = self.status.ownership
            own_body = await kube.get("ServiceOwnership", ref.namespace, ref.name)
            try:
                ownership = Ownership.parse(own_body) if own_body else None
            except ModelError:
                ownership = None
        gone = missing(spec, where, runbook=runbook_body is not None,
                       policy=policy_body is not None,
                       deployment=deployment is not None) if self.status.open else None
        return Loaded(runbook, policy, ownership, deployment,
                      (policy_body or {}).get("status") if policy is not None else None, gone)

    def runbook_stand_in(self, namespace: str) -> Runbook:
        """A runbook deleted under an open incident: enough of it to name the incident in
        pages and updates while people take over; no steps, no rules, no trigger."""
        spec, status = self.body["spec"], self.status
        slo = (status.slo.deadline - status.detected_at) if status.slo.deadline \
            and status.detected_at else 0.0
        return Runbook(namespace=namespace, name=spec["runbook"]["name"],
                       id=spec["runbook"]["id"], title=spec["runbook"]["name"],
                       severity=status.severity or spec.get("severity") or "SEV3",
                       trigger=Trigger(()), steps=(), recovery=Recovery(slo, 0.0))

    async def remember_ownership(self, loaded: Loaded) -> None:
        own = loaded.ownership
        if own is None:
            return
        ref = inc.OwnershipRef(own.namespace, own.name)
        if self.status.ownership != ref:
            await self.apply(lambda s: replace(s, ownership=ref))

    async def stop_automation(self, loaded: Loaded) -> None:
        """The incident can no longer act or resolve by itself: say so (timeline, condition,
        Event), lift its freeze, page its people once, and leave it open for them."""
        now = self.e.clock()
        if not self.status.automation_stopped and loaded.gone is not None:
            reason, message = loaded.gone
            log.warning("incident %s/%s: automation stopped: %s", self.namespace, self.name,
                        message)
            await self.apply(lambda s: inc.stop_automation(s, now, reason, message))
        stopped = self.status.condition(inc.AUTOMATION_STOPPED)
        freeze = self.status.freeze
        if freeze is not None and freeze.active:
            why = f"automation stopped ({stopped.reason})"
            lifted = await freezing.lift(self.e.kube, incident=self.name,
                                         namespace=self.namespace, freeze=freeze, now=now,
                                         reason=why)
            await self.apply(lambda s: inc.note(replace(s, freeze=lifted), now, "FreezeLifted",
                                                f"deploy freeze lifted: {why}"))
        # Everyone the incident has paged so far, and its first responders: once each (the
        # page's own key), retried like any page until it is delivered.
        roles = tuple(dict.fromkeys((*loaded.runbook.escalation.page,
                                     *(p.role for p in self.status.pages
                                       if p.kind == "page" and not p.about))))
        lifted = " Its deploy freeze is lifted." if freeze is not None else ""
        self.start_background("page:automation-stopped", self.page(loaded, roles, Ask(
            "page", f"automation stopped: {stopped.message}.{lifted} This incident needs "
            f"people now, and stays open until they close it.",
            about=AUTOMATION_STOPPED_PAGE)))

    # -- steps --------------------------------------------------------------------------------
    async def run_steps(self, loaded: Loaded) -> None:
        for step in loaded.runbook.steps:
            record = self.status.step(step.id)
            if record is None:
                await self.apply(lambda s, st=step: replace(
                    s, steps=(*s.steps, inc.StepRecord(st.id, st.action))))
                record = self.status.step(step.id)
            if record.state in inc.STEP_DONE:
                if _blocks(step, record.state):
                    return   # a failed change holds the rest back; people take over
                continue
            if step.approval is not None:
                passed = await gates.hold(self, loaded, step)
                if passed == gates.WAIT:
                    return   # the steps after it wait with it
                if passed == gates.SKIP:
                    continue
            if action_of(step).read_only:
                self.start_background(f"step:{step.id}", self.execute(step, loaded))
                continue
            await self.execute(step, loaded)
            if _blocks(step, self.status.step(step.id).state):
                return

    async def revert(self) -> None:
        """Undo what the planned revert records name, one at a time in their order, each
        recorded before (Running) and after, like a step: a restart performs a Running one
        again (undo is idempotent) and never one already done."""
        for record in reverts.pending(self.status):
            await self.revert_one(record)

    async def revert_one(self, record: inc.StepRecord) -> None:
        step = self.status.step(reverts.original(record))
        now = self.e.clock()
        await self.apply(lambda s: inc.update_step(
            s, record.id, state=inc.RUNNING, started_at=record.started_at or now,
            attempts=record.attempts + 1))
        try:
            tenancy.refuse_protected(self.body["spec"]["target"]["namespace"],
                                     what=f"undo step {step.id}")
            result = await asyncio.wait_for(ACTIONS[record.action].undo(
                kube=self.e.kube, record=step, dry_run=self.dry_run), STEP_TIMEOUT)
        except TimeoutError:
            result = StepResult.failed(f"timed out after {STEP_TIMEOUT:g}s")
        except Unavailable:
            raise   # it stays Running and runs again
        except ApiException as exc:
            result = StepResult.failed(f"API error {exc.status}: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 - an undo's bug must not kill the incident
            log.exception("undo of %s of %s failed", record.id, self.name)
            result = StepResult.failed(f"{type(exc).__name__}: {exc}")
        done = self.e.clock()
        await self.apply(lambda s: _reverted(s, record, result, done))

    def start_background(self, key: str, work: Awaitable[None]) -> None:
        """Run `work` beside the loop, once at a time per key; a finished key may run again
        (a failed page is retried: see comms.redelivery_due for its pace)."""
        task = self.tasks.get(key)
        if task is not None and not task.done():
            work.close()
            return
        self.tasks[key] = asyncio.create_task(_past_outages(work), name=f"{self.name}:{key}")

    async def execute(self, step: Step, loaded: Loaded) -> None:
        now = self.e.clock()
        await self.apply(lambda s: inc.update_step(
            s, step.id, state=inc.RUNNING, started_at=s.step(step.id).started_at or now,
            attempts=s.step(step.id).attempts + 1))
        ctx = StepContext(kube=self.e.kube, prometheus=self.e.prometheus, clock=self.e.clock,
                          incident=self.body, status=self.status, runbook=loaded.runbook,
                          policy=loaded.policy, dry_run=self.dry_run,
                          page=lambda roles, kind, summary: self.page(loaded, roles,
                                                                      Ask(kind, summary)))
        try:
            # Every step acts on the target's namespace: none runs in a protected one.
            tenancy.refuse_protected(ctx.target[0], what=f"run step {step.id}")
            result = await asyncio.wait_for(action_of(step).run(ctx, step),
                                            step.timeout or STEP_TIMEOUT)
        except TimeoutError:
            result = StepResult.failed(f"timed out after {step.timeout or STEP_TIMEOUT:g}s")
        except Unavailable:
            raise   # neither done nor failed: the step stays Running and runs again
        except ApiException as exc:
            result = StepResult.failed(f"API error {exc.status}: {exc.reason}")
        except tenancy.ProtectedNamespace as exc:
            result = StepResult.failed(str(exc), escalate="the target is in a protected "
                                                          "namespace")
        except Exception as exc:  # noqa: BLE001 - a step's bug must not kill the incident
            log.exception("step %s of %s failed", step.id, self.name)
            result = StepResult.failed(f"{type(exc).__name__}: {exc}")
        await self.finish(step, result, loaded)

    async def finish(self, step: Step, result: StepResult, loaded: Loaded) -> None:
        now = self.e.clock()
        metrics.STEPS.labels(runbook=loaded.runbook.id, action=step.action,
                             result=result.state).inc()

        def record(s: inc.IncidentStatus) -> inc.IncidentStatus:
            s = inc.update_step(s, step.id, state=result.state, finished_at=now,
                                message=result.message[:1000], changes=result.changes,
                                revert_on=action_of(step).reverts_on(step))
            if result.updates:
                s = replace(s, **result.updates)
            kind = "Failed" if result.state == inc.STEP_FAILED else f"Step{result.state}"
            s = inc.note(s, now, kind, f"{step.id} ({step.action}): {result.message}")
            if _blocks(step, result.state):
                s = inc.move(s, now, inc.FAILED, f"step {step.id} failed: {result.message}")
            return s

        if result.escalate or _blocks(step, result.state):
            # The step's record and its escalation land in one write.
            await self.escalate(loaded, f"step:{step.id}", result.escalate or result.message,
                                also=record)
        else:
            await self.apply(record)
        if loaded.deployment is not None:
            kind = "Warning" if result.state in (inc.STEP_FAILED, inc.SKIPPED) else "Normal"
            self.e.post_event(_ref(loaded.deployment), kind, _reason(step.action),
                              f"incident {self.name}: {result.message}"[:1000])

    # -- people -------------------------------------------------------------------------------
    def brief(self, loaded: Loaded) -> Brief:
        target = self.body["spec"]["target"]
        return Brief(self.name, self.namespace, loaded.runbook.id, loaded.runbook.title,
                     f"{target['namespace']}/{target['name']}",
                     self.status.severity or loaded.runbook.severity, self.status.phase,
                     cluster=self.status.cluster or self.e.cluster)

    def pager(self, loaded: Loaded) -> Pager:
        return Pager(self.e.kube, loaded.ownership,
                     loaded.ownership.namespace if loaded.ownership else self.namespace,
                     self.brief(loaded), self.e.clock(), self.dry_run, self.record_page,
                     lambda: self.status.pages, self.paging, self.e.delivery)

    async def page(self, loaded: Loaded, roles: tuple[str, ...], ask: Ask) -> list[inc.Page]:
        first = not any(p.outcome == "delivered" for p in self.status.pages)
        pages = await page_roles(self.pager(loaded), roles=roles, ask=ask)
        self.observe_time_to_page(loaded, first, pages)
        return pages

    def observe_time_to_page(self, loaded: Loaded, first: bool,
                             pages: list[inc.Page]) -> None:
        if first and any(p.outcome == "delivered" for p in pages) \
                and self.status.detected_at is not None:
            metrics.TIME_TO_PAGE.labels(runbook=loaded.runbook.id).observe(
                self.e.clock() - self.status.detected_at)

    async def record_page(self, page: inc.Page) -> None:
        """Add a page to the status, or update its record (sending -> outcome)."""
        def upsert(s: inc.IncidentStatus) -> inc.IncidentStatus:
            if any(p.key == page.key for p in s.pages):
                pages = tuple(page if p.key == page.key else p for p in s.pages)
            else:
                pages = (*s.pages, page)[-inc.LIST_LIMIT:]
            return replace(s, pages=pages)

        await self.apply(upsert)

    async def page_initial(self, loaded: Loaded) -> None:
        roles = loaded.runbook.escalation.page
        if roles:
            await self.page(loaded, roles, Ask("page", self.status.reason
                                               or self.body["spec"].get("summary", "")))

    async def escalate(self, loaded: Loaded, key: str, why: str,
                       roles: tuple[str, ...] | None = None,
                       also: Callable[[inc.IncidentStatus], inc.IncidentStatus] | None = None
                       ) -> None:
        """Escalate once per key: record it (with `also`, in the same write) and page the
        next tier (the first escalation rule's roles, unless `roles` says)."""
        if any(e.after == key for e in self.status.escalations):
            if also is not None:
                await self.apply(also)
            return
        escalation = loaded.runbook.escalation
        if roles is None:
            roles = escalation.rules[0].page if escalation.rules else escalation.page
        now = self.e.clock()
        why = why[:1000]

        def change(s: inc.IncidentStatus) -> inc.IncidentStatus:
            s = also(s) if also is not None else s
            s = replace(s, escalations=(*s.escalations,
                                        inc.EscalationRecord(key, why, roles, now)))
            return inc.escalate(s, now, "Escalated",
                                f"{why}; paging {', '.join(roles) or 'nobody'}")

        await self.apply(change)
        self.start_background(f"page:{key}", self.page(loaded, roles,
                                                       Ask("page", f"escalated: {why}")))

    # -- recovery, SLO, escalation rules, the freeze -------------------------------------------
    async def track(self, loaded: Loaded) -> None:
        now = self.e.clock()
        health = await self.health(loaded)
        last_seen, self.seen_at = self.seen_at, now
        gap = max(UNWATCHED_GAP, 5 * self.e.tick)
        await self.apply(lambda s: recovery.watched(s, now, last_seen=last_seen, gap=gap))
        # Resolving and lifting the freeze land in one status write: nobody ever sees a
        # resolved incident still holding a freeze.
        ahead = recovery.progress(self.status, loaded.runbook, health, now)
        reason = self.freeze_lift_reason(loaded, ahead, now)
        lifted = None
        if reason is not None:
            lifted = await freezing.lift(self.e.kube, incident=self.name,
                                         namespace=self.namespace, freeze=ahead.freeze,
                                         now=now, reason=reason)

        def change(s: inc.IncidentStatus) -> inc.IncidentStatus:
            was_open = s.open
            s = recovery.progress(s, loaded.runbook, health, now)
            if s.phase == inc.RESOLVED:   # what is undone on resolution, in the same write
                s = reverts.plan(gates.abandon(s, now, "the incident resolved"), now,
                                 inc.RESOLVED)
                if was_open and gitops.holding(s):
                    s = inc.note(s, now, "FreezeHeld", gitops.held_message(s.gitops))
            if lifted is not None:
                s = inc.note(replace(s, freeze=lifted), now, "FreezeLifted",
                             f"deploy freeze lifted: {reason}")
            return s

        await self.apply(change)
        await self.escalate_on_time(loaded)
        await self.verify_steps(loaded, now)
        if self.status.phase == inc.MITIGATED and self.status.mitigated_at == now:
            metrics.TIME_TO_MITIGATE.labels(runbook=loaded.runbook.id).observe(
                now - (self.status.detected_at or now))
        if self.status.phase == inc.RESOLVED:
            metrics.TIME_TO_RESOLVE.labels(runbook=loaded.runbook.id).observe(
                now - (self.status.detected_at or now))

    async def escalate_on_time(self, loaded: Loaded) -> None:
        """The clock's escalations: the recovery SLO and the runbook's timed rules."""
        now = self.e.clock()
        # Judged from the SLO as it stands, not from "breached just now": every status write
        # refreshes the SLO column, so the round's earlier writes have already marked it
        # breached by the time this runs. The condition and the escalation are each once.
        slo, _ = inc.slo_status(self.status, now)
        if slo.breached:
            await self.apply(lambda s: inc.set_condition(
                replace(s, slo=slo), now, "SLOBreached", True, "DeadlinePassed",
                f"not recovered within {loaded.runbook.recovery.slo / 60:g}m"))
            if self.status.open:
                await self.escalate(loaded, "slo", f"recovery SLO of "
                                    f"{loaded.runbook.recovery.slo / 60:g}m breached")
        for rule in recovery.due_rules(self.status, loaded.runbook, now):
            await self.escalate(loaded, recovery.rule_key(rule),
                                f"{rule.when} after {recovery.rule_key(rule)}", rule.page)

    async def health(self, loaded: Loaded) -> recovery.Health:
        dep = loaded.deployment
        if dep is None:
            return recovery.Health(False, False, False)
        # Recovery counts only with the target as each step left it (a rolled back
        # Deployment running the healthy release's template).
        expected = all(action_of(step).holds(record=record, status=self.status, deployment=dep)
                       for step, record in self.records(loaded))
        failing, passing, unknown = self.condition_outcomes(loaded)
        stable = loaded.runbook.recovery.stable
        if stable is not None:   # e.g. RB-003's queue depth: one query, a series if it holds
            held = await self.stable(stable, dep)
            failing, passing = (failing, (*passing, "stable")) if held else (
                (*failing, "stable"), passing)
        return recovery.Health(True, rolled_out(dep), expected, failing, passing, unknown)

    async def stable(self, stable: Stable, dep: dict) -> bool:
        """Whether the recovery signal is stable now; no answer (no data, no Prometheus) is
        not stable."""
        if self.e.prometheus is None:
            return False
        key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
        answer = await self.e.prometheus.by_target(stable.promql(), [key])
        return answer.get(key) is not None

    def condition_outcomes(self, loaded: Loaded) -> tuple[tuple[str, ...], ...]:
        """The trigger conditions as the policy's guard last checked them on this target
        (from the policy read this round: no second read)."""
        target = self.body["spec"]["target"]
        for data in (loaded.policy_status or {}).get("targets") or []:
            if (data.get("namespace"), data.get("name")) == (target["namespace"],
                                                             target["name"]):
                state = from_dict(TargetState, data)
                out: dict[str, list[str]] = {"Fail": [], "Pass": [], "Unknown": []}
                for name, check in state.checks.items():
                    out.setdefault(check.last_outcome or "Unknown", []).append(name)
                return tuple(out["Fail"]), tuple(out["Pass"]), tuple(out["Unknown"])
        return (), (), ()

    def records(self, loaded: Loaded) -> list[tuple[Step, inc.StepRecord]]:
        """The runbook's steps that have a record, with it."""
        return [(step, record) for step in loaded.runbook.steps
                if (record := self.status.step(step.id)) is not None]

    async def verify_steps(self, loaded: Loaded, now: float) -> None:
        """Each step that did not have its effect in time, once: escalate (the default),
        revert (undo it, if its action can, and escalate) or continue (say so only)."""
        for step, record in self.records(loaded):
            if record.no_effect_at is None:
                await self.verify_one(loaded, step, record, now)

    async def verify_one(self, loaded: Loaded, step: Step, record: inc.StepRecord,
                         now: float) -> None:
        act = action_of(step)
        why = act.no_effect(step=step, record=record, status=self.status, now=now)
        if why is None:
            return

        def judged(s: inc.IncidentStatus) -> inc.IncidentStatus:
            s = inc.update_step(s, step.id, no_effect_at=now)
            if step.on_no_effect == "revert" and act.undoable:
                return reverts.plan_one(s, now, step.id, why)
            return inc.note(s, now, "NoEffect", why) if step.on_no_effect == "continue" else s

        if step.on_no_effect == "continue":
            await self.apply(judged)
        else:   # the judgement and its escalation land in one write
            await self.escalate(loaded, f"{VERIFY_KEY}:{step.id}", why, also=judged)

    async def watch_hold(self) -> None:
        """A resolved incident holding its freeze for a suspended GitOps owner: once the
        source revision moves on (a fix in Git) or a person lifts the freeze, lift it and
        resume GitOps (the suspending step's undo), in that order: what GitOps applies next
        must pass the freeze."""
        hold = self.status.gitops
        lift_asked = bool(self.body["spec"].get("liftFreeze"))
        current = None
        if not lift_asked:
            owner = gitops.Owner(gitops.OWNERS[hold.kind], hold.namespace, hold.name)
            current, _ = await gitops.revision(self.e.kube, owner)
        why = gitops.hold_over(hold, current, lift_asked=lift_asked)
        if why is None:
            return
        now = self.e.clock()
        freeze = self.status.freeze
        lifted = await freezing.lift(self.e.kube, incident=self.name, namespace=self.namespace,
                                     freeze=freeze, now=now, reason=why) \
            if freeze is not None and freeze.active else None

        def change(s: inc.IncidentStatus) -> inc.IncidentStatus:
            s = replace(s, gitops=replace(s.gitops, released_at=now, released_because=why))
            if lifted is not None:
                s = inc.note(replace(s, freeze=lifted), now, "FreezeLifted",
                             f"deploy freeze lifted: {why}")
            return reverts.plan_one(s, now, hold.step, f"resuming GitOps: {why}")

        await self.apply(change)
        await self.revert()

    def freeze_lift_reason(self, loaded: Loaded, status: inc.IncidentStatus,
                           now: float) -> str | None:
        freeze = status.freeze
        if freeze is None or not freeze.active:
            return None
        if status.phase == inc.RESOLVED and not gitops.holding(status):
            return "the incident is resolved"
        if status.phase == inc.RESOLVED:
            return None   # held for its suspended GitOps owner: watch_hold ends it
        if self.body["spec"].get("liftFreeze"):
            return "lifted by hand (spec.liftFreeze)"
        return next((why for step in loaded.runbook.steps
                     if (why := action_of(step).expired(step=step, status=status, now=now))),
                    None)


def missing(spec: dict, where: str, *, runbook: bool, policy: bool,
            deployment: bool) -> tuple[str, str] | None:
    """Which object an open incident needs is gone, as (reason, message): without its
    runbook, policy or target it can no longer act or resolve by itself."""
    if not runbook:
        return ("RunbookDeleted", f"Runbook {where}/{spec['runbook']['name']} was deleted: "
                f"its steps and escalation rules can no longer run")
    if not policy and spec.get("policy"):
        return ("PolicyDeleted", f"IncidentPolicy {where}/{spec['policy']} was deleted: "
                f"nothing checks the target any more, so the incident cannot resolve by itself")
    if not deployment:
        target = spec["target"]
        return ("TargetDeleted", f"Deployment {target['namespace']}/{target['name']} was "
                f"deleted: there is nothing left to remediate or to watch recover")
    return None


def unconfirmed(status: inc.IncidentStatus) -> inc.IncidentStatus:
    """A page or update still "sending" when the last operator stopped may have reached
    its receiver: it is marked unconfirmed. An update then counts as sent; a page is sent
    again under the same idempotency key (see paging.redeliver)."""
    def fix(outcome: str) -> str:
        return "unconfirmed" if outcome == "sending" else outcome
    return replace(status,
                   pages=tuple(replace(p, outcome=fix(p.outcome)) for p in status.pages),
                   updates=tuple(replace(u, outcome=fix(u.outcome)) for u in status.updates))


async def _past_outages(work: Awaitable[None]) -> None:
    """Background work cut short by an API server outage ends quietly (the outage is logged
    once, by kube.Health); the next round starts it again."""
    with contextlib.suppress(Unavailable):
        await work


def _reverted(status: inc.IncidentStatus, record: inc.StepRecord, result: StepResult,
              now: float) -> inc.IncidentStatus:
    status = inc.update_step(status, record.id, state=result.state, finished_at=now,
                             message=result.message[:1000], changes=result.changes)
    kind = {inc.SUCCEEDED: "Reverted", inc.SKIPPED: REVERT_SKIPPED,
            inc.PLANNED: "RevertPlanned"}.get(result.state, "RevertFailed")
    return inc.note(status, now, kind, f"{record.id} ({record.action}): {result.message}")


def _close_asked(spec: dict) -> bool:
    return bool(spec.get("close")) and inc.closable(spec.get("actionItems") or [])


def _blocks(step: Step, state: str) -> bool:
    """A failed change stops the runbook (the incident fails and escalates); a failed read
    or page is recorded and reported but stops nothing."""
    return state == inc.STEP_FAILED and not step.continue_on_failure \
        and not action_of(step).read_only


def _ref(body: dict) -> dict:
    return {"apiVersion": body.get("apiVersion", "apps/v1"),
            "kind": body.get("kind", "Deployment"), "metadata": body["metadata"]}


def _reason(action: str) -> str:
    return action[:1].upper() + action[1:]
