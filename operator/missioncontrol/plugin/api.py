"""The cluster as `kubectl mc` reaches it: the kubeconfig and context kubectl would use, the
identity the API server knows the caller by, and our kinds read, patched and watched.

Every call has a deadline (kube.REQUEST_TIMEOUT; a watch asks the API server to end it after
WATCH_SECONDS and gives up on a silent connection a little later, then watches again)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config, watch

from .. import GROUP, VERSION
from ..kube import PLURALS, REQUEST_TIMEOUT, load_client

JSON_PATCH = "application/json-patch+json"
WATCH_SECONDS = 60

__all__ = ["Cluster", "refusal"]


class Cluster:
    def __init__(self, *, kubeconfig: str | None, context: str | None,
                 impersonate: str | None = None,
                 timeout: tuple[float, float] = REQUEST_TIMEOUT) -> None:
        self.kubeconfig, self.context = kubeconfig, context
        self.api = load_client(kubeconfig, context=context)
        if impersonate:
            self.api.set_default_header("Impersonate-User", impersonate)
        self.custom = client.CustomObjectsApi(self.api)
        self.timeout = timeout

    def default_namespace(self) -> str:
        """The namespace of the kubeconfig's context, as kubectl picks it; else default."""
        try:
            contexts, current = config.list_kube_config_contexts(config_file=self.kubeconfig)
        except (config.ConfigException, OSError, TypeError):
            return _in_cluster_namespace() or "default"
        chosen = next((c for c in contexts if c["name"] == self.context), None) \
            if self.context else current
        return ((chosen or {}).get("context") or {}).get("namespace") or "default"

    def whoami(self) -> str:
        """The caller's user name, from the API server itself (a SelfSubjectReview): what
        the acknowledgement says is who was authenticated, not what a flag claims."""
        review = client.AuthenticationV1Api(self.api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            _request_timeout=self.timeout)
        user = review.status.user_info if review.status else None
        if user is None or not user.username:
            raise RuntimeError("the API server did not say who you are (SelfSubjectReview "
                               "without a user name)")
        return user.username

    def get(self, kind: str, namespace: str, name: str) -> dict:
        return self._raw(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace,
                         PLURALS[kind], name)

    def list(self, kind: str, namespace: str | None) -> dict:
        if namespace is None:
            return self._raw(self.custom.list_cluster_custom_object, GROUP, VERSION,
                             PLURALS[kind])
        return self._raw(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace,
                         PLURALS[kind])

    def merge_patch(self, kind: str, namespace: str, name: str, body: dict) -> dict:
        return self._raw(self.custom.patch_namespaced_custom_object, GROUP, VERSION,
                         namespace, PLURALS[kind], name, body)

    def json_patch(self, kind: str, namespace: str, name: str, ops: list[dict]) -> dict:
        return self._raw(self.custom.patch_namespaced_custom_object, GROUP, VERSION,
                         namespace, PLURALS[kind], name, ops, _content_type=JSON_PATCH)

    def watch(self, kind: str, namespace: str | None,
              resource_version: str) -> Iterator[tuple[str, dict]]:
        """(event type, object) from `resource_version` on, for as long as the caller
        reads; each watch request ends after WATCH_SECONDS and the next one goes on."""
        args: tuple[Any, ...] = (GROUP, VERSION, PLURALS[kind]) if namespace is None else (
            GROUP, VERSION, namespace, PLURALS[kind])
        fn = (self.custom.list_cluster_custom_object if namespace is None
              else self.custom.list_namespaced_custom_object)
        while True:
            w = watch.Watch()
            for event in w.stream(fn, *args, resource_version=resource_version,
                                  timeout_seconds=WATCH_SECONDS,
                                  _request_timeout=(self.timeout[0], WATCH_SECONDS + 15)):
                obj = event["object"]
                if event["type"] == "ERROR":
                    # 410 Gone: the version is too old; start again from a fresh list.
                    resource_version = self.list(kind, namespace)["metadata"][
                        "resourceVersion"]
                    break
                resource_version = obj["metadata"]["resourceVersion"]
                yield event["type"], obj

    def _raw(self, fn: Any, *args: Any, **kwargs: Any) -> dict:
        kwargs.setdefault("_request_timeout", self.timeout)
        response = fn(*args, _preload_content=False, **kwargs)
        return json.loads(response.data)


def _in_cluster_namespace() -> str | None:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def refusal(exc: client.ApiException) -> str:
    """The API server's own words for a refused request, as kubectl prints them."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return f"Error from server ({body.get('reason') or exc.reason}): {body['message']}"
    return f"Error from server: {exc.status} {exc.reason}"
