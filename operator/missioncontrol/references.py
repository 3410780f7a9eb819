"""Following references to other objects before anything relies on them: a Secret and its
key, a route's value, a namespace. Each check returns what is wrong in words, or None, so the
object that holds the reference can say it in its Ready condition instead of failing later,
mid-incident."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from .kube import ApiException, Kube, NotFound
from .model import Route, SecretRef

URL_ROUTES = ("Slack", "Webhook")   # the Secret holds the URL to post to


async def secret_value(kube: Kube, namespace: str, ref: SecretRef) -> tuple[str | None,
                                                                             str | None]:
    """(value, problem): the decoded value of the key, or why there is none."""
    try:
        secret = await kube.json(kube.core.read_namespaced_secret, ref.name, namespace)
    except NotFound:
        return None, f"Secret {namespace}/{ref.name} does not exist"
    except ApiException as exc:
        return None, f"Secret {namespace}/{ref.name} cannot be read (API {exc.status})"
    data = (secret.get("data") or {}).get(ref.key)
    if data is None:
        return None, f"Secret {namespace}/{ref.name} has no key {ref.key!r}"
    try:
        return base64.b64decode(data).decode(), None
    except (ValueError, UnicodeDecodeError):
        return None, f"Secret {namespace}/{ref.name} key {ref.key!r} is not text"


async def secret_problem(kube: Kube, namespace: str, ref: SecretRef) -> str | None:
    return (await secret_value(kube, namespace, ref))[1]


def value_problem(route: Route, value: str) -> str | None:
    """Whether a route's Secret value can work for its type (pure)."""
    where = f"Secret {route.secret.name} key {route.secret.key!r}"
    if not value.strip():
        return f"{where} is empty"
    if route.type in URL_ROUTES:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return (f"{where} is not an http(s) URL: a {route.type} route posts to the URL "
                    f"its Secret holds")
    return None


async def route_problem(kube: Kube, namespace: str, route: Route) -> str | None:
    value, problem = await secret_value(kube, namespace, route.secret)
    return problem if value is None else value_problem(route, value)


async def namespace_problem(kube: Kube, name: str) -> str | None:
    try:
        await kube.json(kube.core.read_namespace, name)
    except NotFound:
        return f"namespace {name} does not exist"
    except ApiException as exc:
        return f"namespace {name} cannot be read (API {exc.status})"
    return None
