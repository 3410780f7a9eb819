"""Notifiers without the network: the three wire formats field by field, and the delivery
policy (retries, backoff, Retry-After) on a fake clock with a scripted sender."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest

from missioncontrol.notifiers import (
    DEFAULT_POLICY,
    Destination,
    Link,
    Message,
    Policy,
    Request,
    UnsupportedMessage,
    deliver,
    format_request,
    notify,
    pagerduty,
    slack,
    supports,
    webhook,
)
from missioncontrol.notifiers.delivery import Reply, backoff, retry_after
from missioncontrol.notifiers.factory import formatter_for

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 5, 9, 7, 35, 25, 123000, tzinfo=UTC)
KEY = "R0UT1NGKEY0000000000000000000000"
PD = Destination(type="PagerDuty", routing_key=KEY)
SLACK = Destination(type="Slack", url="https://hooks.slack.com/services/T0/B0/secret")
HOOK = Destination(type="Webhook", url="https://hooks.example.com/secret-path")


def message(**changes: object) -> Message:
    fields: dict = dict(
        kind="page", incident="rb-001-checkout-7f3k2", namespace="shop",
        runbook_id="RB-001", runbook_title="Failed Production Deployment",
        target="shop/checkout", severity="SEV1", phase="Mitigating", role="release-owner",
        summary="Readiness failed 3 consecutive checks after revision 7", timestamp=AT,
        details={"revision": "7", "lastHealthyRevision": "6"},
        links=(Link(href="https://grafana.example.com/d/checkout", text="Checkout"),),
    )
    fields.update(changes)
    return Message(**fields)


# --- Message -------------------------------------------------------------------------------

def test_dedup_key_is_the_incident_namespace_and_name() -> None:
    assert message().dedup_key == "shop/rb-001-checkout-7f3k2"


def test_two_clusters_give_two_dedup_keys_and_say_which_cluster_they_are() -> None:
    """A fleet runs the same Git revision, so the same incident names, in many clusters:
    paging one routing key, each cluster's incident must be an alert of its own."""
    east, west = message(cluster="prod-east"), message(cluster="prod-west")
    keys = {format_request(m, destination=PD).body["dedup_key"] for m in (east, west)}
    assert keys == {"prod-east/shop/rb-001-checkout-7f3k2", "prod-west/shop/rb-001-checkout-7f3k2"}
    resolve = format_request(message(cluster="prod-east", kind="resolve"), destination=PD)
    assert resolve.body["dedup_key"] == "prod-east/shop/rb-001-checkout-7f3k2"
    payload = format_request(east, destination=PD).body["payload"]
    assert payload["source"] == "prod-east/shop/checkout"
    assert payload["summary"].startswith("[SEV1] RB-001 Failed Production Deployment on "
                                         "prod-east: shop/checkout: ")
    assert payload["custom_details"]["cluster"] == "prod-east"
    hook = format_request(east, destination=HOOK).body
    assert (hook["cluster"], hook["dedupKey"]) == ("prod-east",
                                                   "prod-east/shop/rb-001-checkout-7f3k2")
    assert format_request(west, destination=HOOK).body["id"] != hook["id"]
    slack = format_request(east, destination=SLACK).body
    assert "on prod-east: shop/checkout" in slack["text"]
    fields = [f["text"] for b in slack["blocks"] for f in b.get("fields", [])]
    assert "*Cluster*\nprod-east" in fields


@pytest.mark.parametrize("changes", [
    {"kind": "escalate"}, {"severity": "SEV5"}, {"target": "checkout"},
    {"timestamp": datetime(2026, 5, 9, 7, 35)},
])
def test_message_rejects_invalid_fields(changes: dict) -> None:
    with pytest.raises(ValueError):
        message(**changes)


def test_message_details_are_a_read_only_copy() -> None:
    details = {"a": "1"}
    built = message(details=details)
    details["a"] = "2"
    assert built.details["a"] == "1"
    with pytest.raises(TypeError):
        built.details["a"] = "3"  # type: ignore[index]


def test_secrets_stay_out_of_repr() -> None:
    request = format_request(message(), destination=PD)
    assert KEY not in repr(PD) and KEY not in repr(request)
    assert "secret" not in repr(SLACK)
    assert format_request(message(), destination=SLACK).safe_url == "https://hooks.slack.com"


