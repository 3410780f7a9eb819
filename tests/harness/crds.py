"""Install Mission Control's CRDs (crds/, through its kustomization) and wait until the API
serves them: one way, for the tests, the demo and the benchmark."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kubernetes import client

from .procs import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP = "missioncontrol.dev"
PLURALS = ("runbooks", "incidentpolicies", "incidents", "serviceownerships")


def install(kubectl: Callable[..., object], api: client.ApiClient, *, timeout: float = 60) -> None:
    """`kubectl` runs kubectl with the given arguments against the cluster of `api`."""
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "crds"))
    ext = client.ApiextensionsV1Api(api)

    def established() -> bool:
        for plural in PLURALS:
            crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
            if not any(c.type == "Established" and c.status == "True"
                       for c in crd.status.conditions or []):
                return False
        return True

    wait_for(established, timeout=timeout, what="the Mission Control CRDs to be Established")
    discovery = client.ApisApi(api)

    def served() -> bool:
        groups = {g.name: g for g in discovery.get_api_versions().groups}
        return GROUP in groups

    wait_for(served, timeout=timeout, what=f"the API to serve {GROUP}")


def install_file(kubectl: Callable[..., object], api: client.ApiClient, path: Path,
                 name: str, *, timeout: float = 60) -> None:
    """Another project's CRD (KEDA's, Flux's, Argo CD's), applied from its file, once it is
    Established. Polled rather than `kubectl wait`, which fails outright on a CRD that has
    no conditions yet."""
    kubectl("apply", "--server-side", "-f", str(path))
    ext = client.ApiextensionsV1Api(api)
    wait_for(lambda: any(c.type == "Established" and c.status == "True" for c in
                         ext.read_custom_resource_definition(name).status.conditions or []),
             timeout=timeout, what=f"CRD {name} to be Established")
