"""Manifests the tests (and the demo) create: small, explicit, readable."""

from __future__ import annotations

from .nodesim import READY, READY_AFTER


def deployment(
    name: str,
    *,
    image: str = "registry.example/app:1.0",
    replicas: int = 2,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    probe_period: int = 1,
    ready_after: float | None = None,
) -> dict:
    """A Deployment with a readiness probe; `ready=False` makes the simulator fail the probe,
    `ready_after=S` makes each pod a slow start (probe failing for S seconds, then Ready)."""
    # Said either way: a patch of the template must be able to turn it back on.
    pod_annotations = {READY: "true" if ready else "false"}
    if ready_after is not None:
        pod_annotations[READY_AFTER] = f"{ready_after:g}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, **(labels or {})},
                     "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": pod_annotations},
                "spec": {"containers": [{
                    "name": "app",
                    "image": image,
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"},
                                       "periodSeconds": probe_period, "failureThreshold": 1},
                }]},
            },
        },
    }


def job(name: str, *, exit_code: int = 0) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"sim.missioncontrol.dev/exit-code": str(exit_code)}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "job", "image": "registry.example/job:1"}]},
            },
        },
    }
