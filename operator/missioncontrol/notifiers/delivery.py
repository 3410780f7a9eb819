"""Sending a formatted Request: a timeout per attempt, retries with exponential backoff and
jitter on what may pass (connection errors, timeouts, 429, 5xx), none on what will not
(any other 4xx, a bad URL).

`deliver` never raises for a failed delivery: a page that cannot go out must not stop the
remediation that is running beside it. It returns a `Delivery` that the caller records in
Incident.status.pages, so the failure is visible rather than swallowed. Only cancellation
propagates. Sleep, clock and randomness are parameters, so tests run the retry policy on a
fake clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random as _random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp

from .base import Destination, Message, Request
from .factory import format_request

logger = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 200  # enough of an error answer to say what was wrong

# NonHttpUrlClientError (aiohttp >= 3.10) is not an InvalidURL.
_BAD_URL: tuple[type[Exception], ...] = tuple(
    getattr(aiohttp, name) for name in ("InvalidURL", "NonHttpUrlClientError")
    if hasattr(aiohttp, name))


@dataclass(frozen=True, kw_only=True)
class Policy:
    attempts: int = 4  # in all, the first one included
    timeout: float = 10.0  # per attempt: connect, send and read the answer
    backoff: float = 1.0  # before the first retry; then times `factor` per retry
    factor: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.5  # each wait is cut by up to this fraction, at random
    max_retry_after: float = 60.0  # a receiver cannot make us wait longer than this
    budget: float = 120.0  # no retry starts after this much time in all


DEFAULT_POLICY = Policy()


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int
    retry_after: str | None = None
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class Delivery:
    outcome: Literal["delivered", "failed"]
    attempts: int
    status: int | None  # of the last answer; None when none came
    error: str | None
    duration: float  # seconds, retries and waits included

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


Sender = Callable[[Request], Awaitable[Reply]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class _Attempt:
    status: int | None = None
    error: str | None = None
    retryable: bool = False
    wait: float | None = None  # what the receiver asked for (Retry-After), if anything


async def deliver(
    request: Request,
    *,
    policy: Policy = DEFAULT_POLICY,
    send: Sender | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] | None = None,
    random: Callable[[], float] = _random.random,
) -> Delivery:
    if send is None:
        # One session per delivery: pages are rare, and a shared session would have to
        # outlive the handler that owns it. Callers sending many can pass their own sender.
        async with aiohttp.ClientSession() as session:
            return await deliver(request, policy=policy, send=http_sender(session=session),
                                 sleep=sleep, clock=clock, random=random)
    clock = clock or asyncio.get_running_loop().time
    started = clock()
    attempts = 0
    while True:
        attempts += 1
        attempt = await _attempt(request, send=send, policy=policy)
        if attempt.error is None:
            return Delivery(outcome="delivered", attempts=attempts, status=attempt.status,
                            error=None, duration=clock() - started)
        error = attempt.error
        if attempt.retryable and attempts < policy.attempts:
            wait = (backoff(policy=policy, retry=attempts, random=random)
                    if attempt.wait is None else min(attempt.wait, policy.max_retry_after))
            if clock() - started + wait <= policy.budget:
                logger.warning("Delivery to %s failed (attempt %d of %d): %s; retrying in %.1fs",
                               request.safe_url, attempts, policy.attempts, error, wait)
                await sleep(wait)
                continue
            error = f"{error} (retry budget of {policy.budget:g}s spent)"
        logger.warning("Delivery to %s failed after %d attempt(s): %s",
                       request.safe_url, attempts, error)
        return Delivery(outcome="failed", attempts=attempts, status=attempt.status,
                        error=error, duration=clock() - started)


async def notify(message: Message, *, destination: Destination, **options: Any) -> Delivery:
    """Format for the destination's route type and deliver; a message the route cannot
    carry, or a route without its URL or key, is a failed delivery of zero attempts."""
    try:
        request = format_request(message, destination=destination)
    except ValueError as exc:
        logger.warning("Not delivering %s of %s to a %s route: %s",
                       message.kind, message.dedup_key, destination.type, exc)
        return Delivery(outcome="failed", attempts=0, status=None, error=str(exc),
                        duration=0.0)
    return await deliver(request, **options)


def backoff(*, policy: Policy, retry: int, random: Callable[[], float]) -> float:
    """The wait before retry number `retry` (1-based): exponential up to the cap, then cut
    by a random share, so many operators failing at once do not retry in step."""
    ceiling = min(policy.max_backoff, policy.backoff * policy.factor ** (retry - 1))
    return ceiling * (1.0 - policy.jitter * random())


def retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds asked for by a Retry-After header, in either of its forms (delay-seconds or
    an HTTP-date); None when absent or unreadable, so the usual backoff applies."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - now).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


async def _attempt(request: Request, *, send: Sender, policy: Policy) -> _Attempt:
    timeout = policy.timeout
    try:
        async with asyncio.timeout(timeout):
            reply = await send(request)
    except TimeoutError:
        return _Attempt(error=f"no answer within {timeout:g}s", retryable=True)
    except _BAD_URL:
        # Its message would quote the URL, and the URL is the secret.
        return _Attempt(error="invalid URL (http or https expected)")
    except aiohttp.ClientConnectionError as exc:
        return _Attempt(error=_describe(exc, request=request), retryable=True)
    except Exception as exc:  # noqa: BLE001 - a notifier bug must not break remediation
        return _Attempt(error=_describe(exc, request=request))
    if 200 <= reply.status < 300:
        return _Attempt(status=reply.status)
    text = " ".join(reply.text.split())[:ERROR_BODY_LIMIT]
    error = f"HTTP {reply.status}" + (f": {text}" if text else "")
    if reply.status == 429 or reply.status >= 500:
        wait = retry_after(reply.retry_after, now=datetime.now(UTC))
        return _Attempt(status=reply.status, error=error, retryable=True, wait=wait)
    return _Attempt(status=reply.status, error=error)


def _describe(exc: BaseException, *, request: Request) -> str:
    # The error ends up in Incident.status, readable by anyone who can read incidents: any
    # quoted URL is cut back to its host.
    text = str(exc).replace(request.url, request.safe_url)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def http_sender(*, session: aiohttp.ClientSession) -> Sender:
    async def send(request: Request) -> Reply:
        data = json.dumps(request.body, ensure_ascii=False, separators=(",", ":")).encode()
        # No redirects: a redirected POST would carry the routing key or payload to an
        # address nobody configured.
        async with session.post(request.url, data=data, headers=dict(request.headers),
                                allow_redirects=False) as response:
            text = await response.content.read(ERROR_BODY_LIMIT * 4)
            return Reply(status=response.status,
                         retry_after=response.headers.get("Retry-After"),
                         text=text.decode("utf-8", "replace"))
    return send