def test_destination_from_a_route_and_its_secret() -> None:
    pd = Destination.resolved(type="PagerDuty", secret=f"{KEY}\n", url="http://pd.local/v2")
    assert (pd.routing_key, pd.url) == (KEY, "http://pd.local/v2")
    assert Destination.resolved(type="PagerDuty", secret=KEY).url is None
    hook = Destination.resolved(type="Webhook", secret="https://hooks.example.com/x\n")
    assert (hook.url, hook.routing_key) == ("https://hooks.example.com/x", None)


# --- PagerDuty -----------------------------------------------------------------------------

def test_pagerduty_trigger_has_every_documented_field() -> None:
    request = format_request(message(), destination=PD)
    assert request.url == "https://events.pagerduty.com/v2/enqueue"
    assert request.headers == {"Content-Type": "application/json"}
    assert request.body == {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "shop/rb-001-checkout-7f3k2",
        "payload": {
            "summary": "[SEV1] RB-001 Failed Production Deployment on shop/checkout: "
                       "Readiness failed 3 consecutive checks after revision 7",
            "source": "shop/checkout",
            "severity": "critical",
            "timestamp": "2026-05-09T07:35:25.123Z",
            "component": "checkout",
            "group": "shop",
            "class": "RB-001",
            "custom_details": {
                "incident": "shop/rb-001-checkout-7f3k2",
                "runbook": "RB-001 Failed Production Deployment",
                "severity": "SEV1", "phase": "Mitigating", "role": "release-owner",
                "revision": "7", "lastHealthyRevision": "6",
            },
        },
        "client": "Mission Control",
        "links": [{"href": "https://grafana.example.com/d/checkout", "text": "Checkout"}],
    }


@pytest.mark.parametrize(("severity", "expected"), [
    ("SEV1", "critical"), ("SEV2", "error"), ("SEV3", "warning"), ("SEV4", "info"),
])
def test_pagerduty_severity_mapping(severity: str, expected: str) -> None:
    body = format_request(message(severity=severity), destination=PD).body
    assert body["payload"]["severity"] == expected


@pytest.mark.parametrize(("kind", "action"), [("acknowledge", "acknowledge"),
                                              ("resolve", "resolve")])
def test_pagerduty_acknowledge_and_resolve_carry_only_the_key(kind: str, action: str) -> None:
    body = format_request(message(kind=kind), destination=PD).body
    assert body == {"routing_key": KEY, "event_action": action,
                    "dedup_key": "shop/rb-001-checkout-7f3k2"}


def test_pagerduty_summary_is_cut_to_1024_characters() -> None:
    summary = format_request(message(summary="x" * 5000), destination=PD).body["payload"][
        "summary"]
    assert len(summary) == 1024 and summary.endswith("…")
    short = format_request(message(summary="short"), destination=PD).body["payload"]["summary"]
    assert not short.endswith("…")


def test_pagerduty_url_override_and_no_links_key_without_links() -> None:
    destination = replace(PD, url="http://127.0.0.1:9/v2/enqueue")
    request = format_request(message(links=()), destination=destination)
    assert request.url == "http://127.0.0.1:9/v2/enqueue"
    assert "links" not in request.body


def test_pagerduty_role_is_left_out_when_empty() -> None:
    details = format_request(message(role=""), destination=PD).body["payload"]["custom_details"]
    assert "role" not in details


def test_pagerduty_details_cannot_overwrite_the_incident_fields() -> None:
    custom = format_request(message(details={"severity": "low", "extra": "1"}),
                            destination=PD).body["payload"]["custom_details"]
    assert custom["severity"] == "SEV1" and custom["extra"] == "1"


def test_pagerduty_long_dedup_key_stays_within_the_limit_and_unique() -> None:
    first = pagerduty.dedup_key(message(namespace="n" * 63, incident="a" * 253))
    second = pagerduty.dedup_key(message(namespace="n" * 63, incident="a" * 252 + "b"))
    assert len(first) <= 255 and len(second) <= 255 and first != second
    assert first == pagerduty.dedup_key(message(namespace="n" * 63, incident="a" * 253))


