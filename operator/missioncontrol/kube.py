"""The Kubernetes adapter: the blocking `kubernetes` client, called off the event loop.

Everything the operator reads or writes in the cluster goes through `Kube`; each call runs
in a worker thread so the asyncio loop (kopf's) never blocks."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import GROUP, VERSION

PLURALS = {"Runbook": "runbooks", "IncidentPolicy": "incidentpolicies",
           "Incident": "incidents", "ServiceOwnership": "serviceownerships"}

__all__ = ["ApiException", "Kube", "load_client"]


def load_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    if kubeconfig:
        return config.new_client_from_config(kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.admission = client.AdmissionregistrationV1Api(api)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The raw JSON of a read: plain dicts, no model classes (cheaper, and exact)."""
        return await self.call(_raw, fn, *args, **kwargs)

    # -- our own kinds ----------------------------------------------------------------------
    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return await self.call(self.custom.get_namespaced_custom_object, GROUP, VERSION,
                                   namespace, PLURALS[kind], name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict]:
        kwargs = {"label_selector": label_selector} if label_selector else {}
        if namespace is None:
            result = await self.call(self.custom.list_cluster_custom_object, GROUP, VERSION,
                                     PLURALS[kind], **kwargs)
        else:
            result = await self.call(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                                     namespace, PLURALS[kind], **kwargs)
        return result.get("items", [])

    async def create(self, kind: str, namespace: str, body: dict) -> dict:
        return await self.call(self.custom.create_namespaced_custom_object, GROUP, VERSION,
                               namespace, PLURALS[kind], body)

    async def patch(self, kind: str, namespace: str, name: str, body: dict) -> dict:
        return await self.call(self.custom.patch_namespaced_custom_object, GROUP, VERSION,
                               namespace, PLURALS[kind], name, body)

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        return await self.call(self.custom.patch_namespaced_custom_object_status, GROUP,
                               VERSION, namespace, PLURALS[kind], name, {"status": status})


def _raw(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    import json

    response = fn(*args, _preload_content=False, **kwargs)
    return json.loads(response.data)
