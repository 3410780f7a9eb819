"""Delivery over real HTTP against the local receiver: what a page looks like on the wire,
and how retries, refusals, hangs and dead ports come back as a reported `Delivery`.
No cluster needed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from harness.procs import free_port
from harness.receiver import Receiver, Reply
from missioncontrol.notifiers import Destination, Message, Policy, deliver, format_request, notify

# Short waits so the suite stays quick; the policy itself is the product's.
FAST = Policy(attempts=3, timeout=2.0, backoff=0.05, max_backoff=0.2, jitter=0.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def page() -> Message:
    return Message(kind="page", incident="rb-001-checkout-1", namespace="shop",
                   runbook_id="RB-001", runbook_title="Failed Production Deployment",
                   target="shop/checkout", severity="SEV2", phase="Detected",
                   role="oncall-backend", summary="readiness failed 3 times",
                   timestamp=datetime.now(UTC))


async def test_delivered_first_time(receiver: Receiver) -> None:
    destination = Destination(type="PagerDuty", url=receiver.url("/v2/enqueue"),
                              routing_key="KEY")
    receiver.script("/v2/enqueue", Reply(status=202, body={"status": "success"}))
    message = page()
    result = await notify(message, destination=destination, policy=FAST)
    assert (result.outcome, result.attempts, result.status) == ("delivered", 1, 202)
    [got] = receiver.wait_for_requests("/v2/enqueue", 1, timeout=5)
    assert got.method == "POST" and got.header("content-type") == "application/json"
    assert got.json == format_request(message, destination=destination).body
    assert got.json["payload"]["severity"] == "error"


async def test_500_then_200_is_retried_and_delivered(receiver: Receiver) -> None:
    destination = Destination(type="Webhook", url=receiver.url("/hook"))
    receiver.script("/hook", Reply(status=500))
    result = await notify(page(), destination=destination, policy=FAST)
    assert (result.outcome, result.attempts, result.status) == ("delivered", 2, 200)
    first, second = receiver.wait_for_requests("/hook", 2, timeout=5)
    # A retry is the same request: same body, same idempotency key.
    assert first.raw == second.raw
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key")
    assert second.at - first.at >= FAST.backoff


async def test_429_waits_for_retry_after(receiver: Receiver) -> None:
    destination = Destination(type="Slack", url=receiver.url("/slack"))
    receiver.script("/slack", Reply(status=429, body="rate_limited",
                                    headers={"Retry-After": "1"}))
    result = await notify(page(), destination=destination, policy=FAST)
    assert result.delivered and result.attempts == 2
    first, second = receiver.wait_for_requests("/slack", 2, timeout=5)
    assert second.at - first.at >= 0.9
    assert set(first.json) == {"text", "blocks"}


async def test_400_fails_at_once(receiver: Receiver) -> None:
    destination = Destination(type="PagerDuty", url=receiver.url("/v2/enqueue"),
                              routing_key="KEY")
    receiver.script("/v2/enqueue", Reply(status=400, body={
        "status": "invalid event", "message": "Event object is invalid"}))
    result = await notify(page(), destination=destination, policy=FAST)
    assert (result.outcome, result.attempts, result.status) == ("failed", 1, 400)
    assert "Event object is invalid" in result.error
    assert len(receiver.requests("/v2/enqueue")) == 1


async def test_a_hanging_receiver_times_out_and_is_reported_failed(receiver: Receiver) -> None:
    receiver.script("/hang", *[Reply(delay=30.0)] * 2)
    policy = Policy(attempts=2, timeout=0.3, backoff=0.05, jitter=0.0)
    request = format_request(page(), destination=Destination(type="Webhook",
                                                             url=receiver.url("/hang")))
    started = time.monotonic()
    result = await deliver(request, policy=policy)
    assert (result.outcome, result.attempts, result.status) == ("failed", 2, None)
    assert result.error == "no answer within 0.3s"
    assert time.monotonic() - started < 5  # the timeout cut it, not the 30 s hang
    assert len(receiver.wait_for_requests("/hang", 2, timeout=5)) == 2


async def test_an_unreachable_port_is_reported_failed() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # bound, then released: nobody listens
    result = await notify(page(), destination=Destination(type="Webhook", url=url),
                          policy=FAST)
    assert (result.outcome, result.attempts, result.status) == ("failed", 3, None)
    assert "Cannot connect" in result.error or "Connect" in result.error
    assert "/hook" not in result.error
