"""Alertmanager silences respected: before an incident of a policy with
`spec.alertmanager.respectSilences` opens, the active silences are read
(`GET /api/v2/silences`); one whose matchers cover the target opens the incident silenced
(recorded, no step changes anything, nobody is paged: dryRun's way, said as silenced).

What a silence must cover: the target's labels as alerts about it carry them (the policy's
namespace and deployment label names, `namespace` and `deployment` by default) plus
`runbook` (the runbook id, e.g. RB-001); for an incident an `alert` condition opened, also
the labels of each firing alert (a silence of that alert silences its incident too). The
matchers are Alertmanager's own (matchers.py).

Alertmanager unreachable (or too slow: one try within `TIMEOUT`): the incident is not silenced
(a silence the operator cannot see is not in force for it), and its timeline says so."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp

from . import timeutil
from .matchers import Matcher, MatcherError, all_match

log = logging.getLogger("missioncontrol.silences")
TIMEOUT = 5.0


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    created_by: str = ""
    comment: str = ""
    ends_at: float | None = None
    starts_at: float | None = None
    state: str = "active"

    def active(self, now: float) -> bool:
        """Alertmanager's state says; the times too, for a silence that ended since."""
        return self.state == "active" and (self.starts_at is None or self.starts_at <= now) \
            and (self.ends_at is None or now < self.ends_at)

    def covers(self, labels: Mapping[str, str]) -> bool:
        # A silence without matchers silences nothing (Alertmanager refuses to create one).
        return bool(self.matchers) and all_match(self.matchers, labels)


@dataclass(frozen=True)
class Lookup:
    """What the silences said of one target: the covering silence, or why none was seen."""
    silence: Silence | None = None
    error: str = ""


def parse(data: object) -> list[Silence]:
    """GET /api/v2/silences' answer; a silence that cannot be read is left out (logged)."""
    if not isinstance(data, list):
        raise ValueError("expected a list of silences")
    out = []
    for item in data:
        try:
            status = item.get("status") or {}
            out.append(Silence(
                id=str(item["id"]),
                matchers=tuple(Matcher.from_api(m) for m in item["matchers"]),
                created_by=str(item.get("createdBy", "")), comment=str(item.get("comment", "")),
                ends_at=timeutil.parse(item.get("endsAt")),
                starts_at=timeutil.parse(item.get("startsAt")),
                state=str(status.get("state", "active"))))
        except (AttributeError, KeyError, TypeError, ValueError, MatcherError) as exc:
            log.warning("an Alertmanager silence left out: %s", exc)
    return out


def covering(silences: Iterable[Silence], label_sets: Iterable[Mapping[str, str]],
             now: float) -> Silence | None:
    """The active silence covering any of the label sets; of several, the one lasting
    longest (the one that says most about how long people meant it)."""
    sets = list(label_sets)
    found = [s for s in silences if s.active(now) and any(s.covers(labels) for labels in sets)]
    return max(found, key=lambda s: s.ends_at or 0.0) if found else None


def target_labels(*, namespace_label: str, deployment_label: str, namespace: str,
                  deployment: str, runbook: str) -> dict[str, str]:
    return {namespace_label: namespace, deployment_label: deployment, "runbook": runbook}


def describe(silence: Silence) -> str:
    by = f" by {silence.created_by}" if silence.created_by else ""
    until = f" until {timeutil.iso(silence.ends_at)}" if silence.ends_at else ""
    comment = f": {silence.comment}" if silence.comment else ""
    matchers = ", ".join(str(m) for m in silence.matchers)
    return f"silenced by Alertmanager silence {silence.id}{by}{until} ({matchers}){comment}"


async def lookup(url: str, label_sets: list[dict[str, str]], *, now: float,
                 deadline: float = TIMEOUT, ca_file: str | None = None) -> Lookup:
    """Read the active silences and pick the one covering the target, within `deadline`
    seconds."""
    timeout = deadline
    address = url.rstrip("/") + "/api/v2/silences"
    context = ssl.create_default_context(cafile=ca_file) if address.startswith("https") \
        else None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=timeout, connect=min(timeout, 3.0))) as session, \
                session.get(address, ssl=context) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                return Lookup(error=f"Alertmanager {url} answered {response.status}: {text}")
            data = await response.json(content_type=None)
    except TimeoutError:
        return Lookup(error=f"Alertmanager {url} did not answer within {timeout:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Lookup(error=f"Alertmanager {url} unreachable: {type(exc).__name__}: {exc}")
    try:
        silences = parse(data)
    except ValueError as exc:
        return Lookup(error=f"Alertmanager {url}: not a silences answer ({exc})")
    return Lookup(silence=covering(silences, label_sets, now))
