"""The admission webhook's plumbing: our own CA and serving certificate (made with
`cryptography`), kopf's webhook server, and the ValidatingWebhookConfiguration we manage.

Failure policy: Fail. The configuration's selectors send the API server only requests about
Deployments labelled frozen, or in a namespace labelled frozen. So if the operator is down,
only changes that a freeze covers are refused — exactly the ones the freeze was refusing —
and nothing else in the cluster is touched. The configuration stays when the operator stops,
so a freeze holds through a restart. Escape hatch: remove the frozen label (or delete the
configuration)."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kopf

from . import tls
from .actions.freeze import FROZEN
from .kube import ApiException, Kube

HANDLER_PATH = "freeze"   # kopf serves each validating handler at /<handler id>


@dataclass(frozen=True)
class WebhookOptions:
    port: int = 9443
    host: str = "127.0.0.1"           # how the API server reaches us (URL mode)
    listen: str = "0.0.0.0"
    service: str | None = None        # "namespace/name": reach us through a Service instead
    service_port: int = 443           # the Service's port (it forwards to `port`)
    config_name: str = "mission-control-freeze"
    namespaces: tuple[str, ...] = ()  # limit the webhook to these namespaces (none: all)
    secret: str | None = None         # "namespace/name": share the certificate (HA replicas)


@dataclass(frozen=True)
class Certificates:
    ca: bytes
    certfile: str
    pkeyfile: str
    cafile: str
    directory: str


def make_certificates(options: WebhookOptions) -> Certificates:
    directory = Path(tempfile.mkdtemp(prefix="missioncontrol-webhook-"))
    ca = tls.make_ca(directory, "mission-control-webhook-ca")
    hosts = ["localhost", "127.0.0.1", options.host]
    if options.service:
        namespace, name = options.service.split("/", 1)
        hosts += [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
    serving = tls.issue(ca, directory, "webhook", common_name=hosts[-1],
                        hosts=tuple(dict.fromkeys(hosts)))
    return Certificates(ca.cert.read_bytes(), str(serving.cert), str(serving.key),
                        str(ca.cert), str(directory))


async def shared_certificates(kube: Kube, options: WebhookOptions) -> Certificates:
    """The certificate every replica serves, kept in a Secret: the first replica to start
    makes it, the others read it. (Each making its own CA would leave the webhook
    configuration trusting only the last replica to start.)"""
    namespace, name = options.secret.split("/", 1)
    for _ in range(3):
        try:
            secret = await kube.json(kube.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            return await asyncio.to_thread(_from_secret, secret.get("data") or {})
        certs = await asyncio.to_thread(make_certificates, options)
        data = await asyncio.to_thread(_secret_data, certs)
        body = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "mission-control"}},
                "data": data}
        try:
            await kube.call(kube.core.create_namespaced_secret, namespace, body)
            return certs
        except ApiException as exc:
            if exc.status != 409:   # another replica made it first: read theirs
                raise
    raise RuntimeError(f"could not read or create the webhook Secret {options.secret}")


def _secret_data(certs: Certificates) -> dict[str, str]:
    return {key: base64.b64encode(Path(path).read_bytes()).decode()
            for key, path in (("ca.crt", certs.cafile), ("tls.crt", certs.certfile),
                              ("tls.key", certs.pkeyfile))}


def _from_secret(data: dict) -> Certificates:
    directory = Path(tempfile.mkdtemp(prefix="missioncontrol-webhook-"))
    paths = {}
    for key in ("ca.crt", "tls.crt", "tls.key"):
        path = directory / key
        path.write_bytes(base64.b64decode(data[key]))
        path.chmod(0o600)
        paths[key] = str(path)
    return Certificates(Path(paths["ca.crt"]).read_bytes(), paths["tls.crt"], paths["tls.key"],
                        paths["ca.crt"], str(directory))


def server(options: WebhookOptions, certs: Certificates) -> kopf.WebhookServer:
    return kopf.WebhookServer(addr=options.listen, port=options.port, host=options.host,
                              certfile=certs.certfile, pkeyfile=certs.pkeyfile,
                              cafile=certs.cafile)


def configuration(options: WebhookOptions, ca: bytes) -> dict:
    if options.service:
        namespace, name = options.service.split("/", 1)
        client_config = {"service": {"namespace": namespace, "name": name,
                                     "path": f"/{HANDLER_PATH}", "port": options.service_port}}
    else:
        client_config = {"url": f"https://{options.host}:{options.port}/{HANDLER_PATH}"}
    client_config["caBundle"] = base64.b64encode(ca).decode()
    only = ([{"key": "kubernetes.io/metadata.name", "operator": "In",
              "values": list(options.namespaces)}] if options.namespaces else [])
    rules = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"],
              "operations": ["UPDATE"], "scope": "Namespaced"}]
    common = {"clientConfig": client_config, "failurePolicy": "Fail", "sideEffects": "None",
              "timeoutSeconds": 5, "admissionReviewVersions": ["v1"],
              "matchPolicy": "Equivalent"}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": options.config_name,
                     "labels": {"app.kubernetes.io/managed-by": "mission-control"}},
        "webhooks": [
            {"name": "deployments.freeze.missioncontrol.dev", **common, "rules": rules,
             "objectSelector": {"matchLabels": {FROZEN: "true"}},
             "namespaceSelector": {"matchExpressions": only}},
            {"name": "namespaces.freeze.missioncontrol.dev", **common,
             "rules": [{**rules[0], "operations": ["CREATE", "UPDATE"]}],
             "namespaceSelector": {"matchLabels": {FROZEN: "true"}, "matchExpressions": only}},
        ],
    }


async def install(kube: Kube, options: WebhookOptions, ca: bytes) -> None:
    body = configuration(options, ca)
    api = kube.admission
    try:
        current = await kube.call(api.read_validating_webhook_configuration,
                                  options.config_name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        await kube.call(api.replace_validating_webhook_configuration, options.config_name, body)
    except ApiException as exc:
        if exc.status != 404:
            raise
        # Outside the shipped manifests (a development run with an admin kubeconfig): the
        # installs ship the object, so their role needs no "create".
        await kube.call(api.create_validating_webhook_configuration, body)
