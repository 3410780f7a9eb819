"""The leader Lease (leadership.py) on the real API server: of replicas contending at once one
leads; a standby takes over only after the leader has stopped renewing for the Lease's
duration, on its own clock; a clean stop hands the Lease over at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes import client

from missioncontrol.kube import Kube
from missioncontrol.leadership import Leadership

pytestmark = pytest.mark.cluster

DURATION = 3.0


def replicas(env, namespace, count: int) -> list[Leadership]:
    kube = Kube(env.api)
    return [Leadership(kube, namespace, "mission-control", me=f"replica-{i}", duration=DURATION)
            for i in range(count)]


def test_of_replicas_contending_at_once_exactly_one_leads(env, namespace):
    group = replicas(env, namespace, 3)

    async def contend() -> list[bool]:
        first = await asyncio.gather(*(r.attempt() for r in group))
        second = await asyncio.gather(*(r.attempt() for r in group))   # renewals
        assert first.count(True) == 1, first
        return second

    assert asyncio.run(contend()).count(True) == 1
    leaders = [r for r in group if r.leading]
    assert len(leaders) == 1
    lease = client.CoordinationV1Api(env.api).read_namespaced_lease("mission-control", namespace)
    assert lease.spec.holder_identity == leaders[0].me
    assert all(r.holder == leaders[0].me for r in group)


def test_a_standby_takes_over_only_when_the_leader_stops_renewing(env, namespace):
    leader, standby = replicas(env, namespace, 2)

    async def scenario() -> float:
        assert await leader.attempt()
        # While the leader renews, the standby never takes over.
        until = time.monotonic() + DURATION * 2
        while time.monotonic() < until:
            assert await leader.attempt()
            assert not await standby.attempt()
            await asyncio.sleep(DURATION / 3)
        # The leader stops renewing (a crash): it stops acting by itself after 2/3 of the
        # duration, and the standby takes over after the whole duration, not before.
        stopped = leader._renewed   # its last renewal, on the same (monotonic) clock
        while not await standby.attempt():
            assert leader.leading or time.monotonic() - stopped >= DURATION * 2 / 3 - 0.2
            await asyncio.sleep(0.2)
        took = time.monotonic() - stopped
        assert not leader.leading
        return took

    took = asyncio.run(scenario())
    assert DURATION <= took <= DURATION + 2.0, took


def test_a_clean_stop_hands_the_lease_over_at_once(env, namespace):
    leader, standby = replicas(env, namespace, 2)

    async def scenario() -> None:
        assert await leader.attempt()
        assert not await standby.attempt()
        await leader.release()
        assert not leader.leading
        assert await standby.attempt()

    asyncio.run(scenario())
