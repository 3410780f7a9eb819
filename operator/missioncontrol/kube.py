"""The Kubernetes adapter: the blocking `kubernetes` client, called off the event loop.

Everything the operator reads or writes in the cluster goes through `Kube`. Each call runs in
a thread of Kube's own bounded pool (never the default executor, which other blocking work
shares), with a deadline (`_request_timeout`), and its failure is classified here, once: an
API server that does not answer (refused, reset, timed out, TLS) or answers that it cannot
serve now (429, 5xx) raises `Unavailable`, a normal condition that callers wait out (see
`Backoff` and `Health.pause`); an object that is not there raises `NotFound`, a write that lost
a race (a stale resourceVersion, a name taken) raises `Conflict`; both are `ApiException`s, as
is every other API error, so no caller compares status codes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import http.client
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import GROUP, VERSION

PLURALS = {"Runbook": "runbooks", "IncidentPolicy": "incidentpolicies",
           "Incident": "incidents", "ServiceOwnership": "serviceownerships"}
# (connect, read) seconds for one request; with the one reconnect below, a call that gets no
# answer ends within 2 x 5 s + 30 s.
REQUEST_TIMEOUT = (5.0, 30.0)
# One immediate reconnect (a pooled connection the API server closed, say), never a resend of
# a request that reached it: retrying is the caller's, with its backoff.
RETRIES = urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0,
                        backoff_factor=0, raise_on_status=False)
WORKERS = 8
PROBE_EVERY = 0.5   # seconds between readiness probes while the API server does not answer

T = TypeVar("T")
log = logging.getLogger(__name__)

__all__ = ["ApiException", "Backoff", "Conflict", "Health", "Kube", "Missed", "NotFound",
           "Unavailable", "load_client", "transient"]


class Unavailable(Exception):
    """The API server did not answer (`answered` False), or answered 429/5xx: try again
    later; what was asked is neither done nor refused."""

    def __init__(self, reason: str, *, answered: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answered = answered


class NotFound(ApiException):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiException):
    """409: another writer got there first (a stale resourceVersion, or the name is taken)."""


class Invalid(ApiException):
    """422: the request was refused as invalid (a JSON patch whose `test` failed among them)."""


TYPED = {404: NotFound, 409: Conflict, 422: Invalid}


def typed(exc: ApiException) -> ApiException:
    """The same answer as its typed error, when it has one."""
    kind = TYPED.get(exc.status)
    if kind is None or isinstance(exc, kind):
        return exc
    new = kind(status=exc.status, reason=exc.reason)
    new.body, new.headers = exc.body, exc.headers
    return new


def unreachable(exc: BaseException) -> str | None:
    """Why the API server gave no answer at all (a short reason for the log), or None."""
    if isinstance(exc, ApiException):
        # The client turns TLS failures into status 0 ("SSLError\n..."); any status is an answer.
        if exc.status == 0 and "SSL" in str(exc.reason).split("\n", 1)[0]:
            return f"TLS: {str(exc.reason).splitlines()[-1]}"[:200]
        return None
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc)
    if "Connection refused" in text or isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if "Connection reset" in text or isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS: {text}"[:200]
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.ProtocolError | http.client.HTTPException):
        return "connection dropped"
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return f"{type(exc).__name__}: {text}"[:200]
    return None


def busy(exc: BaseException) -> str | None:
    """Why an answer means "not now" (429 Too Many Requests, 5xx), or None."""
    if isinstance(exc, ApiException) and exc.status and (exc.status == 429
                                                         or 500 <= exc.status < 600):
        return f"API {exc.status} {exc.reason}"
    return None


def transient(exc: BaseException) -> bool:
    """Is this an API server outage (to wait out) rather than an answer to act on?"""
    return isinstance(exc, Unavailable) or bool(unreachable(exc) or busy(exc))


@dataclass
class Backoff:
    """Delays between retries: `first`, doubling up to `cap`, each spread by +-`jitter`
    (a fraction) so that many retrying loops do not hit a returning API server together."""
    first: float = 0.5
    cap: float = 5.0
    jitter: float = 0.2
    random: Callable[[], float] = random.random
    _next: float | None = None

    def next(self) -> float:
        base = self.first if self._next is None else self._next
        self._next = min(self.cap, base * 2)
        return min(self.cap, base * (1 - self.jitter + 2 * self.jitter * self.random()))

    def reset(self) -> None:
        self._next = None


@dataclass
class Health:
    """Is the API server answering? One WARNING when it stops (the outage), one when it
    answers again (with how long it was away), whatever the number of loops that noticed;
    `pause` lets a loop wait for its next try, cut short the moment the outage ends."""
    clock: Callable[[], float] = time.monotonic
    logger: logging.Logger = log
    last_success: float = field(default=0.0)
    down_since: float | None = None
    reason: str = ""
    outages: int = 0
    _back: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.last_success = self.last_success or self.clock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def seconds_since_success(self) -> float:
        return max(0.0, self.clock() - self.last_success)

    def succeeded(self, *, sent: float | None = None) -> None:
        self.last_success = self.clock()
        self.answered(sent=sent)

    def answered(self, *, sent: float | None = None) -> None:
        """The API server answered a request `sent` then (monotonic; None: just now). An
        answer to a request sent before the outage began (one it was still draining as it
        stopped) says nothing of its return, and ends nothing."""
        if self.down_since is None or (sent is not None and sent < self.down_since):
            return
        away = self.clock() - self.down_since
        self.logger.warning("Kubernetes API server answering again after %.1f s (%s)",
                            away, self.reason)
        self.down_since = None
        back, self._back = self._back, asyncio.Event()
        back.set()

    def unreachable(self, reason: str) -> bool:
        """Record a call that got no answer; True if this starts an outage."""
        if self.down_since is not None:
            return False
        self.down_since, self.reason = self.clock(), reason
        self.outages += 1
        self.logger.warning("Kubernetes API server not answering (%s): retrying until it "
                            "does", reason)
        return True

    async def pause(self, delay: float, stopped: Any = None) -> bool:
        """Wait `delay` seconds, or less: until the outage going on now ends (then True:
        start the backoff over), or `stopped` (kopf's daemon flag) is set."""
        waits = [asyncio.ensure_future(stopped.wait(delay) if stopped is not None
                                       else asyncio.sleep(delay))]
        back = self._back if self.down_since is not None else None
        if back is not None:
            waits.append(asyncio.ensure_future(back.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return back is not None and back.is_set()


@dataclass
class Missed:
    """The passes one loop (a policy's guard, an incident's rounds) skipped because the API
    server was unavailable: told once, on the object, when it is back."""
    count: int = 0
    since: float | None = None
    reason: str = ""

    def add(self, now: float, exc: Unavailable) -> None:
        self.count += 1
        self.since = self.since if self.since is not None else now
        self.reason = exc.reason

    def told(self, now: float, what: str) -> str | None:
        """The message for the object's Event (None if nothing was missed); starts over."""
        if not self.count:
            return None
        tries = f"{self.count} {'try' if self.count == 1 else 'tries'}"
        message = (f"{what} for {now - (self.since or now):.1f} s ({tries}): the Kubernetes "
                   f"API server was unavailable ({self.reason})")
        self.count, self.since, self.reason = 0, None, ""
        return message


def load_client(kubeconfig: str | None = None, *,
                context: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (its current
    context, or `context`)."""
    configuration = client.Configuration()
    if kubeconfig or context:
        config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.retries = RETRIES
    configuration.connection_pool_maxsize = WORKERS
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient, *, workers: int = WORKERS,
                 timeout: tuple[float, float] = REQUEST_TIMEOUT,
                 health: Health | None = None) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.timeout = timeout
        self.health = health or Health()
        # Our own bounded pool: a slow API server holds at most `workers` threads, and
        # nothing else waiting for a thread (Prometheus queries, certificates) waits on it.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="kube")
        self._probe: asyncio.Task | None = None

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.timeout)
        loop = asyncio.get_running_loop()
        sent = self.health.clock()
        try:
            result = await loop.run_in_executor(self.executor,
                                                functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            self._raise_classified(exc, sent=sent)
            raise
        self.health.succeeded(sent=sent)
        return result

    def _raise_classified(self, exc: Exception, *, sent: float) -> None:
        reason = unreachable(exc)
        if reason is not None:
            if self.health.unreachable(reason):
                self._start_probe()
            raise Unavailable(reason, answered=False) from exc
        reason = busy(exc)
        if reason is not None:
            # Neither ends an outage nor starts one: a starting API server answers 503
            # ("not all HTTP paths installed yet") before its /readyz says it serves.
            raise Unavailable(reason, answered=True) from exc
        if isinstance(exc, ApiException):
            self.health.answered(sent=sent)   # a refusal (404, 409...) is an answer
            answer = typed(exc)
            if answer is not exc:
                raise answer from exc

    async def json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The raw JSON of a read: plain dicts, no model classes (cheaper, and exact)."""
        return await self.call(_raw, fn, *args, **kwargs)

    async def patiently(self, attempt: Callable[[], Awaitable[T]], *,
                        backoff: Backoff | None = None,
                        missed: Callable[[Unavailable], None] | None = None) -> T:
        """`attempt()` until the API server takes it: for a write that must land (a step's
        record, a page about to go out), however long the outage. `missed` hears of each
        failed try."""
        backoff = backoff or Backoff()
        while True:
            try:
                return await attempt()
            except Unavailable as exc:
                if missed is not None:
                    missed(exc)
                if await self.health.pause(backoff.next()):
                    backoff.reset()

    # -- while it does not answer -----------------------------------------------------------
    def _start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._wait_for_ready(),
                                                                 name="kube-probe")

    async def _wait_for_ready(self) -> None:
        """One cheap GET /readyz every PROBE_EVERY seconds while the outage lasts, so the
        loops waiting in `Health.pause` resume as soon as the API server serves again
        rather than at the end of their backoff."""
        loop = asyncio.get_running_loop()
        while self.health.down:
            await asyncio.sleep(PROBE_EVERY)
            with contextlib.suppress(Exception):   # not ready yet: probe again
                if await loop.run_in_executor(self.executor, self._ready):
                    self.health.answered()

    def _ready(self) -> bool:
        method, url, headers, _, _ = self.api.param_serialize(
            method="GET", resource_path="/readyz", auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params=headers,
                                     _request_timeout=(2.0, 2.0))
        response.read()
        return response.status == 200

    # -- our own kinds ----------------------------------------------------------------------
    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return await self.call(self.custom.get_namespaced_custom_object, GROUP, VERSION,
                                   namespace, PLURALS[kind], name)
        except NotFound:
            return None

    async def list(self, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict]:
        kwargs = {"label_selector": label_selector} if label_selector else {}
        if namespace is None:
            result = await self.call(self.custom.list_cluster_custom_object, GROUP, VERSION,
                                     PLURALS[kind], **kwargs)
        else:
            result = await self.call(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                                     namespace, PLURALS[kind], **kwargs)
        return result.get("items", [])

    async def create(self, kind: str, namespace: str, body: dict) -> dict:
        return await self.call(self.custom.create_namespaced_custom_object, GROUP, VERSION,
                               namespace, PLURALS[kind], body)

    async def patch(self, kind: str, namespace: str, name: str, body: dict) -> dict:
        return await self.call(self.custom.patch_namespaced_custom_object, GROUP, VERSION,
                               namespace, PLURALS[kind], name, body)

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        return await self.call(self.custom.patch_namespaced_custom_object_status, GROUP,
                               VERSION, namespace, PLURALS[kind], name, {"status": status})


def _raw(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    import json

    response = fn(*args, _preload_content=False, **kwargs)
    return json.loads(response.data)
