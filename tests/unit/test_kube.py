"""The Kubernetes adapter's handling of an API server outage: which failures are an outage,
the retry delays, one log line per outage, a wait cut short when it ends, deadlines and the
adapter's own thread pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import pytest
import urllib3
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from missioncontrol.kube import (
    REQUEST_TIMEOUT,
    RETRIES,
    WORKERS,
    Backoff,
    Health,
    Kube,
    Missed,
    Unavailable,
    busy,
    load_client,
    transient,
    unreachable,
)


def refused() -> urllib3.exceptions.MaxRetryError:
    cause = urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return urllib3.exceptions.MaxRetryError(None, "/api", cause)


# -- which failures are an outage --------------------------------------------------------------
@pytest.mark.parametrize(("exc", "reason"), [
    (refused(), "connection refused"),
    (urllib3.exceptions.MaxRetryError(None, "/api", urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))),
     "connection reset"),
    (urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."), "timed out"),
    (urllib3.exceptions.ConnectTimeoutError(None, "timed out"), "timed out"),
    (urllib3.exceptions.ProtocolError("Connection aborted.", "RemoteDisconnected"),
     "connection dropped"),
    (ApiException(status=0, reason="SSLError\n[SSL: WRONG_VERSION_NUMBER] wrong version"),
     "TLS: [SSL: WRONG_VERSION_NUMBER] wrong version"),
])
def test_no_answer_is_an_outage(exc: Exception, reason: str) -> None:
    assert unreachable(exc) == reason
    assert transient(exc)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_not_now_answers_are_transient(status: int) -> None:
    exc = ApiException(status=status, reason="Busy")
    assert unreachable(exc) is None
    assert busy(exc) == f"API {status} Busy"
    assert transient(exc)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_other_answers_are_not(status: int) -> None:
    exc = ApiException(status=status, reason="No")
    assert not transient(exc)


def test_bugs_are_not_outages() -> None:
    assert not transient(KeyError("spec"))
    assert not transient(ApiException(status=0, reason="Cannot prepare a request message"))


# -- retry delays ------------------------------------------------------------------------------
def test_backoff_doubles_from_half_a_second_to_five() -> None:
    backoff = Backoff(random=lambda: 0.5)   # the middle of the jitter: no spread
    assert [backoff.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_jitter_spreads_and_never_passes_the_cap() -> None:
    low, high = Backoff(random=lambda: 0.0), Backoff(random=lambda: 1.0)
    assert [low.next() for _ in range(5)] == pytest.approx([0.4, 0.8, 1.6, 3.2, 4.0])
    assert [high.next() for _ in range(5)] == pytest.approx([0.6, 1.2, 2.4, 4.8, 5.0])


# -- one warning per outage ----------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_warning_when_it_stops_and_one_with_its_duration_when_it_answers(caplog) -> None:
    clock = Clock()
    health = Health(clock=clock)
    with caplog.at_level(logging.INFO, logger="missioncontrol.kube"):
        assert health.unreachable("connection refused") is True
        clock.now += 3
        assert health.unreachable("connection refused") is False   # the same outage
        assert health.down and health.seconds_since_success() == 3
        clock.now += 9.5
        health.succeeded()
        health.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Kubernetes API server not answering (connection refused): retrying until it does",
        "Kubernetes API server answering again after 12.5 s (connection refused)"]
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in caplog.records)
    assert not health.down and health.seconds_since_success() == 0 and health.outages == 1


def test_an_answer_to_a_request_sent_before_the_outage_does_not_end_it(caplog) -> None:
    # A stopping API server drains what it was already serving: one of those answers,
    # arriving after another request found it gone, is no sign it is back.
    clock = Clock()
    health = Health(clock=clock)
    with caplog.at_level(logging.INFO, logger="missioncontrol.kube"):
        sent_before = clock.now
        clock.now += 1
        health.unreachable("connection reset")
        clock.now += 0.5
        health.succeeded(sent=sent_before)
        health.answered(sent=sent_before)
        assert health.down and health.outages == 1
        assert health.seconds_since_success() == 0   # an answer all the same
        clock.now += 20
        health.succeeded(sent=clock.now)
    assert [r.getMessage() for r in caplog.records] == [
        "Kubernetes API server not answering (connection reset): retrying until it does",
        "Kubernetes API server answering again after 20.5 s (connection reset)"]


async def test_a_pause_ends_when_the_outage_does() -> None:
    health = Health()
    health.unreachable("connection refused")
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, health.answered)
    started = loop.time()
    assert await health.pause(10) is True
    assert loop.time() - started < 1


async def test_a_pause_without_an_outage_waits_its_delay() -> None:
    health = Health()
    asyncio.get_running_loop().call_later(0.01, health.answered)   # nothing to end
    started = asyncio.get_running_loop().time()
    assert await health.pause(0.2) is False
    assert asyncio.get_running_loop().time() - started >= 0.19


class Stopped:
    """kopf's DaemonStopped, as far as a pause uses it."""

    def __init__(self) -> None:
        self.flag = asyncio.Event()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 - kopf's signature
        try:
            await asyncio.wait_for(self.flag.wait(), timeout)
        except TimeoutError:
            pass


