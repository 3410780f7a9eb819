"""From a Route's type to its wire format: one formatter per type, chosen in one place."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import pagerduty, slack, webhook
from .base import Destination, Formatter, Message, Request

FORMATTERS: Mapping[str, Formatter] = MappingProxyType({
    "PagerDuty": pagerduty.format_request,
    "Slack": slack.format_request,
    "Webhook": webhook.format_request,
})

_KINDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "PagerDuty": pagerduty.KINDS,
    "Slack": slack.KINDS,
    "Webhook": webhook.KINDS,
})


def formatter_for(route_type: str) -> Formatter:
    try:
        return FORMATTERS[route_type]
    except KeyError:
        known = ", ".join(FORMATTERS)
        raise ValueError(f"unknown route type {route_type!r}: use one of {known}") from None


def supports(route_type: str, kind: str) -> bool:
    """Whether a route of this type can carry this kind of message, so callers can skip
    (and say so) instead of failing: PagerDuty carries no stakeholder updates."""
    return kind in _KINDS.get(route_type, frozenset())


def format_request(message: Message, *, destination: Destination) -> Request:
    return formatter_for(destination.type)(message, destination=destination)
