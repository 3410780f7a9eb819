"""Renewal of the freeze webhook's certificate (webhookcerts.py), on a fake clock: when each
step happens, what the Secret holds after it, and that the trusted bundle never loses the CA of
a certificate that may still be served. Plus the served TLS context reloading in place."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
from aiohttp import web

from missioncontrol import tls
from missioncontrol.webhookcerts import (
    Keeper,
    Material,
    MemoryStore,
    Serving,
    Timing,
    apply,
    expires,
    from_secret,
    make,
    renew_at,
    step,
    to_secret,
)

HOSTS = ("localhost", "127.0.0.1")
TIMING = Timing(validity=30.0)   # backdated 3 s; renewal at 2/3 of 33 s; settle 2 s


NOW = 1_800_000_000.0


def fresh(now: float = NOW) -> tuple[bytes, bytes, bytes]:
    return make(HOSTS, TIMING.validity, now=now)


def fresh_material() -> Material:
    return apply("create", None, fresh(), now=NOW)


def test_timing_of_a_short_and_a_long_validity() -> None:
    assert (TIMING.reread, TIMING.settle) == (1.0, 2.0)
    month = Timing(validity=30 * 86400)
    assert (month.reread, month.settle) == (60.0, 120.0)


def test_a_new_certificate_is_kept_until_two_thirds_of_its_validity() -> None:
    material = fresh_material()
    start, end = tls.window(material.cert)
    assert end - start == pytest.approx(33, abs=1)
    assert renew_at(material.cert) == pytest.approx(start + 22, abs=1)
    assert step(None, now=start, timing=TIMING) == "create"
    assert step(material, now=start + 21, timing=TIMING) == "keep"
    assert step(material, now=renew_at(material.cert), timing=TIMING) == "stage"


def test_stage_trusts_the_new_ca_and_keeps_serving_the_old_certificate() -> None:
    material = fresh_material()
    at = renew_at(material.cert)
    staged = apply("stage", material, fresh(at), now=at)
    assert staged.cert == material.cert and staged.key == material.key
    assert staged.next_cert is not None and staged.staged_at == at
    old_ca, new_ca = tls.split_bundle(staged.bundle)
    assert old_ca == material.bundle
    # The staged certificate is signed by the new CA, the one added to the bundle.
    assert _issuer_verifies(new_ca, staged.next_cert)
    assert step(staged, now=at + TIMING.settle - 0.1, timing=TIMING) == "keep"
    assert step(staged, now=at + TIMING.settle, timing=TIMING) == "promote"


def test_promote_serves_the_new_certificate_and_keeps_the_old_ca_until_it_expires() -> None:
    material = fresh_material()
    at = renew_at(material.cert)
    staged = apply("stage", material, fresh(at), now=at)
    promoted = apply("promote", staged, None, now=at + TIMING.settle)
    assert promoted.cert == staged.next_cert and promoted.key == staged.next_key
    assert promoted.next_cert is None and promoted.staged_at is None
    assert tls.split_bundle(promoted.bundle) == tls.split_bundle(staged.bundle)
    # Once the old CA expires it is dropped (and nothing else).
    after = expires(material.cert) + 0.5
    assert step(promoted, now=after, timing=TIMING) == "prune"
    pruned = apply("prune", promoted, None, now=after)
    assert tls.split_bundle(pruned.bundle) == tls.split_bundle(staged.bundle)[1:]
    assert step(pruned, now=after, timing=TIMING) == "keep"


def test_an_expired_or_nearly_expired_certificate_is_replaced_not_trusted() -> None:
    material = fresh_material()
    end = expires(material.cert)
    assert step(material, now=end + 3600, timing=TIMING) == "replace"
    # Too close to the end for stage-then-promote to finish: replaced at once.
    assert step(material, now=end - TIMING.settle + 0.1, timing=TIMING) == "replace"
    replaced = apply("replace", material, fresh(end + 3600), now=end + 3600)
    assert replaced.cert != material.cert
    assert tls.split_bundle(replaced.bundle) == [tls.split_bundle(replaced.bundle)[-1]]
    # A staged certificate is trusted already: an expiring one is promoted instead.
    staged = apply("stage", material, fresh(renew_at(material.cert)),
                   now=renew_at(material.cert))
    assert step(staged, now=end - 0.5, timing=TIMING) == "promote"


def test_an_unreadable_secret_is_replaced() -> None:
    broken = from_secret({"metadata": {"name": "x"}, "data": {"tls.crt": "bm90IGEgY2VydA=="}})
    assert step(broken, now=0, timing=TIMING) == "replace"


def test_the_secret_round_trips() -> None:
    material = fresh_material()
    staged = apply("stage", material, fresh(), now=12.5)
    secret = to_secret(staged, namespace="ops", name="tls", version="42")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["resourceVersion"] == "42"
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key", "next.crt", "next.key"}
    assert from_secret(secret) == staged
    assert from_secret(to_secret(material, namespace="ops", name="tls", version=None)) == material


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_the_keeper_renews_in_two_steps_and_the_bundle_never_drops_a_served_ca() -> None:
    clock, trusted = Clock(), []
    serving = Serving()

    async def trust(bundle: bytes) -> None:
        trusted.append((clock.now, set(tls.split_bundle(bundle))))

    keeper = Keeper(MemoryStore(), serving, trust, HOSTS, TIMING, clock=clock)

    async def scenario() -> list[tuple[float, bytes]]:
        await keeper.round()
        served = []
        for _ in range(80):   # 80 s: more than two renewals
            await keeper.round()
            served.append((clock.now, serving.cert))
            # What is served is always signed by a CA the configuration was told to trust.
            assert any(_issuer_verifies(ca, serving.cert) for ca in trusted[-1][1])
            clock.now += 1.0
        return served

    try:
        served = asyncio.run(scenario())
    finally:
        serving.close()
    renewals = [(at, cert) for (at, cert), (_, before) in zip(served[1:], served[:-1], strict=True)
                if cert != before]
    assert len(renewals) >= 2, [at for at, _ in renewals]
    for at, cert in renewals:
        # Its CA was trusted `settle` before it was served ...
        ca = next(ca for _, bundle in trusted for ca in bundle if _issuer_verifies(ca, cert))
        since = min(t for t, bundle in trusted if ca in bundle)
        assert at - since >= TIMING.settle, (at, since)
        # ... and the CA of the certificate it replaced is still trusted after the switch.
        previous = next(c for t, c in reversed(served) if t < at)
        old_ca = next(ca for _, bundle in trusted for ca in bundle
                      if _issuer_verifies(ca, previous))
        assert all(old_ca in bundle for t, bundle in trusted if at <= t < expires(previous))


def test_a_reloaded_context_serves_the_new_certificate_from_the_next_connection() -> None:
    serving = Serving()
    first = fresh_material()
    second = apply("create", None, make(HOSTS, TIMING.validity), now=NOW)

    async def scenario() -> tuple[bytes, bytes]:
        serving.load(first)
        app = web.Application()
        async def ok(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_get("/", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=serving.context).start()
        try:
            before = await _peer_cert(port)
            serving.load(second)
            after = await _peer_cert(port)
        finally:
            await runner.cleanup()
        return before, after

    try:
        before, after = asyncio.run(scenario())
    finally:
        serving.close()
    assert before == ssl.PEM_cert_to_DER_cert(first.cert.decode())
    assert after == ssl.PEM_cert_to_DER_cert(second.cert.decode())


async def _peer_cert(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return der


def _issuer_verifies(ca_pem: bytes, cert_pem: bytes) -> bool:
    from cryptography import x509

    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure: not its issuer
        return False
    return True
