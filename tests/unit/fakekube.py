"""FakeKube: the Kubernetes calls the operator makes through `kube.Kube`, answered from objects
in memory, for unit tests of whole incident rounds without a cluster.

It keeps what those rounds depend on: typed NotFound / Conflict answers (as Kube.call raises
them), resourceVersions (a patch carrying a stale one is refused), JSON merge patches and
JSON patches, label selectors, and managedFields naming who last wrote each field, so
"changed by someone else" can be decided as against a real API server. Writes are logged in
order (`writes`). Only the verbs the operator uses exist; any other is an AttributeError, so a
new call in the operator shows up here as a failing test, not as a silent pass."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

from missioncontrol.kube import Conflict, Health, Invalid, NotFound

OPERATOR = "missioncontrol"   # the field manager of the operator's own writes
PLURAL_KINDS = {"runbooks": "Runbook", "incidentpolicies": "IncidentPolicy",
                "incidents": "Incident", "serviceownerships": "ServiceOwnership",
                "scaledobjects": "ScaledObject",   # KEDA's: in a test that adds some
                "kustomizations": "Kustomization", "gitrepositories": "GitRepository",
                "applications": "Application",     # Flux's and Argo CD's, likewise
                "ingresses": "Ingress"}   # networking.k8s.io's, read as the operator does


class FakeKube:
    def __init__(self, *objects: dict) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.writes: list[tuple[str, str, str, str]] = []   # (verb, kind, namespace, name)
        self.health = Health()
        self._versions = itertools.count(1)
        self.core = _Core(self)
        self.apps = _Apps(self)
        self.batch = _Batch(self)
        self.custom = _Custom(self)
        for body in objects:
            self.put(body, manager="kubectl-create")

    # -- the test's own hands --------------------------------------------------------------
    def put(self, body: dict, *, manager: str = "kubectl-apply") -> dict:
        """Create or replace an object as a person would."""
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", "")
        meta["resourceVersion"] = str(next(self._versions))
        meta["managedFields"] = [_entry(manager, _fields(body.get("spec") or {}, "f:spec")
                                        | _fields(body.get("data") or {}, "f:data"))]
        self.objects[_key(body)] = body
        return copy.deepcopy(body)

    def edit(self, kind: str, namespace: str, name: str, patch: dict | list, *,
             manager: str = "kubectl-patch") -> dict:
        """A change by hand (kubectl patch): recorded under `manager` in managedFields."""
        return self._patch(kind, namespace, name, patch, manager=manager)

    def obj(self, kind: str, namespace: str, name: str) -> dict:
        return copy.deepcopy(self._live(kind, namespace, name))

    def kinds(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [copy.deepcopy(b) for (k, ns, _), b in sorted(self.objects.items())
                if k == kind and (namespace is None or ns == namespace)]

    # -- kube.Kube's interface ---------------------------------------------------------------
    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("_request_timeout", None)
        kwargs.pop("_preload_content", None)
        return copy.deepcopy(fn(*args, **kwargs))

    json = call

    async def patiently(self, attempt: Callable[[], Any], **_: object) -> Any:
        return await attempt()   # an API server that always answers

    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(self, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict]:
        return self._select(kind, namespace, label_selector)

    async def create(self, kind: str, namespace: str, body: dict) -> dict:
        return self._create(kind, namespace, body)

    async def patch(self, kind: str, namespace: str, name: str, body: dict) -> dict:
        return self._patch(kind, namespace, name, body)

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        return self._patch(kind, namespace, name, {"status": status}, verb="patch_status")

    # -- what the verbs do -------------------------------------------------------------------
    def _live(self, kind: str, namespace: str, name: str) -> dict:
        try:
            return self.objects[(kind, namespace, name)]
        except KeyError:
            raise NotFound(status=404, reason="Not Found") from None

    def _select(self, kind: str, namespace: str | None, selector: str | None) -> list[dict]:
        wanted = dict(part.split("=", 1) for part in (selector or "").split(",") if part)
        return [b for b in self.kinds(kind, namespace)
                if all((b["metadata"].get("labels") or {}).get(k) == v
                       for k, v in wanted.items())]

    def _create(self, kind: str, namespace: str, body: dict) -> dict:
        body = copy.deepcopy(body)
        body.setdefault("kind", kind)
        body["metadata"]["namespace"] = namespace
        if (kind, namespace, body["metadata"]["name"]) in self.objects:
            raise Conflict(status=409, reason="AlreadyExists")
        self.writes.append(("create", kind, namespace, body["metadata"]["name"]))
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        body["metadata"]["managedFields"] = [_entry(OPERATOR, _fields(body.get("spec") or {},
                                                                       "f:spec"))]
        self.objects[_key(body)] = body
        return copy.deepcopy(body)

    def _patch(self, kind: str, namespace: str, name: str, patch: dict | list, *,
               manager: str = OPERATOR, verb: str = "patch") -> dict:
        live = self._live(kind, namespace, name)
        if isinstance(patch, dict):
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != live["metadata"]["resourceVersion"]:
                raise Conflict(status=409, reason="Conflict")
            new = merge(live, {k: v for k, v in patch.items() if k != "metadata"}
                        | {"metadata": {k: v for k, v in (patch.get("metadata") or {}).items()
                                        if k != "resourceVersion"}})
            touched = _fields(patch, "")
        else:
            new = json_patch(live, patch)
            touched = {}
            for op in patch:
                node = touched
                for part in op["path"].strip("/").split("/"):
                    node = node.setdefault(f"f:{part}", {})
        self.writes.append((verb, kind, namespace, name))
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        new["metadata"]["managedFields"] = [
            *(e for e in live["metadata"].get("managedFields") or [] if e["manager"] != manager),
            _entry(manager, touched, time=f"2026-01-01T00:00:{len(self.writes):02d}Z")]
        self.objects[(kind, namespace, name)] = new
        return copy.deepcopy(new)


class _Core:
    def __init__(self, kube: FakeKube) -> None:
        self.k = kube

    def read_namespaced_secret(self, name: str, namespace: str) -> dict:
        return self.k._live("Secret", namespace, name)

    def read_namespaced_config_map(self, name: str, namespace: str) -> dict:
        return self.k._live("ConfigMap", namespace, name)

    def patch_namespaced_config_map(self, name: str, namespace: str, body: dict) -> dict:
        return self.k._patch("ConfigMap", namespace, name, body)

    def read_namespace(self, name: str) -> dict:
        return self.k._live("Namespace", "", name)

    def patch_namespace(self, name: str, body: dict) -> dict:
        return self.k._patch("Namespace", "", name, body)

    def list_namespace(self, label_selector: str | None = None) -> dict:
        return {"items": self.k._select("Namespace", "", label_selector)}

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None) -> dict:
        return {"items": self.k._select("Pod", namespace, label_selector)}

    def list_namespaced_event(self, namespace: str, **_: object) -> dict:
        return {"items": self.k._select("Event", namespace, None)}


class _Apps:
    def __init__(self, kube: FakeKube) -> None:
        self.k = kube

    def read_namespaced_deployment(self, name: str, namespace: str) -> dict:
        return self.k._live("Deployment", namespace, name)

    def patch_namespaced_deployment(self, name: str, namespace: str, body: dict | list) -> dict:
        return self.k._patch("Deployment", namespace, name, body)

    def patch_namespaced_deployment_scale(self, name: str, namespace: str, body: dict) -> dict:
        return self.k._patch("Deployment", namespace, name, body)

    def read_namespaced_replica_set(self, name: str, namespace: str) -> dict:
        return self.k._live("ReplicaSet", namespace, name)

    def list_namespaced_deployment(self, namespace: str,
                                   label_selector: str | None = None) -> dict:
        return {"items": self.k._select("Deployment", namespace, label_selector)}

    def list_namespaced_replica_set(self, namespace: str,
                                    label_selector: str | None = None) -> dict:
        return {"items": self.k._select("ReplicaSet", namespace, label_selector)}


class _Batch:
    def __init__(self, kube: FakeKube) -> None:
        self.k = kube

    def create_namespaced_job(self, namespace: str, body: dict) -> dict:
        return self.k._create("Job", namespace, body)


class _Custom:
    """Custom resources by plural; a plural nobody installed answers 404, as the API server
    does for a CRD that is not there."""

    def __init__(self, kube: FakeKube) -> None:
        self.k = kube

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                     plural: str, name: str) -> dict:
        return self.k._live(_kind(plural), namespace, name)

    def list_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                      plural: str, label_selector: str | None = None) -> dict:
        return {"items": self.k._select(_kind(plural), namespace, label_selector)}

    def list_cluster_custom_object(self, group: str, version: str, plural: str,
                                   label_selector: str | None = None) -> dict:
        return {"items": self.k._select(_kind(plural), None, label_selector)}

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                        plural: str, body: dict) -> dict:
        return self.k._create(_kind(plural), namespace, body)

    def patch_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                       plural: str, name: str, body: dict) -> dict:
        return self.k._patch(_kind(plural), namespace, name, body)

    def patch_namespaced_custom_object_status(self, group: str, version: str, namespace: str,
                                              plural: str, name: str, body: dict) -> dict:
        return self.k._patch(_kind(plural), namespace, name, body, verb="patch_status")


# -- patches -------------------------------------------------------------------------------------
def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def json_patch(target: dict, ops: list[dict]) -> dict:
    """The RFC 6902 operations the operator sends: add, replace, remove, test."""
    out = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].strip("/").split("/")]
        node = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] in ("add", "replace"):
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            node.pop(last)
        elif op["op"] == "test" and node.get(last) != op["value"]:
            raise Invalid(status=422, reason="Invalid: the test operation failed")
    return out


def _fields(value: Any, prefix: str) -> dict:
    """managedFields' fieldsV1 for the keys a write sets."""
    if not isinstance(value, dict):
        return {}
    inner = {f"f:{k}": _fields(v, "") for k, v in value.items()}
    return {prefix: inner} if prefix else inner


def _entry(manager: str, fields: dict, time: str = "2026-01-01T00:00:00Z") -> dict:
    return {"manager": manager, "operation": "Update", "time": time, "fieldsV1": fields}


def _kind(plural: str) -> str:
    try:
        return PLURAL_KINDS[plural]
    except KeyError:
        raise NotFound(status=404, reason="Not Found") from None


def _key(body: dict) -> tuple[str, str, str]:
    return body["kind"], body["metadata"].get("namespace") or "", body["metadata"]["name"]
