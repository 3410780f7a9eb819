"""The operator's Prometheus client against the test Prometheus as users run theirs: behind
a real proxy (tests/harness/authproxy.py) that requires a bearer token, one that requires a
tenant header (Mimir's and Cortex's X-Scope-OrgID), one that serves HTTPS with a CA of its
own; and a query too long for a URL, sent as a POST. With what the proxy needs, the query is
answered; without it, the reading is unknown and says why (never healthy, never failing)."""

from __future__ import annotations

import ssl

import pytest

from harness.authproxy import AuthProxy
from missioncontrol import tls
from missioncontrol.signals.prometheus import Credentials, Prometheus

pytestmark = pytest.mark.cluster

TOKEN, TENANT = "proxy-token-1", "team-a"
TARGET = [("shop", "web")]


@pytest.fixture(scope="module")
def bearer_proxy(env):
    proxy = AuthProxy(env.prometheus_url, "Authorization", f"Bearer {TOKEN}").start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def tenant_proxy(env):
    proxy = AuthProxy(env.prometheus_url, "X-Scope-OrgID", TENANT).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def tls_proxy(env, tmp_path_factory):
    """HTTPS with a certificate of a CA of its own (and a tenant header to pass)."""
    where = tmp_path_factory.mktemp("proxy-tls")
    ca = tls.make_ca(where, "prometheus-proxy-ca")
    served = tls.issue(ca, where, "proxy", subject=tls.Subject("prometheus-proxy",
                                                                 hosts=("127.0.0.1",)))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(served.cert, served.key)
    proxy = AuthProxy(env.prometheus_url, "X-Scope-OrgID", TENANT, tls=context).start()
    proxy.ca_file = str(ca.cert)
    yield proxy
    proxy.stop()


def refused(answer, *words: str) -> None:
    assert answer.get(TARGET[0]) is None, "a refused query must never read as a value"
    for word in words:
        assert word in answer.error, answer.error


async def test_behind_a_bearer_token_proxy_it_is_answered_with_the_token_only(
        bearer_proxy, tmp_path):
    refused(await Prometheus(bearer_proxy.url).by_target("vector(1)", TARGET),
            "HTTP 401", "check the Prometheus credentials")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    client = Prometheus(bearer_proxy.url, credentials=Credentials(bearer_token_file=str(token)))
    answer = await client.by_target("vector(1)", TARGET)
    assert answer.get(TARGET[0]) == 1.0, answer.error
    token.write_text("someone-elses-token")   # re-read at every query: a rotation applies
    refused(await client.by_target("vector(1)", TARGET), "HTTP 401")


async def test_behind_a_tenant_proxy_it_is_answered_with_the_tenant_header(
        tenant_proxy, tmp_path):
    refused(await Prometheus(tenant_proxy.url).by_target("vector(1)", TARGET), "HTTP 401")
    headers = tmp_path / "headers"
    headers.write_text(f"X-Scope-OrgID: {TENANT}\n")
    client = Prometheus(tenant_proxy.url, credentials=Credentials(headers_file=str(headers)))
    answer = await client.by_target("vector(1)", TARGET)
    assert answer.get(TARGET[0]) == 1.0, answer.error
    assert await client.parse("sum(rate(x[5m]))") is None   # the parser is reached too
    # The same header given as a value, not a file (a tenant id is no secret).
    literal = Prometheus(tenant_proxy.url, credentials=Credentials(
        extra_headers=(("X-Scope-OrgID", TENANT),)))
    assert (await literal.by_target("vector(1)", TARGET)).get(TARGET[0]) == 1.0
    wrong = Prometheus(tenant_proxy.url, credentials=Credentials(
        extra_headers=(("X-Scope-OrgID", "team-b"),)))
    refused(await wrong.by_target("vector(1)", TARGET), "HTTP 401")


async def test_tls_is_verified_against_the_ca_bundle_it_is_given(tls_proxy):
    tenant = Credentials(extra_headers=(("X-Scope-OrgID", TENANT),))
    # The system's CAs do not know this proxy's: refused, never read as a value.
    refused(await Prometheus(tls_proxy.url, credentials=tenant).by_target("vector(1)", TARGET),
            "certificate verify failed")
    client = Prometheus(tls_proxy.url, credentials=tenant, ca_file=tls_proxy.ca_file)
    answer = await client.by_target("vector(1)", TARGET)
    assert answer.get(TARGET[0]) == 1.0, answer.error


async def test_a_query_too_long_for_a_url_goes_as_a_post(tenant_proxy):
    """The per-policy regex alternation grows with the number of targets."""
    targets = [("shop", f"deployment-with-a-long-name-{i:04d}") for i in range(400)]
    # One series for one of the targets, kept only if Prometheus read the whole alternation.
    template = ('label_replace(label_replace(vector(7), "namespace", "shop", "", ""), '
                '"deployment", "deployment-with-a-long-name-0399", "", "") '
                'and on() absent(no_such_metric{deployment=~"{{ .name }}"})')
    client = Prometheus(tenant_proxy.url, credentials=Credentials(
        extra_headers=(("X-Scope-OrgID", TENANT),)))
    before = len(tenant_proxy.seen)
    answer = await client.by_target(template, targets)
    assert answer.get(("shop", "deployment-with-a-long-name-0399")) == 7.0, answer.error
    (request,) = tenant_proxy.seen[before:]
    assert request.method == "POST" and request.query_length > 8000, request
    short = await client.by_target("vector(1)", TARGET)
    assert short.get(TARGET[0]) == 1.0
    assert tenant_proxy.seen[-1].method == "GET"
