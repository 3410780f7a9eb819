"""What the daemons see of the leader Lease (leadership.Tenure, Leadership.wait_leading): a
daemon of a standby does nothing until the replica leads, and a leader's loop ends at its next
check once the Lease is lost. Leadership is judged on the replica's own clock."""

from __future__ import annotations

import asyncio

from missioncontrol.leadership import Leadership, Tenure


class Stopped:
    """kopf's DaemonStopped, as far as the daemons use it."""

    def __init__(self) -> None:
        self.flag = False

    def __bool__(self) -> bool:
        return self.flag

    async def wait(self, timeout: float | None = None) -> Stopped:  # noqa: ASYNC109 - kopf
        await asyncio.sleep(min(timeout or 0.01, 0.01))
        return self


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Api:
    api = None


def leadership(clock: Clock) -> Leadership:
    return Leadership(Api(), "ops", "mission-control", me="a", duration=15, clock=clock)


def test_leading_lasts_two_thirds_of_the_duration_after_the_last_renewal() -> None:
    clock = Clock()
    lead = leadership(clock)
    assert not lead.leading
    lead._renewed = clock.now
    clock.now += 9.9
    assert lead.leading
    clock.now += 0.2   # 10.1 s: past 2/3 of 15 s, before anyone else may take it (15 s)
    assert not lead.leading


def test_a_tenure_trips_when_the_lease_is_lost_and_says_why() -> None:
    clock, stopped = Clock(), Stopped()
    lead = leadership(clock)
    lead._renewed = clock.now
    tenure = Tenure(lead, stopped)
    assert not tenure and not tenure.lost
    clock.now += 11
    assert tenure and tenure.lost
    lead._renewed = clock.now
    stopped.flag = True
    assert tenure and not tenure.lost   # stopped by kopf: the daemon ends for good


def test_a_tenure_wait_returns_early_on_loss() -> None:
    clock, stopped = Clock(), Stopped()
    lead = leadership(clock)
    lead._renewed = clock.now
    tenure = Tenure(lead, stopped)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.05, lambda: setattr(clock, "now", clock.now + 11))
        await tenure.wait(30)
        return loop.time() - started

    assert asyncio.run(scenario()) < 2


def test_a_standby_waits_until_it_leads() -> None:
    clock, stopped = Clock(), Stopped()
    lead = leadership(clock)

    async def scenario() -> bool:
        asyncio.get_running_loop().call_later(0.05, lambda: setattr(lead, "_renewed", clock.now))
        return await lead.wait_leading(stopped)

    assert asyncio.run(scenario()) is True
    stopped.flag = True
    lead._renewed = None
    assert asyncio.run(lead.wait_leading(stopped)) is False


class Memo:
    def __init__(self, lead: Leadership, reads: list[dict | None]) -> None:
        self.leadership, self.reads = lead, reads
        self.kube = self

    async def get(self, kind: str, namespace: str, name: str) -> dict | None:
        assert (kind, namespace, name) == ("Incident", "shop", "inc-1")
        return self.reads.pop(0)


BODY = {"kind": "Incident", "metadata": {"namespace": "shop", "name": "inc-1"},
        "spec": {"close": True}, "status": {"phase": "Resolved"}}


def test_a_new_leader_reads_its_object_through_an_outage() -> None:
    """A lease lost to an API outage is taken back as the server returns, when a call may still
    be refused: the daemon's first read waits at the client's pace instead of failing the
    daemon into kopf's 60 s backoff (seen in the outage e2e test)."""
    from missioncontrol.kube import Kube, Unavailable
    from missioncontrol.leadership import standby

    class Health:
        async def pause(self, seconds: float) -> bool:
            return False

    class Flaky:
        health = Health()
        patiently = Kube.patiently

        def __init__(self) -> None:
            self.tries = 0

        async def get(self, kind: str, namespace: str, name: str) -> dict:
            self.tries += 1
            if self.tries < 3:
                raise Unavailable("connection refused", answered=False)
            return BODY

    clock = Clock()
    lead = leadership(clock)
    lead._renewed = clock.now
    memo = Memo(lead, [])
    memo.kube = Flaky()
    assert asyncio.run(standby(memo, Stopped(), "Incident", BODY)) == BODY
    assert memo.kube.tries == 3