async def test_a_pause_ends_when_the_daemon_is_stopped() -> None:
    health, stopped = Health(), Stopped()
    health.unreachable("connection refused")
    asyncio.get_running_loop().call_later(0.05, stopped.flag.set)
    started = asyncio.get_running_loop().time()
    assert await health.pause(10, stopped) is False
    assert asyncio.get_running_loop().time() - started < 1


def test_missed_passes_are_told_once() -> None:
    missed = Missed()
    assert missed.told(5.0, "guard passes skipped") is None
    missed.add(10.0, Unavailable("connection refused", answered=False))
    missed.add(12.0, Unavailable("connection refused", answered=False))
    assert missed.told(22.5, "guard passes skipped") == (
        "guard passes skipped for 12.5 s (2 tries): the Kubernetes API server was unavailable "
        "(connection refused)")
    assert missed.told(23.0, "guard passes skipped") is None


# -- the adapter -------------------------------------------------------------------------------
def kube() -> Kube:
    return Kube(client.ApiClient(client.Configuration(host="https://127.0.0.1:9")), workers=2)


async def test_every_call_has_a_deadline_and_runs_in_its_own_pool() -> None:
    k = kube()
    seen = {}

    def fn(*, _request_timeout):
        seen["timeout"] = _request_timeout
        seen["thread"] = threading.current_thread().name
        return "ok"

    assert await k.call(fn) == "ok"
    assert seen["timeout"] == REQUEST_TIMEOUT
    assert seen["thread"].startswith("kube")
    assert k.executor._max_workers == 2


async def test_a_busy_default_executor_does_not_hold_kubernetes_calls() -> None:
    """Hung blocking work elsewhere (a Prometheus query that never answers, say) fills the
    default executor; Kubernetes calls have their own threads."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    release = threading.Event()
    hung = loop.run_in_executor(None, release.wait)
    try:
        assert await asyncio.wait_for(kube().call(lambda **_: "ok"), 2) == "ok"
    finally:
        release.set()
        await hung


def test_the_client_reconnects_once_and_never_resends(tmp_path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    configuration = load_client(str(path)).configuration
    assert configuration.retries is RETRIES
    assert (RETRIES.connect, RETRIES.read, RETRIES.status) == (1, 0, 0)
    assert configuration.connection_pool_maxsize == WORKERS


async def test_a_refused_call_raises_unavailable_and_starts_an_outage() -> None:
    k = kube()

    def fails(**_):
        raise refused()

    with pytest.raises(Unavailable) as caught:
        await k.call(fails)
    assert caught.value.answered is False and caught.value.reason == "connection refused"
    assert k.health.down
    await k.call(lambda **_: "ok")   # an answer ends it, and the probe with it
    assert not k.health.down
    await asyncio.wait_for(k._probe, 2)


async def test_a_busy_answer_is_unavailable_and_does_not_end_the_outage() -> None:
    k = kube()
    k.health.unreachable("connection refused")

    def not_now(**_):
        raise ApiException(status=503, reason="Service Unavailable")

    with pytest.raises(Unavailable) as caught:
        await k.call(not_now)
    assert caught.value.answered is True
    assert k.health.down   # a 503 is not serving yet: /readyz or a real answer ends it

    def missing(**_):
        raise ApiException(status=404, reason="Not Found")

    with pytest.raises(ApiException):
        await k.call(missing)
    assert not k.health.down   # it answered


async def test_other_api_errors_stay_api_errors_typed_where_callers_need_it() -> None:
    from missioncontrol.kube import Conflict, NotFound
    k = kube()

    def answering(status: int):
        def call(**_):
            raise ApiException(status=status, reason="no")
        return call

    with pytest.raises(NotFound):
        await k.call(answering(404))
    with pytest.raises(Conflict):
        await k.call(answering(409))
    with pytest.raises(ApiException) as caught:
        await k.call(answering(403))
    assert type(caught.value) is ApiException and caught.value.status == 403


async def test_patiently_retries_until_the_api_takes_it() -> None:
    k = kube()
    attempts = []

    async def attempt() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Unavailable("connection refused", answered=False)
        return "written"

    missed = Missed()
    assert await k.patiently(attempt, backoff=Backoff(first=0.01, cap=0.02),
                             missed=lambda exc: missed.add(0.0, exc)) == "written"
    assert len(attempts) == 3 and missed.count == 2


# -- typed answers ------------------------------------------------------------------------------
def test_a_404_and_a_409_come_back_typed_and_still_api_exceptions():
    from missioncontrol.kube import Conflict, NotFound, typed
    missing = typed(ApiException(status=404, reason="Not Found"))
    raced = typed(ApiException(status=409, reason="Conflict"))
    refused = ApiException(status=403, reason="Forbidden")
    assert isinstance(missing, NotFound) and isinstance(missing, ApiException)
    assert (missing.status, missing.reason) == (404, "Not Found")
    assert isinstance(raced, Conflict) and raced.status == 409
    assert typed(refused) is refused
    assert typed(missing) is missing
