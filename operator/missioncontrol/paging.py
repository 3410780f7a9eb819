"""Paging people: roles resolved through the ServiceOwnership map, each contact's route
read from its Secret, the message delivered by the notifiers, every delivery recorded.

A delivery failure is recorded and reported, never raised: remediation does not wait for
a receiver."""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import metrics
from .incident import Page
from .kube import ApiException, Kube
from .model import Ownership, Route
from .notifiers import DEFAULT_POLICY, Destination, Message, Policy, notify
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


async def secret_value(kube: Kube, namespace: str, route: Route) -> str | None:
    try:
        secret = await kube.json(kube.core.read_namespaced_secret, route.secret.name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    data = (secret.get("data") or {}).get(route.secret.key)
    if data is None:
        return None
    return base64.b64decode(data).decode()


async def send(kube: Kube, *, namespace: str, route: Route, brief: Brief, kind: str,
               summary: str, role: str = "", details: dict[str, str] | None = None,
               now: float, policy: Policy = DEFAULT_POLICY):
    """Deliver one message through one route; returns (outcome, attempts, error).
    `now` is the message's timestamp, part of its idempotency key."""
    secret = await secret_value(kube, namespace, route)
    if secret is None:
        return "failed", 0, (f"Secret {namespace}/{route.secret.name} has no key "
                             f"{route.secret.key!r}")
    message = Message(
        kind=kind, incident=brief.incident, namespace=brief.namespace,
        runbook_id=brief.runbook_id, runbook_title=brief.runbook_title, target=brief.target,
        severity=brief.severity, phase=brief.phase, summary=summary, role=role,
        details=details or {}, timestamp=datetime.datetime.fromtimestamp(now, datetime.UTC))
    delivery = await notify(message, destination=Destination.resolved(
        type=route.type, secret=secret, url=route.url), policy=policy)
    metrics.PAGES.labels(route=route.type, kind=kind, outcome=delivery.outcome).inc()
    return delivery.outcome, delivery.attempts, delivery.error


# A page left "unconfirmed" by a crash (recorded as sending, outcome unknown) is sent again,
# with its first timestamp: the same webhook Idempotency-Key and PagerDuty dedup_key, so a
# receiver that got it drops the copy, and one that did not gets its page. A lost page is
# worse than a duplicate the receiver can recognise.
SENT = ("delivered", "planned", "sending")
RETRY_AFTER = 60.0   # seconds between rounds of delivery to a failing receiver
Record = Callable[[Page], Awaitable[None]]


async def page_roles(kube: Kube, *, ownership: Ownership | None, secrets_namespace: str,
                     roles: tuple[str, ...], brief: Brief, kind: str, summary: str,
                     already: tuple[Page, ...], now: float, dry_run: bool, record: Record,
                     round: int = 1, only_route: str | None = None,
                     busy: set | None = None, policy: Policy = DEFAULT_POLICY) -> list[Page]:
    """Page every contact of the roles once per kind and round; who has no contact is
    recorded too. `only_route` limits it to one route type (PagerDuty acknowledge and
    resolve events).

    Each page is recorded as "sending" before it goes out and with its outcome after, so a
    crash in between leaves a record that stops a restarted operator from paging twice.
    `busy` holds the deliveries under way in other tasks of this process: a key is claimed
    before the first await, so two concurrent callers never page the same person."""
    busy = set() if busy is None else busy
    found, missing = recipients(ownership, roles)
    # Sent, or failed less than RETRY_AFTER ago: a failed page is tried again at that pace.
    done = {(p.role, p.contact, p.kind, p.round) for p in already
            if p.outcome in SENT or (p.outcome == "failed" and p.at is not None
                                     and now - p.at < RETRY_AFTER)}
    tried = {(p.role, p.contact, p.kind, p.round) for p in already}
    first_sent = {(p.role, p.contact, p.kind, p.round): p.at for p in already
                  if p.outcome == "unconfirmed" and p.at is not None}
    pages: list[Page] = []
    for role in missing:
        if only_route is None and (role, "", kind, round) not in tried:
            page = Page(role, "", "", kind, now, "failed", 0,
                        "nobody holds this role in the ServiceOwnership map", round=round)
            await record(page)
            pages.append(page)
    for who in found:
        key = (who.role, who.contact, kind, round)
        if key in done or key in busy:
            continue
        if only_route is not None and who.route.type != only_route:
            continue
        busy.add(key)
        try:
            if dry_run:
                page = Page(who.role, who.contact, who.route.type, kind, now, "planned",
                            round=round)
            else:
                at = first_sent.get(key, now)
                await record(Page(who.role, who.contact, who.route.type, kind, at, "sending",
                                  round=round))
                try:
                    outcome, attempts, error = await send(
                        kube, namespace=secrets_namespace, route=who.route, brief=brief,
                        kind=kind, summary=summary, role=who.role, now=at, policy=policy)
                except Exception as exc:  # noqa: BLE001 - a failed page, never raised
                    outcome, attempts, error = "failed", 0, f"{type(exc).__name__}: {exc}"[:300]
                page = Page(who.role, who.contact, who.route.type, kind, at, outcome,
                            attempts, error, round=round)
            await record(page)
            pages.append(page)
        finally:
            busy.discard(key)
    return pages
