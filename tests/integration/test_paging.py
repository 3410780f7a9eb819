"""Paging over real HTTP to the local receiver (no cluster: the Secret comes from a small
fake): "sending" is recorded right before the HTTP request and not before what can fail
without sending, and a failed page is sent again word for word under the same key."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace

import pytest

from harness.receiver import Receiver, Reply
from missioncontrol.incident import Page
from missioncontrol.kube import NotFound
from missioncontrol.model import Contact, Ownership, Route, SecretRef
from missioncontrol.notifiers import Policy
from missioncontrol.paging import Ask, Brief, Pager, page_roles, redeliver

ONCE = Policy(attempts=1, timeout=2.0)
T0 = 1_700_000_000.0
BRIEF = Brief("rb-001-checkout-r2", "shop", "RB-001", "Failed Production Deployment",
              "shop/checkout", "SEV2", "Mitigating")


class Secrets:
    """Kube.json(read_namespaced_secret, name, namespace) over a dict, counting reads."""

    def __init__(self, **secrets: str) -> None:
        self.secrets = secrets
        self.reads = 0
        self.core = SimpleNamespace(read_namespaced_secret="read_namespaced_secret")

    async def patiently(self, attempt, **_: object):
        return await attempt()   # Kube.patiently, with an API server that always answers

    async def json(self, fn: str, name: str, namespace: str) -> dict:
        assert fn == "read_namespaced_secret" and namespace == "shop"
        self.reads += 1
        if name not in self.secrets:
            raise NotFound(status=404, reason="Not Found")   # as Kube.json raises it
        return {"data": {"url": base64.b64encode(self.secrets[name].encode()).decode()}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def ownership(secret: str = "routes", contact: str = "ada") -> Ownership:
    route = Route("Webhook", SecretRef(secret, "url"))
    return Ownership("shop", "checkout", "checkout",
                     (("release-owner", (Contact(contact, route),)),))


class Recorder:
    def __init__(self, receiver: Receiver, kube: Secrets) -> None:
        self.pages: list[Page] = []
        self.seen_at_sending: list[tuple[int, int]] = []   # (Secret reads, requests) then
        self.receiver, self.kube = receiver, kube

    async def __call__(self, page: Page) -> None:
        if page.outcome == "sending":
            self.seen_at_sending.append((self.kube.reads, len(self.receiver.requests())))
        self.pages.append(page)


    def status(self) -> tuple[Page, ...]:
        """The pages as the Incident's status would hold them: one record per key."""
        latest = {p.key: p for p in self.pages}
        return tuple(latest.values())


def pager(kube: Secrets, record: Recorder, *, now: float, already: tuple[Page, ...] = (),
          own: Ownership | None = None) -> Pager:
    return Pager(kube, own or ownership(), "shop", BRIEF, now, False, record,
                 lambda: already, policy=ONCE)


async def test_two_callers_paging_the_same_roles_page_each_person_once(
        receiver: Receiver) -> None:
    """The notify step and the escalation's first page ask for the same roles, each with
    its own Pager: while one waits on a slow receiver, the other must not page anyone the
    first one has paged (or is paging), or that person gets two pages under two keys."""
    kube = Secrets(ada=receiver.url("/ada"), bob=receiver.url("/bob"))
    record = Recorder(receiver, kube)
    own = Ownership("shop", "checkout", "checkout", (
        ("release-owner", (Contact("ada", Route("Webhook", SecretRef("ada", "url"))),)),
        ("oncall-backend", (Contact("bob", Route("Webhook", SecretRef("bob", "url"))),))))
    receiver.script("/ada", Reply(status=503, delay=0.5))
    receiver.script("/bob", Reply(status=503, delay=0.1))   # done while ada waits
    busy: set = set()

    def one(now: float) -> Pager:
        return Pager(kube, own, "shop", BRIEF, now, False, record, record.status, busy,
                     policy=ONCE)

    ask = Ask("page", "readiness failed")
    roles = ("release-owner", "oncall-backend")
    first = asyncio.create_task(page_roles(one(T0), roles=roles, ask=ask))
    await asyncio.sleep(0)   # the first caller claims ada before the second one starts
    second = asyncio.create_task(page_roles(one(T0 + 1), roles=roles, ask=ask))
    done = await first + await second
    assert sorted(p.contact for p in done) == ["ada", "bob"]
    for path in ("/ada", "/bob"):
        assert len(receiver.requests(path)) == 1, path
    assert sorted(p.contact for p in record.status()) == ["ada", "bob"]


async def test_sending_is_recorded_after_the_secret_read_and_before_the_request(
        receiver: Receiver) -> None:
    kube = Secrets(routes=receiver.url("/ada"))
    record = Recorder(receiver, kube)
    (page,) = await page_roles(pager(kube, record, now=T0), roles=("release-owner",),
                               ask=Ask("page", "readiness failed"))
    assert page.outcome == "delivered"
    assert [p.outcome for p in record.pages] == ["sending", "delivered"]
    # At the "sending" record the Secret had been read and nothing had been sent yet.
    assert record.seen_at_sending == [(1, 0)]
    assert len(receiver.requests("/ada")) == 1


async def test_a_page_that_cannot_be_sent_is_never_recorded_as_sending(
        receiver: Receiver) -> None:
    kube = Secrets()   # the route's Secret is missing
    record = Recorder(receiver, kube)
    (page,) = await page_roles(pager(kube, record, now=T0), roles=("release-owner",),
                               ask=Ask("page", "readiness failed"))
    assert [p.outcome for p in record.pages] == ["failed"]
    assert (page.attempts, page.error) == (0, "Secret shop/routes has no key 'url'")
    assert receiver.requests() == []


async def test_a_failed_page_is_sent_again_as_it_was_under_the_same_key(
        receiver: Receiver) -> None:
    kube = Secrets(routes=receiver.url("/ada"))
    record = Recorder(receiver, kube)
    receiver.script("/ada", Reply(status=503))
    (failed,) = await page_roles(pager(kube, record, now=T0), roles=("release-owner",),
                                 ask=Ask("page", "readiness failed"))
    assert (failed.outcome, failed.attempts, failed.at) == ("failed", 1, T0)

    # The page_roles of a later round sends nothing new: the retry is redeliver's.
    later = pager(kube, record, now=T0 + 90, already=(failed,))
    assert await page_roles(later, roles=("release-owner",),
                            ask=Ask("page", "readiness failed")) == []
    (again,) = await redeliver(replace(later, brief=replace(BRIEF, phase="Resolved")),
                               pages=(failed,))
    assert (again.outcome, again.attempts, again.at, again.tried_at) == (
        "delivered", 2, T0, T0 + 90)
    first, second = receiver.wait_for_requests("/ada", 2, timeout=5)
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key")
    assert first.json["summary"] == second.json["summary"] == "readiness failed"
    assert second.json["phase"] == "Resolved"   # what the incident is now


async def test_a_page_whose_contact_left_the_map_is_recorded_failed_not_sent(
        receiver: Receiver) -> None:
    kube = Secrets(routes=receiver.url("/ada"))
    record = Recorder(receiver, kube)
    failed = Page("release-owner", "ada", "Webhook", "page", T0, "failed", 1, "HTTP 503",
                  summary="readiness failed")
    (again,) = await redeliver(pager(kube, record, now=T0 + 60, own=ownership(contact="bob")),
                               pages=(failed,))
    assert again.outcome == "failed" and again.tried_at == T0 + 60
    assert again.error == "ada is no longer a release-owner contact in checkout"
    assert receiver.requests() == []
