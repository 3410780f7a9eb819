"""Alertmanager's matchers and silences as the operator reads them: equal, regex (anchored),
negative; a missing label is ""; an expired or pending silence covers nothing; Alertmanager
unreachable or hung is "not silenced", said, within the deadline."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from harness.silent import SilentServer
from missioncontrol import guard, silences
from missioncontrol import incident as inc
from missioncontrol.matchers import Matcher, MatcherError

T0 = 1_800_000_000.0
TARGET = {"namespace": "shop", "deployment": "checkout", "runbook": "RB-001"}


def m(name: str, value: str, op: str = "=") -> Matcher:
    return Matcher.make(name, value, is_regex="~" in op, is_equal=not op.startswith("!"))


@pytest.mark.parametrize(("matcher", "labels", "hit"), [
    (m("namespace", "shop"), TARGET, True),
    (m("namespace", "sho"), TARGET, False),
    (m("namespace", "shop", "!="), TARGET, False),
    (m("namespace", "pay", "!="), TARGET, True),
    (m("deployment", "check.*"), TARGET, False),          # = is never a regex
    (m("deployment", "check.*", "=~"), TARGET, True),
    (m("deployment", "check", "=~"), TARGET, False),     # anchored: the whole value
    (m("deployment", "cart|checkout", "=~"), TARGET, True),
    (m("deployment", "cart|checkout", "!~"), TARGET, False),
    (m("deployment", "cart", "!~"), TARGET, True),
    (m("team", ""), TARGET, True),                        # missing label is ""
    (m("team", "", "!="), TARGET, False),
    (m("team", ".+", "!~"), TARGET, True),
    (m("team", ".*", "=~"), TARGET, True),
    (m("team", "shop"), TARGET, False),
])
def test_matchers_as_alertmanager_defines_them(matcher, labels, hit) -> None:
    assert matcher.matches(labels) is hit


def test_a_matcher_reads_alertmanagers_api_shape() -> None:
    assert str(Matcher.from_api({"name": "a", "value": "b.*", "isRegex": True,
                                 "isEqual": False})) == 'a!~"b.*"'
    # Before Alertmanager 0.22 there was no isEqual: absent means equal.
    assert Matcher.from_api({"name": "a", "value": "b", "isRegex": False}).is_equal
    with pytest.raises(MatcherError):
        Matcher.from_api({"name": "a", "value": "(", "isRegex": True})
    with pytest.raises(MatcherError):
        Matcher.from_api({"name": "a"})


def silence(*matchers: Matcher, state: str = "active", ends: float = T0 + 600,
            sid: str = "s1") -> silences.Silence:
    return silences.Silence(sid, matchers, "ana", "planned", ends, T0 - 60, state)


def test_a_silence_covers_a_target_when_every_matcher_matches() -> None:
    both = silence(m("namespace", "shop"), m("deployment", "checkout"))
    other = silence(m("namespace", "shop"), m("deployment", "cart"))
    assert silences.covering([both, other], [TARGET], T0) == both
    assert silences.covering([other], [TARGET], T0) is None
    assert silences.covering([silence()], [TARGET], T0) is None   # no matchers: nothing


def test_only_an_active_silence_counts() -> None:
    covers = (m("namespace", "shop"),)
    assert silences.covering([silence(*covers, state="expired")], [TARGET], T0) is None
    assert silences.covering([silence(*covers, state="pending")], [TARGET], T0) is None
    assert silences.covering([silence(*covers, ends=T0 - 1)], [TARGET], T0) is None
    assert silences.covering([silence(*covers)], [TARGET], T0) is not None


def test_a_silence_of_the_firing_alert_covers_its_incident() -> None:
    alert_labels = {"alertname": "KubeDeploymentReplicasMismatch", "severity": "critical",
                    **TARGET}
    of_the_alert = silence(m("alertname", "KubeDeploymentReplicasMismatch"))
    assert silences.covering([of_the_alert], [TARGET], T0) is None
    assert silences.covering([of_the_alert], [TARGET, alert_labels], T0) == of_the_alert


def test_of_several_the_longest_lasting_is_named() -> None:
    short = silence(m("namespace", "shop"), sid="short", ends=T0 + 60)
    long = silence(m("namespace", "shop"), sid="long", ends=T0 + 3600)
    assert silences.covering([short, long], [TARGET], T0).id == "long"


def test_the_api_answer_is_read_and_an_unreadable_silence_left_out() -> None:
    read = silences.parse([
        {"id": "a1", "matchers": [{"name": "namespace", "value": "shop", "isRegex": False,
                                   "isEqual": True}],
         "createdBy": "ana", "comment": "failover", "startsAt": "2027-01-15T08:00:00Z",
         "endsAt": "2027-01-15T09:00:00Z", "status": {"state": "active"}},
        {"id": "broken", "matchers": [{"name": "x", "value": "(", "isRegex": True}]},
        {"matchers": []},
    ])
    assert [s.id for s in read] == ["a1"]
    assert read[0].created_by == "ana" and read[0].ends_at is not None
    with pytest.raises(ValueError):
        silences.parse({"not": "a list"})


async def _alertmanager(answer) -> TestServer:
    app = web.Application()
    app.router.add_get("/api/v2/silences", answer)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_the_lookup_finds_the_covering_silence() -> None:
    async def answer(_):
        return web.json_response([{
            "id": "abc", "createdBy": "ana", "comment": "planned",
            "matchers": [{"name": "deployment", "value": "check.*", "isRegex": True,
                          "isEqual": True}],
            "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
            "status": {"state": "active"}}])
    server = await _alertmanager(answer)
    try:
        found = await silences.lookup(str(server.make_url("/")), [TARGET], now=time.time())
    finally:
        await server.close()
    assert found.error == "" and found.silence is not None and found.silence.id == "abc"


async def test_alertmanager_refusing_is_not_silenced_and_said() -> None:
    async def answer(_):
        return web.Response(status=500, text="boom")
    server = await _alertmanager(answer)
    try:
        found = await silences.lookup(str(server.make_url("/")), [TARGET], now=T0)
    finally:
        await server.close()
    assert found.silence is None and "answered 500" in found.error


async def test_alertmanager_unreachable_is_not_silenced_and_said() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    found = await silences.lookup(f"http://127.0.0.1:{port}", [TARGET], now=T0)
    assert found.silence is None and "unreachable" in found.error


async def test_a_hung_alertmanager_is_given_up_at_the_deadline() -> None:
    with SilentServer() as silent:
        started = time.monotonic()
        found = await asyncio.wait_for(
            silences.lookup(silent.url, [TARGET], now=T0, deadline=1.0), timeout=10)
        took = time.monotonic() - started
    assert found.silence is None and "did not answer within 1s" in found.error
    assert took < 3.0


def test_the_incident_records_the_silence_or_why_none_was_seen() -> None:
    status = inc.IncidentStatus()
    found = silence(m("namespace", "shop"), sid="abc")
    noted = guard._silence_noted(status, silences.Lookup(silence=found), T0)
    assert noted.silence == inc.SilenceRecord("abc", "ana", "planned", T0 + 600,
                                              'namespace="shop"')
    assert noted.timeline[-1].type == "Silenced"
    assert "silence abc by ana" in noted.timeline[-1].message
    unknown = guard._silence_noted(status, silences.Lookup(error="Alertmanager x unreachable"),
                                   T0)
    assert unknown.silence is None
    assert unknown.timeline[-1].type == "SilencesUnknown"
    assert unknown.timeline[-1].message.startswith("not silenced: Alertmanager x unreachable")
    assert guard._silence_noted(status, silences.Lookup(), T0) == status
    assert guard._silence_noted(status, None, T0) == status
