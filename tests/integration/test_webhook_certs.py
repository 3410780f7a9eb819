"""Replicas share the webhook's certificate through a Secret: the first to start makes it,
the others (and every restart) read the same one, even when they start at the same moment."""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from missioncontrol.kube import Kube
from missioncontrol.webhook import WebhookOptions, shared_certificates

pytestmark = pytest.mark.cluster


def test_replicas_starting_together_serve_one_certificate(env, namespace):
    options = WebhookOptions(secret=f"{namespace}/webhook-tls",
                             service="mission-control/mission-control-webhook")
    kube = Kube(env.api)

    async def two_replicas():
        return await asyncio.gather(shared_certificates(kube, options),
                                    shared_certificates(kube, options))

    first, second = asyncio.run(two_replicas())
    restarted = first
    try:
        assert first.ca == second.ca
        assert Path(first.certfile).read_bytes() == Path(second.certfile).read_bytes()
        restarted = asyncio.run(shared_certificates(kube, options))
        assert restarted.ca == first.ca
        secret = kube.core.read_namespaced_secret("webhook-tls", namespace)
        assert secret.type == "kubernetes.io/tls"
        assert base64.b64decode(secret.data["ca.crt"]) == first.ca
        cert = x509.load_pem_x509_certificate(Path(first.certfile).read_bytes())
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert "mission-control-webhook.mission-control.svc" in names
    finally:
        for certs in (first, second, restarted):
            shutil.rmtree(certs.directory, ignore_errors=True)
