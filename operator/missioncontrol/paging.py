"""Paging people: roles resolved through the ServiceOwnership map, each contact's route
read from its Secret, the message delivered by the notifiers, every delivery recorded.

A delivery failure is recorded and reported, never raised: remediation does not wait for
a receiver. Every page is recorded with what it said and when it was first tried, so a
failed one can be sent again, word for word under the same idempotency key, by whoever
runs the incident next (also after it resolved: see comms.owed)."""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from . import metrics, tenancy
from .incident import Page
from .kube import Kube, NotFound
from .model import Ownership, Route
from .notifiers import (
    DEFAULT_POLICY,
    Destination,
    Message,
    Policy,
    Request,
    deliver,
    format_request,
)
from .owners import recipients

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Brief:
    """What every message about one incident says."""
    incident: str
    namespace: str
    runbook_id: str
    runbook_title: str
    target: str
    severity: str
    phase: str
    cluster: str = ""   # the operator's --cluster-name, in every message

    def message(self, *, kind: str, summary: str, role: str = "",
                details: dict[str, str] | None = None, at: float) -> Message:
        """`at` is the message's timestamp, part of its idempotency key."""
        return Message(
            kind=kind, incident=self.incident, namespace=self.namespace,
            runbook_id=self.runbook_id, runbook_title=self.runbook_title, target=self.target,
            severity=self.severity, phase=self.phase, summary=summary, role=role,
            details=details or {}, timestamp=datetime.datetime.fromtimestamp(at, datetime.UTC),
            cluster=self.cluster)


async def secret_value(kube: Kube, namespace: str, route: Route) -> str | None:
    tenancy.refuse_protected(namespace, what=f"read Secret {route.secret.name}")
    try:
        # Through an outage: a page is not a failed delivery because its route could not
        # be read yet (that would wait RETRY_AFTER).
        secret = await kube.patiently(lambda: kube.json(kube.core.read_namespaced_secret,
                                                        route.secret.name, namespace))
    except NotFound:
        return None
    data = (secret.get("data") or {}).get(route.secret.key)
    if data is None:
        return None
    return base64.b64decode(data).decode()


Before = Callable[[], Awaitable[None]]


async def outgoing(kube: Kube, *, namespace: str, route: Route,
                   message: Message) -> Request | str:
    """The request that delivers `message` through `route`, or why there can be none.
    Everything but the HTTP request itself: the Secret read, the formatting."""
    secret = await secret_value(kube, namespace, route)
    if secret is None:
        return f"Secret {namespace}/{route.secret.name} has no key {route.secret.key!r}"
    try:
        return format_request(message, destination=Destination.resolved(
            type=route.type, secret=secret, url=route.url))
    except ValueError as exc:
        return str(exc)


async def send(kube: Kube, *, namespace: str, route: Route, message: Message,
               policy: Policy = DEFAULT_POLICY, before: Before | None = None):
    """Deliver one message through one route; returns (outcome, attempts, error).
    `before` runs right before the HTTP request, after everything that can fail without
    sending (the caller records "sending" there: the window in which a crash leaves a
    delivery unconfirmed is the request itself, retries included)."""
    request = await outgoing(kube, namespace=namespace, route=route, message=message)
    if isinstance(request, str):
        metrics.PAGES.labels(route=route.type, kind=message.kind, outcome="failed").inc()
        return "failed", 0, request
    if before is not None:
        await before()
    delivery = await deliver(request, policy=policy)
    metrics.PAGES.labels(route=route.type, kind=message.kind, outcome=delivery.outcome).inc()
    return delivery.outcome, delivery.attempts, delivery.error


# A page left "unconfirmed" by a crash (recorded as sending, outcome unknown) is sent again,
# with its first timestamp and words: the same webhook Idempotency-Key and PagerDuty
# dedup_key, so a receiver that dedups drops the copy, and one that did not get it gets its
# page. A lost page is worse than a duplicate (docs/notifications.md says who sees one).
Record = Callable[[Page], Awaitable[None]]