@pytest.mark.parametrize("kind", ["update", "channel"])
def test_pagerduty_refuses_updates_and_channel_messages(kind: str) -> None:
    with pytest.raises(UnsupportedMessage):
        format_request(message(kind=kind), destination=PD)
    assert not supports("PagerDuty", kind)


def test_pagerduty_needs_a_routing_key() -> None:
    with pytest.raises(ValueError, match="routing key"):
        format_request(message(), destination=Destination(type="PagerDuty"))


# --- Slack ---------------------------------------------------------------------------------

def test_slack_body_has_fallback_text_and_blocks() -> None:
    request = format_request(message(), destination=SLACK)
    assert request.url == SLACK.url
    assert request.headers == {"Content-Type": "application/json"}
    body = request.body
    assert set(body) == {"text", "blocks"}
    assert body["text"] == ("Page [SEV1] RB-001 Failed Production Deployment on shop/checkout: "
                            "Readiness failed 3 consecutive checks after revision 7")
    header, summary, fields, details, context = body["blocks"]
    assert header == {"type": "header", "text": {
        "type": "plain_text", "emoji": True,
        "text": ":rotating_light: Page SEV1: RB-001 Failed Production Deployment"}}
    assert summary["type"] == "section"
    assert summary["text"] == {"type": "mrkdwn", "text": message().summary}
    assert [f["text"] for f in fields["fields"]] == [
        "*Incident*\nshop/rb-001-checkout-7f3k2", "*Target*\nshop/checkout",
        "*Severity*\nSEV1", "*Phase*\nMitigating",
        "*Runbook*\nRB-001 Failed Production Deployment", "*Role*\nrelease-owner"]
    assert all(f["type"] == "mrkdwn" for f in fields["fields"])
    assert [f["text"] for f in details["fields"]] == ["*revision*\n7",
                                                      "*lastHealthyRevision*\n6"]
    assert context["type"] == "context"
    texts = [e["text"] for e in context["elements"]]
    assert texts[0].startswith(f"<!date^{int(AT.timestamp())}^")
    assert "|2026-05-09T07:35:25.123Z>" in texts[0] and "shop/rb-001-checkout-7f3k2" in texts[0]
    assert texts[1] == "<https://grafana.example.com/d/checkout|Checkout>"


@pytest.mark.parametrize("kind", ["page", "acknowledge", "resolve", "update", "channel"])
def test_slack_carries_every_kind_with_its_own_title(kind: str) -> None:
    body = format_request(message(kind=kind), destination=SLACK).body
    assert body["text"].startswith(slack.TITLES[kind].split(" ", 1)[1])
    assert supports("Slack", kind)


def test_slack_escapes_mrkdwn_and_respects_block_limits() -> None:
    built = message(summary="<!channel> a & b > c" + "x" * 4000,
                    runbook_title="T" * 200, role="",
                    details={f"k{i}": "v" for i in range(14)})
    blocks = format_request(built, destination=SLACK).body["blocks"]
    assert len(blocks[0]["text"]["text"]) <= 150
    assert blocks[1]["text"]["text"].startswith("&lt;!channel&gt; a &amp; b &gt; c")
    assert len(blocks[1]["text"]["text"]) <= 3000
    assert len(blocks[2]["fields"]) == 5  # no Role field when there is no role
    assert len(blocks[3]["fields"]) == 10
    assert blocks[4]["elements"][1]["text"] == "4 more details not shown"


