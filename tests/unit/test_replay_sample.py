"""replaySample waits a bounded time for the consumer's sample, and fails only after it."""

import asyncio

from missioncontrol.actions import replay
from missioncontrol.actions.base import StepContext
from missioncontrol.model import ReplaySample
from unit.fakekube import FakeKube

PARAMS = ReplaySample("staging", "replayer:1", sample=2,
                      sample_from=("webhook-ingress-sample", "events"))


def context(kube: FakeKube) -> StepContext:
    return StepContext(kube=kube, prometheus=None, clock=lambda: 0.0,
                       incident={"metadata": {"name": "inc", "namespace": "shop"},
                                 "spec": {"target": {"namespace": "shop", "name": "webhooks"}}},
                       status=None, runbook=None, policy=None, dry_run=False, page=None)


def sample(lines: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "webhook-ingress-sample", "namespace": "shop"},
            "data": {"events": lines}}


def test_a_sample_written_while_the_step_waits_is_the_one_replayed():
    kube = FakeKube()
    looks = []
    read = kube.core.read_namespaced_config_map

    def reading(name, namespace):
        looks.append(name)
        if len(looks) == 3:   # the consumer writes it between the second and third look
            kube.put(sample('{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'))
        return read(name, namespace)

    kube.core.read_namespaced_config_map = reading
    events = asyncio.run(replay.awaited_sample(context(kube), PARAMS, wait=5, pause=0))
    assert events == ['{"id": "a"}', '{"id": "b"}']
    assert len(looks) == 3


def test_an_empty_sample_after_the_wait_is_no_sample():
    kube = FakeKube(sample("\n\n"))   # there, but empty: no events to replay
    assert asyncio.run(replay.awaited_sample(context(kube), PARAMS, wait=3, pause=0)) is None


def test_without_sample_from_nothing_is_looked_for():
    kube = FakeKube()
    params = ReplaySample("staging", "replayer:1")
    assert asyncio.run(replay.awaited_sample(context(kube), params, wait=3, pause=0)) is None
    assert kube.writes == []
