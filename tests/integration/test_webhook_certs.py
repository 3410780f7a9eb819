"""Replicas share the webhook's certificate through a Secret (webhookcerts.SecretStore): the
first to start makes it, the others (and every restart) read the same one, even when they
start at the same moment; a replica starting from a Secret whose certificate is expired
replaces it instead of serving it; the webhook configuration trusts what is served."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from cryptography import x509
from kubernetes import client

from missioncontrol import tls, webhook
from missioncontrol.kube import Kube
from missioncontrol.webhookcerts import (
    Keeper,
    SecretStore,
    Serving,
    Timing,
    apply,
    expires,
    make,
    to_secret,
)

pytestmark = pytest.mark.cluster


def _replica(kube: Kube, options: webhook.WebhookOptions, timing: Timing) -> Keeper:
    store = SecretStore(kube, options.secret)

    async def trust(bundle: bytes) -> None:
        await webhook.trust(kube, options, bundle, now=time.time(), keep_others=True)

    return Keeper(store, Serving(), trust, webhook.hosts(options), timing)


@pytest.fixture
def options(env, namespace):
    options = webhook.WebhookOptions(secret=f"{namespace}/webhook-tls",
                                     service="mission-control/mission-control-webhook",
                                     config_name=f"freeze-{namespace}", namespaces=(namespace,))
    yield options
    try:
        client.AdmissionregistrationV1Api(env.api).delete_validating_webhook_configuration(
            options.config_name)
    except client.ApiException:
        pass


def test_replicas_starting_together_serve_one_certificate(env, namespace, options):
    kube = Kube(env.api)
    timing = Timing(validity=3600)
    replicas = [_replica(kube, options, timing) for _ in range(3)]

    async def start_together():
        return await asyncio.gather(*(r.round() for r in replicas))

    try:
        materials = asyncio.run(start_together())
        assert len({m.cert for m in materials}) == 1
        assert len({r.serving.cert for r in replicas}) == 1
        restarted = _replica(kube, options, timing)
        assert asyncio.run(restarted.round()).cert == materials[0].cert
        replicas.append(restarted)
        secret = kube.core.read_namespaced_secret("webhook-tls", namespace)
        assert secret.type == "kubernetes.io/tls"
        assert base64.b64decode(secret.data["ca.crt"]) == materials[0].bundle
        cert = x509.load_pem_x509_certificate(materials[0].cert)
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert "mission-control-webhook.mission-control.svc" in names
        config = kube.admission.read_validating_webhook_configuration(options.config_name)
        assert {base64.b64decode(h.client_config.ca_bundle) for h in config.webhooks} == {
            materials[0].bundle}
    finally:
        for replica in replicas:
            replica.serving.close()


def test_a_replica_starting_from_an_expired_certificate_replaces_it(env, namespace, options):
    kube = Kube(env.api)
    timing = Timing(validity=3600)
    long_ago = time.time() - 7200
    stale = apply("create", None, make(webhook.hosts(options), 3600, now=long_ago),
                  now=long_ago)
    assert expires(stale.cert) < time.time()
    kube.core.create_namespaced_secret(
        namespace, to_secret(stale, namespace=namespace, name="webhook-tls", version=None))
    replica = _replica(kube, options, timing)
    try:
        material = asyncio.run(replica.round())
        assert material.cert != stale.cert
        assert expires(replica.serving.cert) > time.time() + 3000
        # The expired CA is not carried on into the bundle, in the Secret or the configuration.
        assert tls.split_bundle(material.bundle) == tls.split_bundle(material.bundle)[-1:]
        config = kube.admission.read_validating_webhook_configuration(options.config_name)
        bundle = base64.b64decode(config.webhooks[0].client_config.ca_bundle)
        assert stale.bundle not in bundle and material.bundle in bundle
    finally:
        replica.serving.close()


def test_a_replica_starting_past_the_renewal_point_stages_a_renewal(env, namespace, options):
    kube = Kube(env.api)
    timing = Timing(validity=3600)
    earlier = time.time() - 3000   # 5/6 of its validity gone
    old = apply("create", None, make(webhook.hosts(options), 3600, now=earlier), now=earlier)
    kube.core.create_namespaced_secret(
        namespace, to_secret(old, namespace=namespace, name="webhook-tls", version=None))
    replica = _replica(kube, options, timing)
    try:
        material = asyncio.run(replica.round())
        # Still valid: it is served until the new CA has settled in the configuration ...
        assert replica.serving.cert == old.cert
        assert material.next_cert is not None
        config = kube.admission.read_validating_webhook_configuration(options.config_name)
        trusted = set(webhook.trusted(env.api.sanitize_for_serialization(config)))
        assert set(tls.split_bundle(material.bundle)) <= trusted and len(trusted) == 2
    finally:
        replica.serving.close()


def test_trusting_a_new_ca_keeps_the_installers_labels_and_annotations(env, namespace, options):
    """Helm installs the configuration (managed-by Helm, release annotations): the operator
    replaces its webhooks' CA bundle and leaves the object's identity as Helm made it."""
    kube = Kube(env.api)
    helm = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "mc"}
    release = {"meta.helm.sh/release-name": "mc", "meta.helm.sh/release-namespace": "ops"}
    installed = webhook.configuration(options, make(webhook.hosts(options), 3600)[0])
    installed["metadata"].update(labels=helm, annotations=release)
    kube.admission.create_validating_webhook_configuration(installed)
    new_ca = make(webhook.hosts(options), 3600)[0]
    asyncio.run(webhook.trust(kube, options, new_ca, now=time.time(), keep_others=False))
    config = kube.admission.read_validating_webhook_configuration(options.config_name)
    assert {base64.b64decode(h.client_config.ca_bundle) for h in config.webhooks} == {new_ca}
    assert config.metadata.labels == helm
    assert config.metadata.annotations == release
