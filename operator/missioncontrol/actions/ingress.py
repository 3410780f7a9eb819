"""ingress-nginx's per-client rate limit, as rateLimit sets it on an Ingress the runbook names:
the `nginx.ingress.kubernetes.io/limit-rps` annotation (requests accepted from one client IP
each second, a whole number; ingress-nginx reads a value that is not one as no limit). The
previous value, or its absence, is recorded; the undo puts it back unless someone changed the
annotation since."""

from __future__ import annotations

from ..incident import Change
from ..kube import Kube, NotFound
from .base import changed_by

GROUP, VERSION, PLURAL = "networking.k8s.io", "v1", "ingresses"
LIMIT_RPS = "nginx.ingress.kubernetes.io/limit-rps"
FIELD = f"metadata.annotations[{LIMIT_RPS}]"
MANAGED_PATH = ("f:metadata", "f:annotations", f"f:{LIMIT_RPS}")


async def read(kube: Kube, namespace: str, name: str) -> dict | None:
    try:
        return await kube.call(kube.custom.get_namespaced_custom_object, GROUP, VERSION,
                               namespace, PLURAL, name)
    except NotFound:
        return None


def limit(body: dict) -> str | None:
    return ((body.get("metadata") or {}).get("annotations") or {}).get(LIMIT_RPS)


def change(body: dict, *, namespace: str, value: str) -> Change | None:
    """What setting the limit to `value` changes on this Ingress (None: nothing)."""
    previous = limit(body)
    if previous == value:
        return None
    return Change("Ingress", body["metadata"]["name"], FIELD, previous, value, namespace)


async def annotate(kube: Kube, namespace: str, name: str, value: str | None) -> None:
    """Set the limit annotation (None removes it), by a merge patch of that key alone."""
    await kube.call(kube.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                    PLURAL, name, {"metadata": {"annotations": {LIMIT_RPS: value}}})


async def restore(kube: Kube, recorded: Change) -> tuple[bool, str, Change | None]:
    """Put the annotation back as `recorded` found it: (done, what to say, the change made).
    Not done when the Ingress is gone or someone changed the annotation since."""
    what = f"{LIMIT_RPS} of Ingress {recorded.name}"
    live = await read(kube, recorded.namespace or "", recorded.name)
    if live is None:
        return False, f"Skipped: Ingress {recorded.name} is gone", None
    value = limit(live)
    if value == recorded.from_:
        return True, f"{what} (already {_shown(value)})", None
    if value != recorded.to:
        who = changed_by(live, MANAGED_PATH)
        return False, (f"Skipped: changed by {who} since: {what} is {_shown(value)}, not "
                       f"{_shown(recorded.to)} as we set it; left as it is"), None
    await annotate(kube, recorded.namespace or "", recorded.name, recorded.from_)
    return True, f"{what} to {_shown(recorded.from_)}", Change(
        "Ingress", recorded.name, FIELD, value, recorded.from_, recorded.namespace)


def _shown(value: str | None) -> str:
    return "unset" if value is None else repr(value)
