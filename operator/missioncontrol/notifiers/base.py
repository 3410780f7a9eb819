"""What every notifier shares: the message to deliver, where it goes, and the HTTP request
a formatter turns it into. Formatting is pure; `delivery.py` does the I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal, Protocol
from urllib.parse import urlsplit

Kind = Literal["page", "acknowledge", "resolve", "update", "channel"]
RouteType = Literal["PagerDuty", "Slack", "Webhook"]

KINDS: frozenset[str] = frozenset({"page", "acknowledge", "resolve", "update", "channel"})
SEVERITIES: frozenset[str] = frozenset({"SEV1", "SEV2", "SEV3", "SEV4"})
CLIENT = "Mission Control"


class UnsupportedMessage(ValueError):
    """The route's wire format cannot carry this kind of message (a PagerDuty route has no
    way to post a stakeholder update without paging someone)."""


@dataclass(frozen=True, kw_only=True)
class Link:
    href: str
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class Message:
    """One notification about one incident, independent of the wire format."""

    kind: Kind
    incident: str
    namespace: str
    runbook_id: str
    runbook_title: str
    target: str  # "namespace/deployment"
    severity: str
    phase: str
    summary: str
    timestamp: datetime
    role: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    cluster: str = ""  # the operator's --cluster-name: which cluster of a fleet it is about

    def __post_init__(self) -> None:
        # Validate here, so a bad message fails where it is built, not in the middle of a
        # delivery whose failure would only be recorded.
        if self.kind not in KINDS:
            raise ValueError(f"unknown message kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}: use SEV1..SEV4")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        if self.target.count("/") != 1:
            raise ValueError(f"target {self.target!r} is not namespace/deployment")
        # A read-only copy: the caller's dict may change after the message is built.
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
        object.__setattr__(self, "links", tuple(self.links))

    @property
    def dedup_key(self) -> str:
        """One key per incident, so every page, acknowledgement and resolve of it lands on
        the same alert upstream. The cluster name comes first: a fleet runs the same
        incident names (the same Git revision) in many clusters, and one cluster's resolve
        must not close another's alert."""
        key = f"{self.namespace}/{self.incident}"
        return f"{self.cluster}/{key}" if self.cluster else key

    @property
    def where(self) -> str:
        """The target as people read it: `cluster: namespace/deployment`."""
        return f"{self.cluster}: {self.target}" if self.cluster else self.target

    @property
    def target_namespace(self) -> str:
        return self.target.split("/", 1)[0]

    @property
    def target_name(self) -> str:
        return self.target.split("/", 1)[1]

    @property
    def iso_timestamp(self) -> str:
        return iso8601(self.timestamp)


@dataclass(frozen=True, kw_only=True)
class Destination:
    """A Route with its Secret already resolved: the URL (Slack, Webhook, or a PagerDuty
    endpoint override) and, for PagerDuty, the routing key. Both are secrets, so they stay
    out of repr and logs."""

    type: RouteType
    url: str | None = field(default=None, repr=False)
    routing_key: str | None = field(default=None, repr=False)

    @classmethod
    def resolved(cls, *, type: RouteType, secret: str, url: str | None = None) -> Destination:
        """From a Route and the value of its Secret key, which means a routing key for
        PagerDuty (with `url` overriding the endpoint) and the URL itself for the others."""
        secret = secret.strip()  # Secrets written with `echo` end in a newline
        if type == "PagerDuty":
            return cls(type=type, url=url or None, routing_key=secret)
        return cls(type=type, url=secret)


@dataclass(frozen=True, kw_only=True)
class Request:
    """A JSON POST, complete: formatting decides every byte, delivery only sends it."""

    url: str = field(repr=False)
    headers: Mapping[str, str]
    body: dict = field(repr=False)

    @property
    def safe_url(self) -> str:
        """Scheme and host only: the path of a Slack or webhook URL is its secret."""
        try:
            parts = urlsplit(self.url)
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return "(invalid URL)"
        return f"{parts.scheme}://{parts.hostname or ''}{port}"


class Formatter(Protocol):
    def __call__(self, message: Message, *, destination: Destination) -> Request: ...


def iso8601(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def truncate(text: str, limit: int) -> str:
    """Cut to at most `limit` characters, marking the cut so a reader knows text is missing."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


JSON_HEADERS: Mapping[str, str] = MappingProxyType({"Content-Type": "application/json"})
