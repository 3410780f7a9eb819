"""The admission webhook's plumbing: our own HTTPS server (aiohttp, with the certificate that
webhookcerts.py keeps), and the ValidatingWebhookConfiguration we manage.

Not kopf's webhook server: kopf logs every refusal as a handler that "failed permanently", and
loads its certificate once; ours logs a refusal as what it is (handlers/freeze.py) and serves a
renewed certificate from the next connection on.

Failure policy: Fail. The configuration's selectors send the API server only requests about
Deployments labelled frozen, or in a namespace labelled frozen. So if the operator is down,
only changes that a freeze covers are refused — exactly the ones the freeze was refusing —
and nothing else in the cluster is touched. The configuration stays when the operator stops,
so a freeze holds through a restart. Escape hatch: remove the frozen label (or delete the
configuration)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from aiohttp import web

from . import tls
from .actions.freeze import FROZEN
from .kube import Conflict, Kube, NotFound

HANDLER_PATH = "freeze"
VALIDITY = 30 * 24 * 3600.0   # a new certificate's validity; renewed at two thirds of it


@dataclass(frozen=True)
class WebhookOptions:
    port: int = 9443
    host: str = "127.0.0.1"           # how the API server reaches us (URL mode)
    listen: str = "0.0.0.0"
    service: str | None = None        # "namespace/name": reach us through a Service instead
    service_port: int = 443           # the Service's port (it forwards to `port`)
    url: str | None = None            # URL mode behind a balancer: the URL the API server calls
    config_name: str = "mission-control-freeze"
    namespaces: tuple[str, ...] = ()  # limit the webhook to these namespaces (none: all)
    secret: str | None = None         # "namespace/name": share the certificate (HA replicas)
    cert_validity: float = VALIDITY


def hosts(options: WebhookOptions) -> tuple[str, ...]:
    """The names the serving certificate is valid for; the last is its common name."""
    names = ["localhost", "127.0.0.1", options.host]
    if options.url:
        names.append(options.url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0])
    if options.service:
        namespace, name = options.service.split("/", 1)
        names += [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
    return tuple(dict.fromkeys(names))


async def serve(options: WebhookOptions, context: object, app: web.Application) -> web.AppRunner:
    """Start answering on options.listen:options.port; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, options.listen, options.port, ssl_context=context).start()
    return runner


def configuration(options: WebhookOptions, ca: bytes) -> dict:
    if options.service:
        namespace, name = options.service.split("/", 1)
        client_config = {"service": {"namespace": namespace, "name": name,
                                     "path": f"/{HANDLER_PATH}", "port": options.service_port}}
    else:
        client_config = {"url": options.url
                         or f"https://{options.host}:{options.port}/{HANDLER_PATH}"}
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


async def trust(kube: Kube, options: WebhookOptions, bundle: bytes, *, now: float,
                keep_others: bool) -> None:
    """Make the webhook configuration ours, trusting `bundle`. With `keep_others` (replicas
    sharing a Secret) a CA the configuration trusts already is kept until it expires: a replica
    that has not read a renewal yet must never take the new CA out again. Replicas writing at
    once: the write that loses (409) reads again and merges."""
    for _ in range(5):
        try:
            await _trust_once(kube, options, bundle, now=now, keep_others=keep_others)
            return
        except Conflict:
            continue
    raise RuntimeError(f"could not write the webhook configuration {options.config_name}: "
                       "it kept changing under us")


async def _trust_once(kube: Kube, options: WebhookOptions, bundle: bytes, *, now: float,
                      keep_others: bool) -> None:
    api = kube.admission
    try:
        current = await kube.json(api.read_validating_webhook_configuration,
                                  options.config_name, _request_timeout=10)
    except NotFound:
        # Outside the shipped manifests (a development run with an admin kubeconfig) it is
        # created; the installs ship the object, so their role needs no "create".
        current = None
    cas = tls.split_bundle(bundle)
    if current is not None and keep_others:
        cas = [*cas, *trusted(current)]
    # Sorted: replicas that agree on the set must write the same bytes, or they would take
    # turns replacing the configuration.
    cas = sorted(ca for ca in set(cas) if tls.window(ca)[1] > now) or tls.split_bundle(bundle)
    body = configuration(options, b"".join(cas))
    if current is None:
        await kube.call(api.create_validating_webhook_configuration, body, _request_timeout=10)
        return
    if _same(current, body):
        return
    # The object's identity is its installer's (Helm's managed-by label and release
    # annotations, an Argo CD tracking id): only the webhooks are ours to replace, or the
    # next `helm upgrade` would refuse an object it no longer recognises as its own.
    kept = current["metadata"]
    body["metadata"] = {"name": options.config_name, "resourceVersion": kept["resourceVersion"],
                        **{key: kept[key] for key in ("labels", "annotations", "ownerReferences")
                           if kept.get(key)}}
    await kube.call(api.replace_validating_webhook_configuration, options.config_name, body,
                    _request_timeout=10)


def trusted(config: dict) -> list[bytes]:
    """The CAs a webhook configuration trusts (every webhook in it carries the same bundle)."""
    found: list[bytes] = []
    for hook in config.get("webhooks") or []:
        data = (hook.get("clientConfig") or {}).get("caBundle")
        if data:
            try:
                found += tls.split_bundle(base64.b64decode(data))
            except ValueError:
                continue
    return list(dict.fromkeys(found))


def _same(current: dict, desired: dict) -> bool:
    """Whether what we set is in place (the API server adds defaults of its own)."""
    have = {h["name"]: h for h in current.get("webhooks") or []}
    for hook in desired["webhooks"]:
        live = have.pop(hook["name"], None)
        if live is None or any(_pruned(live.get(key)) != _pruned(value)
                               for key, value in hook.items()):
            return False
    return not have


def _pruned(value: object) -> object:
    """Without empty lists, maps and nulls, which the API server may drop or add."""
    if isinstance(value, dict):
        return {k: p for k, v in value.items() if (p := _pruned(v)) not in (None, [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value