@dataclass
class Pager:
    """What every page of one incident round shares."""
    kube: Kube
    ownership: Ownership | None
    secrets_namespace: str
    brief: Brief
    now: float
    dry_run: bool
    record: Record                    # writes a page's record into the Incident's status
    recorded: Callable[[], tuple[Page, ...]] = tuple   # the pages in status now
    busy: set = field(default_factory=set)   # deliveries under way in this process
    policy: Policy = DEFAULT_POLICY


@dataclass(frozen=True)
class Ask:
    """One page to some roles: what kind, what it says, which round and purpose."""
    kind: str
    summary: str
    round: int = 1
    about: str = ""
    only_route: str | None = None   # one route type only (PagerDuty acknowledge, resolve)


async def page_roles(pager: Pager, *, roles: tuple[str, ...], ask: Ask) -> list[Page]:
    """Page every contact of the roles once per kind, round and purpose; who has no
    contact is recorded too. A page tried before is not sent here again: its retry is
    `redeliver`'s.

    Each page is recorded as "sending" right before its HTTP request and with its outcome
    after, so a crash in between leaves a record that a restarted operator resends under
    the same key. `pager.busy` holds the deliveries under way in other tasks of this
    process: a key is claimed before the first await, so two callers never page the same
    person. Whether a page was tried is read from the status at each page, not once at the
    start: two callers paging the same roles (the notify step and the escalation's first
    page) would otherwise each page someone the other had just paged, under two keys."""
    found, missing = recipients(pager.ownership, roles)
    summary = ask.summary[:1000]
    pages: list[Page] = []

    def tried(page: Page) -> bool:
        return page.key in pager.busy or any(p.key == page.key for p in pager.recorded())

    for role in missing:
        page = Page(role, "", "", ask.kind, pager.now, "failed", 0,
                    "nobody holds this role in the ServiceOwnership map", round=ask.round,
                    about=ask.about, summary=summary)
        if ask.only_route is None and not tried(page):
            await pager.record(page)
            pages.append(page)
    for who in found:
        page = Page(who.role, who.contact, who.route.type, ask.kind, pager.now,
                    "planned" if pager.dry_run else "sending", round=ask.round,
                    about=ask.about, summary=summary)
        if tried(page):
            continue
        if ask.only_route is not None and who.route.type != ask.only_route:
            continue
        pages.append(await _deliver(pager, page, who.route))
    return pages


async def redeliver(pager: Pager, *, pages: tuple[Page, ...]) -> list[Page]:
    """Send owed pages again (see comms.redelivery_due), as they were first sent: same
    words, same timestamp, hence the same idempotency key. One after the other, in the
    order they were first tried: a late PagerDuty trigger goes before its resolve."""
    done = []
    for page in pages:
        if page.key in pager.busy:
            continue
        contact = next((c for c in (pager.ownership.contacts(page.role)
                                    if pager.ownership else ()) if c.name == page.contact),
                       None)
        if contact is None:
            where = pager.ownership.name if pager.ownership else "no ServiceOwnership"
            failed = replace(page, outcome="failed", tried_at=pager.now,
                             error=f"{page.contact} is no longer a {page.role} contact in "
                                   f"{where}")
            await pager.record(failed)
            done.append(failed)
            continue
        done.append(await _deliver(pager, page, contact.route))
    return done


async def _deliver(pager: Pager, page: Page, route: Route) -> Page:
    if pager.dry_run:
        page = replace(page, outcome="planned")
        await pager.record(page)
        return page
    pager.busy.add(page.key)
    try:
        sending = replace(page, outcome="sending", tried_at=pager.now)

        async def before() -> None:
            await pager.record(sending)

        try:
            message = pager.brief.message(
                kind=page.kind, summary=page.summary, role=page.role,
                at=page.at if page.at is not None else pager.now)
            outcome, attempts, error = await send(
                pager.kube, namespace=pager.secrets_namespace, route=route, message=message,
                policy=pager.policy, before=before)
        except Exception as exc:  # noqa: BLE001 - a failed page, never raised
            outcome, attempts, error = "failed", 0, f"{type(exc).__name__}: {exc}"[:300]
        page = replace(sending, outcome=outcome, attempts=page.attempts + attempts,
                       error=error)
        await pager.record(page)
        return page
    finally:
        pager.busy.discard(page.key)
