"""KEDA's ScaledObjects, as pauseConsumers meets them: a Deployment KEDA scales would be scaled
straight back up if we scaled it to zero, so it is paused through KEDA instead, by the
`autoscaling.keda.sh/paused` annotation on its ScaledObject (KEDA then leaves the replicas
alone, and scales again once the annotation goes)."""

from __future__ import annotations

from ..kube import Kube, NotFound

GROUP, VERSION, PLURAL = "keda.sh", "v1alpha1", "scaledobjects"
PAUSED = "autoscaling.keda.sh/paused"
FIELD = f"metadata.annotations[{PAUSED}]"
MANAGED_PATH = ("f:metadata", "f:annotations", f"f:{PAUSED}")


async def scalers(kube: Kube, namespace: str) -> dict[str, dict]:
    """The ScaledObjects of the namespace by the Deployment each scales (none when KEDA's CRD
    is not installed)."""
    try:
        listing = await kube.call(kube.custom.list_namespaced_custom_object, GROUP, VERSION,
                                  namespace, PLURAL)
    except NotFound:
        return {}
    out = {}
    for body in listing.get("items") or []:
        ref = (body.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind", "Deployment") == "Deployment" and ref.get("name") \
                and ref.get("apiVersion", "apps/v1") == "apps/v1":
            out[ref["name"]] = body
    return out


def paused_value(body: dict) -> str | None:
    return ((body.get("metadata") or {}).get("annotations") or {}).get(PAUSED)


async def read(kube: Kube, namespace: str, name: str) -> dict | None:
    try:
        return await kube.call(kube.custom.get_namespaced_custom_object, GROUP, VERSION,
                               namespace, PLURAL, name)
    except NotFound:
        return None


async def annotate(kube: Kube, namespace: str, name: str, value: str | None) -> None:
    """Set the paused annotation (None removes it)."""
    await kube.call(kube.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                    PLURAL, name, {"metadata": {"annotations": {PAUSED: value}}})
