"""PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/overview/).

A page is a `trigger` event, an acknowledgement `acknowledge`, a recovery `resolve`; all
three carry the incident's `namespace/name` (after the cluster name, with --cluster-name) as
`dedup_key`, so PagerDuty folds repeated pages of one incident into one alert and the resolve
closes it, and two clusters paging one routing key make two alerts. Stakeholder updates and
channel announcements have no Events API equivalent that does not page someone, so they
are refused (`UnsupportedMessage`) rather than sent as a trigger.
"""

from __future__ import annotations

import hashlib

from .base import (
    CLIENT,
    JSON_HEADERS,
    Destination,
    Message,
    Request,
    UnsupportedMessage,
    truncate,
)

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
KINDS: frozenset[str] = frozenset({"page", "acknowledge", "resolve"})

EVENT_ACTIONS = {"page": "trigger", "acknowledge": "acknowledge", "resolve": "resolve"}
SEVERITIES = {"SEV1": "critical", "SEV2": "error", "SEV3": "warning", "SEV4": "info"}

SUMMARY_LIMIT = 1024  # PagerDuty rejects longer summaries
DEDUP_KEY_LIMIT = 255  # and longer dedup keys


def format_request(message: Message, *, destination: Destination) -> Request:
    if message.kind not in KINDS:
        raise UnsupportedMessage(f"PagerDuty routes carry pages, acknowledgements and "
                                 f"resolves, not {message.kind!r} messages")
    if not destination.routing_key:
        raise ValueError("a PagerDuty route needs a routing key")
    body: dict = {
        "routing_key": destination.routing_key,
        "event_action": EVENT_ACTIONS[message.kind],
        "dedup_key": dedup_key(message),
    }
    # PagerDuty reads `payload`, `client` and `links` only on trigger events: sending them
    # with acknowledge/resolve would suggest they change the alert, which they do not.
    if message.kind == "page":
        body["payload"] = payload(message)
        body["client"] = CLIENT
        if message.links:
            body["links"] = [{"href": link.href, "text": link.text or link.href}
                             for link in message.links]
    return Request(url=destination.url or DEFAULT_URL, headers=dict(JSON_HEADERS), body=body)


def payload(message: Message) -> dict:
    summary = f"[{message.severity}] {message.runbook_id} {message.runbook_title} " \
              f"on {message.where}: {message.summary}"
    details = {
        "incident": message.dedup_key,
        "runbook": f"{message.runbook_id} {message.runbook_title}",
        "severity": message.severity,
        "phase": message.phase,
        **({"role": message.role} if message.role else {}),
        **({"cluster": message.cluster} if message.cluster else {}),
    }
    # The message's own details come after and never overwrite the fields above.
    for key, value in message.details.items():
        details.setdefault(key, value)
    return {
        "summary": truncate(summary, SUMMARY_LIMIT),
        "source": f"{message.cluster}/{message.target}" if message.cluster else message.target,
        "severity": SEVERITIES[message.severity],
        "timestamp": message.iso_timestamp,
        "component": message.target_name,
        "group": message.target_namespace,
        "class": message.runbook_id,
        "custom_details": details,
    }


def dedup_key(message: Message) -> str:
    key = message.dedup_key
    if len(key) <= DEDUP_KEY_LIMIT:
        return key
    # Namespace (63) plus name (253) can exceed the limit; a digest of the whole key keeps
    # it unique and stable instead of letting two incidents share a cut-off prefix.
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: DEDUP_KEY_LIMIT - 17]}~{digest}"
