"""The operator's Prometheus client against the real Prometheus with basic auth switched on
(its --web.config.file): refused without credentials, answered with them; the chart's
`prometheus.basicAuth` passes exactly these flags."""

from __future__ import annotations

import pytest

from harness.prometheus import Prometheus as PrometheusServer
from missioncontrol.signals.prometheus import Credentials, Prometheus

pytestmark = pytest.mark.cluster

USER, PASSWORD = "mission-control", "s3cret"
# bcrypt of PASSWORD at cost 4 (Prometheus checks it at every request: the lowest cost keeps
# the test fast); made with Python's crypt.crypt and METHOD_BLOWFISH.
HASH = "$2b$04$sGrhp3HtXp8yRWajbwhMIOjAm/TashAtKBzjCVm4sU1UyAlahm6qS"


@pytest.fixture(scope="module")
def guarded_prometheus(tmp_path_factory):
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus-auth"), "127.0.0.1:9",
                              basic_auth_users={USER: HASH}, login=(USER, PASSWORD)).start()
    yield server
    server.stop()


async def test_without_credentials_the_reading_is_unknown_and_says_why(guarded_prometheus):
    answer = await Prometheus(guarded_prometheus.url).by_target("vector(1)", [("shop", "web")])
    assert answer.get(("shop", "web")) is None
    assert "HTTP 401" in answer.error and "credentials" in answer.error, answer.error


async def test_with_basic_auth_the_query_is_answered(guarded_prometheus, tmp_path):
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")   # a Secret's value often ends in a newline
    client = Prometheus(guarded_prometheus.url, credentials=Credentials(
        username=USER, password_file=str(password)))
    answer = await client.by_target("vector(1)", [("shop", "web")])
    assert answer.get(("shop", "web")) == 1.0, answer.error
    # Prometheus's own parser, which a runbook's Ready condition asks, is reached too.
    assert await client.parse("sum(rate(x[5m]))") is None
    assert await client.parse("sum(") is not None


async def test_a_wrong_password_is_refused(guarded_prometheus, tmp_path):
    password = tmp_path / "password"
    password.write_text("wrong")
    client = Prometheus(guarded_prometheus.url, credentials=Credentials(
        username=USER, password_file=str(password)))
    answer = await client.by_target("vector(1)", [("shop", "web")])
    assert answer.get(("shop", "web")) is None and "HTTP 401" in answer.error, answer.error
