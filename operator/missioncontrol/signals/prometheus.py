"""Prometheus signals: one PromQL query per condition per policy, grouped by target.

The blocking prometheus-api-client runs in a worker thread. A failed query, an empty
result or NaN is "unknown" for the targets concerned: never healthy, never failing."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from prometheus_api_client import PrometheusConnect

from .. import templates


@dataclass
class Answer:
    values: dict[tuple[str, str], float] = field(default_factory=dict)
    error: str = ""

    def get(self, key: tuple[str, str]) -> float | None:
        value = self.values.get(key)
        return None if value is None or math.isnan(value) else value


class Prometheus:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.client = PrometheusConnect(url=url, disable_ssl=True)

    async def query(self, promql: str) -> list[dict]:
        return await asyncio.to_thread(self.client.custom_query, promql,
                                       params={"timeout": f"{self.timeout:g}s"})

    async def by_target(self, template: str, targets: list[tuple[str, str]]) -> Answer:
        """Run `template` once for every target; match series by their namespace and
        deployment labels (a single target also takes an unlabelled series)."""
        if not targets:
            return Answer()
        promql = templates.render_many(template, targets)
        try:
            result = await self.query(promql)
        except Exception as exc:  # noqa: BLE001 - any failure is an unknown reading
            return Answer(error=f"prometheus query failed: {type(exc).__name__}: {exc}"[:300])
        return match(result, targets)


def match(result: list[dict], targets: list[tuple[str, str]]) -> Answer:
    answer = Answer()
    wanted = set(targets)
    for series in result:
        labels = series.get("metric") or {}
        try:
            value = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        key = (labels.get("namespace", ""), labels.get("deployment", ""))
        if key in wanted:
            answer.values[key] = value
        elif len(targets) == 1 and "deployment" not in labels:
            answer.values[targets[0]] = value
    if not result:
        answer.error = "no data"
    return answer
