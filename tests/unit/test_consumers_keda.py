"""pauseConsumers and its undo on a small fake API: a Deployment KEDA scales is paused by its
ScaledObject's annotation (not scaled, or KEDA would scale it straight back), the others are
scaled to zero; the undo removes the annotation, unless someone changed it since."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from missioncontrol import incident as inc
from missioncontrol.actions import consumers, keda
from missioncontrol.kube import NotFound
from missioncontrol.model import LabelSelector, PauseConsumers, Step

NS = "shop"


class FakeKube:
    def __init__(self, *, keda_installed: bool = True) -> None:
        self.replicas = {"analytics": 3, "indexer": 2}
        self.scalers = {"indexer": {"metadata": {"name": "indexer-so", "annotations": {}},
                                    "spec": {"scaleTargetRef": {"name": "indexer"}}}}
        self.keda_installed = keda_installed
        self.apps = SimpleNamespace(
            list_namespaced_deployment=lambda ns, label_selector: {"items": [
                {"metadata": {"name": n}, "spec": {"replicas": r}}
                for n, r in self.replicas.items()]},
            read_namespaced_deployment=lambda name, ns: {
                "metadata": {"name": name}, "spec": {"replicas": self.replicas[name]}},
            patch_namespaced_deployment_scale=self._scale)
        self.custom = SimpleNamespace(
            list_namespaced_custom_object=self._list,
            get_namespaced_custom_object=lambda g, v, ns, plural, name: next(
                s for s in self.scalers.values() if s["metadata"]["name"] == name),
            patch_namespaced_custom_object=self._patch)

    def _list(self, group, version, ns, plural):
        if not self.keda_installed:
            raise NotFound(status=404)   # as Kube.call raises it
        return {"items": list(self.scalers.values())}

    def _patch(self, group, version, ns, plural, name, body):
        scaler = next(s for s in self.scalers.values() if s["metadata"]["name"] == name)
        for key, value in body["metadata"]["annotations"].items():
            if value is None:
                scaler["metadata"]["annotations"].pop(key, None)
            else:
                scaler["metadata"]["annotations"][key] = value

    def _scale(self, name, ns, body):
        self.replicas[name] = body["spec"]["replicas"]

    async def json(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    async def call(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


def pause(kube: FakeKube, *, dry_run: bool = False):
    step = Step("pause", "pauseConsumers", PauseConsumers(LabelSelector((("tier", "x"),))))
    ctx = SimpleNamespace(kube=kube, dry_run=dry_run, target=(NS, "webhooks"))
    return asyncio.run(consumers.pause_consumers(ctx, step))


def annotation(kube: FakeKube) -> str | None:
    return kube.scalers["indexer"]["metadata"]["annotations"].get(keda.PAUSED)


def test_the_keda_scaled_consumer_is_paused_by_annotation_and_the_other_scaled_to_zero():
    kube = FakeKube()
    result = pause(kube)
    assert result.state == inc.SUCCEEDED
    assert kube.replicas == {"analytics": 0, "indexer": 2}
    assert annotation(kube) == "true"
    assert {(c.kind, c.name, c.field, c.from_, c.to) for c in result.changes} == {
        ("Deployment", "analytics", "spec.replicas", "3", "0"),
        ("ScaledObject", "indexer-so", keda.FIELD, None, "true")}
    record = inc.StepRecord("pause", "pauseConsumers", inc.SUCCEEDED, changes=result.changes)
    undone = asyncio.run(consumers.resume_consumers(kube, record, False))
    assert undone.state == inc.SUCCEEDED, undone.message
    assert kube.replicas == {"analytics": 3, "indexer": 2}
    assert annotation(kube) is None


def test_dry_run_pauses_nothing_and_without_keda_every_consumer_is_scaled():
    kube = FakeKube()
    assert pause(kube, dry_run=True).state == inc.PLANNED
    assert kube.replicas == {"analytics": 3, "indexer": 2} and annotation(kube) is None
    plain = FakeKube(keda_installed=False)
    pause(plain)
    assert plain.replicas == {"analytics": 0, "indexer": 0}


def test_an_annotation_changed_since_is_left_alone():
    kube = FakeKube()
    result = pause(kube)
    kube.scalers["indexer"]["metadata"]["annotations"][keda.PAUSED] = "false"   # by hand
    record = inc.StepRecord("pause", "pauseConsumers", inc.SUCCEEDED, changes=result.changes)
    undone = asyncio.run(consumers.resume_consumers(kube, record, False))
    assert undone.state == inc.SKIPPED
    assert "ScaledObject indexer-so has autoscaling.keda.sh/paused='false'" in undone.message
    assert annotation(kube) == "false" and kube.replicas["analytics"] == 3
