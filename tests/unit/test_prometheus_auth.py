"""The operator's Prometheus client with credentials: a bearer token or basic auth, each read
from a file at every query (a rotated secret is used at once); an unreadable file or a
refusal is an unknown reading that says why, never a crash."""

from __future__ import annotations

import base64

import pytest
from aiohttp import web

from missioncontrol.cli import parser
from missioncontrol.signals.prometheus import Credentials, Prometheus
from unit.test_signals import FakePrometheus, series


async def test_the_bearer_token_is_sent_and_re_read_at_every_query(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    async with FakePrometheus() as prom:
        prom.results["up"] = {"resultType": "vector", "result": [series("1")]}
        client = Prometheus(prom.url, credentials=Credentials(bearer_token_file=str(token)))
        assert (await client.by_target("up", [("shop", "web")])).get(("shop", "web")) == 1.0
        token.write_text("rotated")
        await client.query("up")
    assert prom.authorization == ["Bearer first", "Bearer rotated"]


async def test_basic_auth_sends_the_user_and_the_password_from_its_file(tmp_path) -> None:
    password = tmp_path / "password"
    password.write_text("s3 cret\n")
    async with FakePrometheus() as prom:
        client = Prometheus(prom.url, credentials=Credentials(
            username="mission-control", password_file=str(password)))
        await client.query("up")
    (header,) = prom.authorization
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]).decode() == "mission-control:s3 cret"


async def test_without_credentials_no_authorization_is_sent() -> None:
    async with FakePrometheus() as prom:
        await Prometheus(prom.url).query("up")
    assert prom.authorization == [None]


async def test_an_unreadable_token_file_is_an_unknown_reading_and_asks_nothing(tmp_path) -> None:
    async with FakePrometheus() as prom:
        client = Prometheus(prom.url, credentials=Credentials(
            bearer_token_file=str(tmp_path / "missing")))
        answer = await client.by_target("up", [("shop", "web")])
    assert answer.get(("shop", "web")) is None
    assert answer.error.startswith("prometheus query failed: cannot read the Prometheus "
                                   "credentials"), answer.error
    assert prom.requests == []


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refusal_says_to_check_the_credentials(status) -> None:
    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=status, text="Unauthorized")

    app = web.Application()
    app.router.add_get("/api/v1/query", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        answer = await Prometheus(url).by_target("up", [("shop", "web")])
    finally:
        await runner.cleanup()
    assert answer.error == (f"prometheus query failed: HTTP {status} from /api/v1/query: check "
                            "the Prometheus credentials (--prometheus-*)")


def test_the_flags_take_one_kind_of_credentials() -> None:
    args = parser().parse_args(["run", "--prometheus-bearer-token-file", "/t"])
    assert args.prometheus_bearer_token_file == "/t"
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--prometheus-bearer-token-file", "/t",
                             "--prometheus-username", "u"])


async def test_tenant_headers_are_sent_from_values_and_from_a_file_re_read_each_query(
        tmp_path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("# from the Secret\nX-Scope-OrgID: team-a\n\nX-Extra: 1\n")
    async with FakePrometheus() as prom:
        client = Prometheus(prom.url, credentials=Credentials(
            extra_headers=(("X-Scope-OrgID", "literal"), ("X-Team", "shop")),
            headers_file=str(headers)))
        await client.query("up")
        headers.write_text("X-Scope-OrgID: team-b\n")
        await client.query("up")
    assert [(h.get("X-Scope-OrgID"), h.get("X-Team"), h.get("X-Extra"))
            for h in prom.headers] == [
        ("team-a", "shop", "1"), ("team-b", "shop", None)]


async def test_a_bad_headers_file_is_an_unknown_reading_that_does_not_show_its_values(
        tmp_path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("X-Scope-OrgID: team-a\nsecret-without-a-name\n")
    async with FakePrometheus() as prom:
        answer = await Prometheus(prom.url, credentials=Credentials(
            headers_file=str(headers))).by_target("up", [("shop", "web")])
    assert answer.get(("shop", "web")) is None
    assert "line 2 of the headers file is not `Name: value`" in answer.error
    assert "secret" not in answer.error and prom.requests == []


async def test_an_unreadable_ca_bundle_is_an_unknown_reading(tmp_path) -> None:
    answer = await Prometheus("https://127.0.0.1:9", ca_file=str(tmp_path / "none.pem")
                              ).by_target("up", [("shop", "web")])
    assert answer.get(("shop", "web")) is None
    assert answer.error.startswith("prometheus query failed: cannot read the Prometheus CA "
                                   "bundle"), answer.error


def test_the_header_flag_reads_name_and_value() -> None:
    from missioncontrol.signals.prometheus import header_flag
    assert header_flag("X-Scope-OrgID=team-a") == ("X-Scope-OrgID", "team-a")
    assert header_flag("X-Scope-OrgID: team-a") == ("X-Scope-OrgID", "team-a")
    with pytest.raises(ValueError, match="write NAME=VALUE"):
        header_flag("team-a")
    args = parser().parse_args(["run", "--prometheus-header", "X-Scope-OrgID=team-a",
                                "--prometheus-header", "X-A=b", "--prometheus-headers-file",
                                "/h", "--prometheus-ca-file", "/ca.pem"])
    assert (args.prometheus_header, args.prometheus_headers_file, args.prometheus_ca_file) == (
        ["X-Scope-OrgID=team-a", "X-A=b"], "/h", "/ca.pem")