def test_slack_without_details_has_no_details_section() -> None:
    blocks = format_request(message(details={}, links=()), destination=SLACK).body["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]


def test_slack_needs_a_url() -> None:
    with pytest.raises(ValueError):
        format_request(message(), destination=Destination(type="Slack"))


# --- Webhook -------------------------------------------------------------------------------

def test_webhook_body_has_every_documented_field() -> None:
    request = format_request(message(), destination=HOOK)
    ident = request.body["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", ident)
    assert request.headers == {"Content-Type": "application/json",
                               "User-Agent": request.headers["User-Agent"],
                               "Idempotency-Key": ident}
    assert request.headers["User-Agent"].startswith("mission-control/")
    assert request.body == {
        "schema": "missioncontrol.dev/notification/v1",
        "id": ident,
        "kind": "page",
        "dedupKey": "shop/rb-001-checkout-7f3k2",
        "cluster": "",
        "timestamp": "2026-05-09T07:35:25.123Z",
        "incident": {"namespace": "shop", "name": "rb-001-checkout-7f3k2"},
        "runbook": {"id": "RB-001", "title": "Failed Production Deployment"},
        "target": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
        "severity": "SEV1",
        "phase": "Mitigating",
        "role": "release-owner",
        "summary": "Readiness failed 3 consecutive checks after revision 7",
        "details": {"revision": "7", "lastHealthyRevision": "6"},
        "links": [{"href": "https://grafana.example.com/d/checkout", "text": "Checkout"}],
    }
    json.dumps(request.body)  # serialisable as is


def test_webhook_id_is_stable_per_message_and_differs_between_messages() -> None:
    first = format_request(message(), destination=HOOK).body["id"]
    assert format_request(message(), destination=HOOK).body["id"] == first
    assert format_request(message(kind="resolve"), destination=HOOK).body["id"] != first
    later = message(timestamp=AT + timedelta(seconds=1))
    assert format_request(later, destination=HOOK).body["id"] != first


def test_webhook_schema_is_documented_in_module_and_docs() -> None:
    body = format_request(message(), destination=HOOK).body
    guide = (REPO / "docs" / "notifications.md").read_text()
    for key in body:
        assert f'"{key}"' in webhook.__doc__, key
        assert f'"{key}"' in guide, key


# --- factory -------------------------------------------------------------------------------

def test_factory_maps_route_types_to_formatters() -> None:
    assert formatter_for("PagerDuty") is pagerduty.format_request
    assert formatter_for("Slack") is slack.format_request
    assert formatter_for("Webhook") is webhook.format_request
    with pytest.raises(ValueError, match="unknown route type"):
        formatter_for("Teams")
    assert not supports("Teams", "page")


# --- delivery policy on a fake clock -------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A sender answering from a list: a Reply, or an exception to raise."""

    def __init__(self, *outcomes: Reply | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Request] = []

    async def __call__(self, request: Request) -> Reply:
        self.calls.append(request)
        outcome = self.outcomes[min(len(self.calls), len(self.outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


REQUEST = Request(url="https://hooks.example.com/secret", headers={}, body={})


async def run(script: Script, *, policy: Policy = DEFAULT_POLICY, random: float = 0.0):
    # random() == 0 means no jitter: the waits are the exact exponential steps.
    clock = FakeClock()
    result = await deliver(REQUEST, policy=policy, send=script, sleep=clock.sleep,
                           clock=clock, random=lambda: random)
    return result, clock


async def test_delivered_first_time_without_waiting() -> None:
    result, clock = await run(Script(Reply(status=202)))
    assert (result.outcome, result.attempts, result.status, result.error) == \
        ("delivered", 1, 202, None)
    assert result.delivered and clock.sleeps == [] and result.duration == 0


async def test_5xx_is_retried_with_growing_backoff() -> None:
    script = Script(Reply(status=500), Reply(status=502), Reply(status=503), Reply(status=200))
    result, clock = await run(script)
    assert result.delivered and result.attempts == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert result.duration == 7.0


async def test_backoff_is_capped_and_jitter_only_shortens() -> None:
    policy = Policy(attempts=6, backoff=1.0, factor=2.0, max_backoff=5.0, jitter=0.5)
    result, clock = await run(Script(Reply(status=500)), policy=policy)
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert result.outcome == "failed" and result.attempts == 6
    assert result.status == 500 and result.error == "HTTP 500"
    _, jittered = await run(Script(Reply(status=500)), policy=policy, random=1.0)
    assert jittered.sleeps == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert backoff(policy=policy, retry=3, random=lambda: 0.5) == 3.0


async def test_400_fails_at_once_with_the_answer_in_the_error() -> None:
    script = Script(Reply(status=400, text='{"status": "invalid event",\n "message": "x"}'))
    result, clock = await run(script)
    assert (result.outcome, result.attempts, result.status) == ("failed", 1, 400)
    assert result.error == 'HTTP 400: {"status": "invalid event", "message": "x"}'
    assert clock.sleeps == [] and len(script.calls) == 1


@pytest.mark.parametrize("status", [301, 401, 403, 404, 413])
async def test_other_non_2xx_answers_are_not_retried(status: int) -> None:
    result, _ = await run(Script(Reply(status=status), Reply(status=200)))
    assert result.outcome == "failed" and result.attempts == 1


async def test_429_waits_as_long_as_retry_after_says() -> None:
    result, clock = await run(Script(Reply(status=429, retry_after="7"), Reply(status=200)))
    assert result.delivered and result.attempts == 2 and clock.sleeps == [7.0]


async def test_retry_after_is_capped() -> None:
    policy = Policy(max_retry_after=20.0)
    script = Script(Reply(status=503, retry_after="3600"), Reply(status=200))
    result, clock = await run(script, policy=policy)
    assert result.delivered and clock.sleeps == [20.0]


async def test_unreadable_retry_after_falls_back_to_backoff() -> None:
    result, clock = await run(Script(Reply(status=429, retry_after="soon"), Reply(status=200)))
    assert result.delivered and clock.sleeps == [1.0]


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 5, 9, 7, 0, 0, tzinfo=UTC)
    assert retry_after("120", now=now) == 120.0
    assert retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True),
                       now=now) == 30.0
    assert retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    for unreadable in (None, "", "soon", "-5", "nan", "inf"):
        assert retry_after(unreadable, now=now) is None


async def test_connection_errors_and_timeouts_are_retried() -> None:
    script = Script(aiohttp.ClientConnectionError("refused"), TimeoutError(),
                    Reply(status=200))
    result, clock = await run(script)
    assert result.delivered and result.attempts == 3 and clock.sleeps == [1.0, 2.0]


async def test_exhausted_retries_report_the_last_error() -> None:
    policy = Policy(attempts=2)
    result, _ = await run(Script(TimeoutError()), policy=policy)
    assert (result.outcome, result.attempts, result.status) == ("failed", 2, None)
    assert result.error == "no answer within 10s"


async def test_retries_stop_when_the_budget_is_spent() -> None:
    policy = Policy(attempts=10, budget=10.0)
    result, clock = await run(Script(Reply(status=500)), policy=policy)
    assert clock.sleeps == [1.0, 2.0, 4.0]  # the next wait (8s) would pass 10s in all
    assert result.attempts == 4 and "retry budget of 10s spent" in result.error


async def test_invalid_url_fails_without_retry_or_quoting_the_url() -> None:
    for error in (aiohttp.InvalidURL("https://hooks.example.com/secret"),
                  aiohttp.NonHttpUrlClientError("ftp://hooks.example.com/secret")):
        result, _ = await run(Script(error))
        assert result.outcome == "failed" and result.attempts == 1
        assert result.error == "invalid URL (http or https expected)"


async def test_errors_quoting_the_url_keep_only_its_host() -> None:
    result, _ = await run(Script(RuntimeError(f"cannot post to {REQUEST.url}")))
    assert result.error == "RuntimeError: cannot post to https://hooks.example.com"


async def test_an_unexpected_error_is_reported_not_raised() -> None:
    result, _ = await run(Script(RuntimeError("bug in a sender")))
    assert result.outcome == "failed" and result.attempts == 1
    assert result.error == "RuntimeError: bug in a sender"


async def test_cancellation_propagates() -> None:
    with pytest.raises(asyncio.CancelledError):
        await run(Script(asyncio.CancelledError()))


async def test_notify_reports_unsupported_messages_as_failed_without_sending() -> None:
    script = Script(Reply(status=202))
    result = await notify(message(kind="update"), destination=PD, send=script)
    assert (result.outcome, result.attempts) == ("failed", 0)
    assert "not 'update'" in result.error and script.calls == []


async def test_notify_formats_for_the_route_and_delivers() -> None:
    script = Script(Reply(status=202))
    result = await notify(message(), destination=PD, send=script)
    assert result.delivered
    assert script.calls[0].body["event_action"] == "trigger"


def test_the_response_channel_names_the_cluster_in_a_fleet() -> None:
    from missioncontrol.comms import channel_name
    assert channel_name(prefix="inc", cluster="", incident="rb-001-checkout-r2") == \
        "inc-rb-001-checkout-r2"
    assert channel_name(prefix="inc", cluster="prod-east", incident="rb-001-checkout-r2") == \
        "inc-prod-east-rb-001-checkout-r2"
    assert len(channel_name(prefix="inc", cluster="c" * 63, incident="x" * 63)) == 80
