"""Notifiers: the adapters that deliver pages and updates to people.

One module per wire format (`pagerduty`, `slack`, `webhook`), each a pure function from a
`Message` and a resolved `Destination` to a `Request`; `factory` picks the format by Route
type; `delivery` sends with timeouts and retries and reports the outcome as a `Delivery`.
"""

from .base import Destination, Link, Message, Request, UnsupportedMessage
from .delivery import DEFAULT_POLICY, Delivery, Policy, deliver, notify
from .factory import format_request, supports

__all__ = [
    "DEFAULT_POLICY",
    "Delivery",
    "Destination",
    "Link",
    "Message",
    "Policy",
    "Request",
    "UnsupportedMessage",
    "deliver",
    "format_request",
    "notify",
    "supports",
]
