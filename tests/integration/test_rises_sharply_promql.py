"""risesSharply's one query (signals.prometheus.now_and_lowest_query) against the real
Prometheus over series it scraped: the value now and the window's lowest for every target
from one query, and a target without series unknown."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness.procs import wait_for
from missioncontrol.signals.prometheus import Prometheus, now_and_lowest_query

pytestmark = pytest.mark.cluster
WINDOW = 10   # seconds: short, so the test is; long next to a loaded machine's delays

QUERY = ('sum by (namespace, deployment) (mc_test_retry_depth{namespace=~"{{ .namespace }}", '
         'deployment=~"{{ .name }}"})')


class Counting(Prometheus):
    """The operator's client, counting the queries it sends."""
    sent: list[str]

    async def query(self, promql: str) -> list[dict]:
        self.sent = [*getattr(self, "sent", []), promql]
        return await super().query(promql)


def test_one_query_answers_the_value_now_and_the_windows_lowest(env):
    namespace = f"rises-{time.monotonic_ns()}"
    rising = env.exporter.gauge("mc_test_retry_depth",
                                {"namespace": namespace, "deployment": "rising"})
    flat = env.exporter.gauge("mc_test_retry_depth",
                              {"namespace": namespace, "deployment": "flat"})
    targets = [(namespace, "rising"), (namespace, "flat"), (namespace, "silent")]
    prom = Counting(env.prometheus_url)

    def read() -> tuple[dict, dict]:
        now, lowest = asyncio.run(prom.now_and_lowest(QUERY, targets, window=WINDOW, step=1))
        return ({k: now.get(k) for k in targets}, {k: lowest.get(k) for k in targets})

    def steady(values: dict) -> tuple[dict, dict] | None:
        # Both readings at `values`: the window has slid past the 0 a new gauge starts at.
        readings = read()
        return readings if all(r[(namespace, d)] == v for r in readings
                               for d, v in values.items()) else None

    rising.set(10)
    flat.set(50)
    wait_for(lambda: steady({"rising": 10, "flat": 50}), timeout=60, interval=0.5,
             what=f"the depths steady at 10 and 50 for the {WINDOW}s window")
    rising.set(900)

    def risen() -> tuple[dict, dict] | None:
        readings = read()
        return readings if readings[0][(namespace, "rising")] == 900 else None
    now, lowest = wait_for(risen, timeout=60, interval=0.5, what="the rise to 900 scraped")
    # Read within the window of the rise: the lowest is still the 10 before it.
    assert now == {(namespace, "rising"): 900.0, (namespace, "flat"): 50.0,
                   (namespace, "silent"): None}
    assert lowest == {(namespace, "rising"): 10.0, (namespace, "flat"): 50.0,
                      (namespace, "silent"): None}
    # Every reading (both parts, all three targets) was one query, the same each time.
    assert prom.sent and all(q == prom.sent[0] for q in prom.sent)
    assert prom.sent[0].count("mc_test_retry_depth") == 2
    assert 'deployment=~"flat|rising|silent"' in prom.sent[0]


def test_the_query_text_is_valid_promql_for_prometheus_own_parser(env):
    prom = Prometheus(env.prometheus_url)
    assert asyncio.run(prom.parse(now_and_lowest_query(QUERY, window=300, step=30))) is None
