"""A generic JSON webhook: one POST per message, for receivers of your own (a chat bridge,
an on-call tool, an audit log). The schema is versioned by `schema` and only grows; a
receiver should ignore fields it does not know.

    POST <url from the Route's Secret>
    Content-Type: application/json
    User-Agent: mission-control/<version>
    Idempotency-Key: <id>

    {
      "schema": "missioncontrol.dev/notification/v1",
      "id": "<32 hex digits, the same on every retry of this message>",
      "kind": "page" | "acknowledge" | "resolve" | "update" | "channel",
      "dedupKey": "[<cluster>/]<incident namespace>/<incident name>",
      "cluster": "<the operator's --cluster-name; empty when not set>",
      "timestamp": "<ISO 8601, UTC, milliseconds>",
      "incident": {"namespace": "...", "name": "..."},
      "runbook": {"id": "RB-001", "title": "..."},
      "target": {"kind": "Deployment", "namespace": "...", "name": "..."},
      "severity": "SEV1" | "SEV2" | "SEV3" | "SEV4",
      "phase": "Detected" | "Mitigating" | ...,
      "role": "<role paged or updated; empty when none>",
      "summary": "...",
      "details": {"<string>": "<string>", ...},
      "links": [{"href": "...", "text": "..."}, ...]
    }

Any 2xx answer means delivered. 429 and 5xx are retried with backoff (Retry-After is
honoured); any other answer is a failure that is not retried. `docs/notifications.md` has
an example.
"""

from __future__ import annotations

import hashlib

from .. import __version__
from .base import JSON_HEADERS, Destination, Message, Request

SCHEMA = "missioncontrol.dev/notification/v1"
KINDS: frozenset[str] = frozenset({"page", "acknowledge", "resolve", "update", "channel"})


def format_request(message: Message, *, destination: Destination) -> Request:
    if not destination.url:
        raise ValueError("a Webhook route needs the URL from its Secret")
    ident = message_id(message)
    headers = {**JSON_HEADERS, "User-Agent": f"mission-control/{__version__}",
               "Idempotency-Key": ident}
    return Request(url=destination.url, headers=headers, body=body(message, ident=ident))


def body(message: Message, *, ident: str) -> dict:
    return {
        "schema": SCHEMA,
        "id": ident,
        "kind": message.kind,
        "dedupKey": message.dedup_key,
        "cluster": message.cluster,
        "timestamp": message.iso_timestamp,
        "incident": {"namespace": message.namespace, "name": message.incident},
        "runbook": {"id": message.runbook_id, "title": message.runbook_title},
        "target": {"kind": "Deployment", "namespace": message.target_namespace,
                   "name": message.target_name},
        "severity": message.severity,
        "phase": message.phase,
        "role": message.role,
        "summary": message.summary,
        "details": dict(message.details),
        "links": [{"href": link.href, "text": link.text} for link in message.links],
    }


def message_id(message: Message) -> str:
    """Derived from the content, not random: a retry, or a resend after an operator
    restart, carries the same id, so the receiver can drop the duplicate."""
    key = "\n".join([message.kind, message.dedup_key, message.role, message.iso_timestamp,
                     message.summary])
    return hashlib.sha256(key.encode()).hexdigest()[:32]
