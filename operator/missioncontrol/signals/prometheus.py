"""Prometheus signals: one PromQL query per condition per policy, grouped by target (a
risesSharply condition too: its value now and its baseline come as two series of one query).

An async client of Prometheus's HTTP API on aiohttp. Every request has a connect and a total
deadline and is tried once: a retry belongs to the next check, never hidden inside this one
(a check that waits on retries is a check that comes late). A failed query, an empty result
or NaN is "unknown" for the targets concerned: never healthy, never failing."""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from .. import templates
from ..model import AssessBlastRadius, Runbook

# What a query's template variables become when it is only parsed, never run for a target.
PLACEHOLDERS = {"namespace": "placeholder-namespace", "name": "placeholder-name"}
# Longer encoded parameters go as a form POST (Prometheus takes both): proxies and load
# balancers cut URLs at 4 to 8 KiB, and a policy's regex alternation grows with its targets.
POST_ABOVE = 2048


class PrometheusError(Exception):
    """No usable answer: unreachable, too slow, or not a Prometheus API answer."""


class EndpointMissing(PrometheusError):
    """404: this Prometheus has no such API endpoint (an older version)."""


class QueryError(PrometheusError):
    """Prometheus answered, with an error of its own (`errorType`, `error`)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass
class Answer:
    values: dict[tuple[str, str], float] = field(default_factory=dict)
    error: str = ""

    def get(self, key: tuple[str, str]) -> float | None:
        value = self.values.get(key)
        return None if value is None or math.isnan(value) else value


@dataclass(frozen=True)
class Credentials:
    """How the operator proves who it is to a Prometheus behind authentication: a bearer
    token (an authenticating proxy, e.g. one that checks ServiceAccount tokens) or basic auth
    (Prometheus's own web config, hosted services), and the headers a multi-tenant one needs
    (Mimir's and Cortex's X-Scope-OrgID): given as values (`extra_headers`, no secret), or in
    a file of `Name: value` lines (a Secret). The secrets are files, read at every query: a
    rotated token, password or header is used at once, and none is ever in an argument."""
    bearer_token_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    headers_file: str | None = None

    def headers(self) -> dict[str, str]:
        """Raises PrometheusError when a file cannot be read: an unknown reading, as for an
        unreachable Prometheus."""
        found = dict(self.extra_headers)
        try:
            if self.headers_file:
                found.update(parse_headers(Path(self.headers_file).read_text()))
            if self.bearer_token_file:
                token = Path(self.bearer_token_file).read_text().strip()
                found["Authorization"] = f"Bearer {token}"
            elif self.username is not None:
                password = (Path(self.password_file).read_text().rstrip("\r\n")
                            if self.password_file else "")
                pair = f"{self.username}:{password}".encode()
                found["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        except (OSError, UnicodeError, ValueError) as exc:
            raise PrometheusError(f"cannot read the Prometheus credentials: {exc}") from None
        return found


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines (blank lines and # comments skipped). A bad line is named by its
    number only: its value may be a secret."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t()<>@,;\\\"/[]?={}"):
            raise ValueError(f"line {number} of the headers file is not `Name: value`")
        found[name] = value.strip()
    return found


def header_flag(text: str) -> tuple[str, str]:
    """`--prometheus-header NAME=VALUE` (or `NAME: VALUE`) as a (name, value) pair."""
    name, sep, value = text.partition("=") if "=" in text else text.partition(":")
    if not sep or not name.strip() or " " in name.strip():
        raise ValueError(f"--prometheus-header {text!r}: write NAME=VALUE, like "
                         f"X-Scope-OrgID=team-a")
    return name.strip(), value.strip()


class Prometheus:
    def __init__(self, url: str, *, timeout: float = 5.0, connect_timeout: float = 2.0,
                 credentials: Credentials | None = None, ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.credentials = credentials or Credentials()
        self.ca_file = ca_file   # the CA bundle to verify an https Prometheus with

    def _tls(self) -> ssl.SSLContext | bool:
        """TLS is always verified: against `ca_file` when given (read at every query, like
        the credentials: a renewed bundle is used at once), else the system's CAs."""
        if not self.ca_file:
            return True
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise PrometheusError(f"cannot read the Prometheus CA bundle: {exc}") from None

    async def _get(self, path: str, params: dict[str, str]) -> dict:
        # One session per call: nothing to close at exit, nothing bound to another loop, and
        # a hung connection dies with its call.
        deadline = aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout)
        headers = self.credentials.headers()
        verify = self._tls()
        long = len(urlencode(params)) > POST_ABOVE
        request = dict(data=params) if long else dict(params=params)
        try:
            async with aiohttp.ClientSession(timeout=deadline) as session, \
                    session.request("POST" if long else "GET", f"{self.url}{path}",
                                    headers=headers, ssl=verify, **request) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                # A refusal first, whatever its body: a proxy in front of Prometheus (a
                # tenant gateway, an auth proxy) may answer 401 in Prometheus's own format.
                if response.status in (401, 403):
                    raise PrometheusError(f"HTTP {response.status} from {path}: check the "
                                          "Prometheus credentials (--prometheus-*)")
                if isinstance(body, dict) and body.get("status") == "error":
                    raise QueryError(str(body.get("errorType") or "error"),
                                     str(body.get("error") or ""))
                if response.status == 404:
                    raise EndpointMissing(f"HTTP 404 from {path}")
                if response.status != 200 or not isinstance(body, dict):
                    raise PrometheusError(f"HTTP {response.status} from {path}")
                return body
        except TimeoutError:
            raise PrometheusError(f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"{type(exc).__name__}: {exc}") from None

    async def query(self, promql: str) -> list[dict]:
        """An instant query; the result as a list of series (a scalar is one unlabelled
        series). Raises PrometheusError."""
        body = await self._get("/api/v1/query", {"query": promql,
                                                 "timeout": f"{self.timeout:g}s"})
        data = body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar" and isinstance(result, list):
            return [{"metric": {}, "value": result}]
        return result if isinstance(result, list) else []

    async def by_target(self, template: str, targets: list[tuple[str, str]]) -> Answer:
        """Run `template` once for every target; match series by their namespace and
        deployment labels (a single target also takes an unlabelled series)."""
        if not targets:
            return Answer()
        promql = templates.render_many(template, targets)
        try:
            result = await self.query(promql)
        except Exception as exc:  # noqa: BLE001 - any failure is an unknown reading
            return Answer(error=f"prometheus query failed: {exc}"[:300])
        return match(result, targets)

    async def now_and_lowest(self, template: str, targets: list[tuple[str, str]], *,
                             window: float, step: float) -> tuple[Answer, Answer]:
        """The value of `template` now and its lowest over the last `window` (a risesSharply
        condition's two readings) for every target, from one query: `now_and_lowest_query`."""
        if not targets:
            return Answer(), Answer()
        promql = templates.render_many(now_and_lowest_query(template, window=window,
                                                            step=step), targets)
        try:
            result = await self.query(promql)
        except Exception as exc:  # noqa: BLE001 - any failure is an unknown reading
            failed = Answer(error=f"prometheus query failed: {exc}"[:300])
            return failed, replace(failed)
        return split_now_and_lowest(result, targets)

    async def parse(self, template: str) -> str | None:
        """Prometheus's own parser on a query template (its variables rendered with
        placeholders): None if it parses, else the parser's message. Raises PrometheusError
        when Prometheus cannot say.

        `/api/v1/parse_query` where the server has it; older servers (Debian's 2.42 has not)
        answer 404, and then an instant query at the start of the epoch asks the same parser:
        there is no data there, so it costs next to nothing, and a parse error is `bad_data`
        while an error of evaluation means the query parsed."""
        promql = templates.render(template, PLACEHOLDERS)
        try:
            await self._get("/api/v1/parse_query", {"query": promql})
            return None
        except QueryError as exc:
            if exc.kind != "bad_data":
                raise
            return _parse_message(exc.message)
        except EndpointMissing:
            pass
        try:
            await self._get("/api/v1/query", {"query": promql, "time": "1"})
        except QueryError as exc:
            return _parse_message(exc.message) if exc.kind == "bad_data" else None
        return None


def _parse_message(message: str) -> str:
    prefix = 'invalid parameter "query": '
    return message[len(prefix):] if message.startswith(prefix) else message


def match(result: list[dict], targets: list[tuple[str, str]]) -> Answer:
    answer = Answer()
    wanted = set(targets)
    for series in result:
        if not isinstance(series, dict):
            continue
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


# The label that tells apart the two series of one target in a risesSharply answer.
READING = "missioncontrol_reading"
NOW, LOWEST = "now", "lowest"


def now_and_lowest_query(template: str, *, window: float, step: float) -> str:
    """One PromQL query for both readings of a risesSharply condition: every series of
    `template` twice, labelled READING="now" (its value now) and READING="lowest" (its lowest
    value over the last `window`: `min_over_time` over a subquery at `step`). `or` keeps both,
    since their label sets differ by READING; both are read at the one evaluation time. A series
    the subquery has no point for (it began after the last step) has no "lowest": the target is
    then unknown, never judged on half its readings."""
    query = f"({template})"
    lowest = f"min_over_time({query}[{int(window)}s:{max(1, int(step))}s])"
    return (f'label_replace({query}, "{READING}", "{NOW}", "", "") or '
            f'label_replace({lowest}, "{READING}", "{LOWEST}", "", "")')


def split_now_and_lowest(result: list[dict],
                         targets: list[tuple[str, str]]) -> tuple[Answer, Answer]:
    """The answer to `now_and_lowest_query` as the values now and the lowest values, each
    matched to the targets as `match` does (READING taken off first)."""
    parts: dict[str, list[dict]] = {NOW: [], LOWEST: []}
    for series in result:
        if not isinstance(series, dict):
            continue
        labels = dict(series.get("metric") or {})
        part = parts.get(labels.pop(READING, ""))
        if part is not None:
            part.append({**series, "metric": labels})
    return match(parts[NOW], targets), match(parts[LOWEST], targets)


@dataclass
class InFlight:
    """Queries that run beside the ticks that asked for them, one at a time per key.

    A tick starts the queries that are due and takes the answers that have come; it waits for
    them only as long as it can spare, so a Prometheus that hangs holds up nothing but the
    conditions that need it (and those turn unknown when the client's deadline passes)."""
    tasks: dict[Hashable, asyncio.Task] = field(default_factory=dict)

    def start(self, key: Hashable, work: Awaitable) -> None:
        if key in self.tasks:
            work.close()   # one at a time: the running one answers for this check too
            return
        self.tasks[key] = asyncio.ensure_future(work)

    def running(self, key: Hashable) -> bool:
        return key in self.tasks and not self.tasks[key].done()

    def take(self, key: Hashable) -> object | None:
        """The answer for `key` if it has come (then forgotten), else None."""
        task = self.tasks.get(key)
        if task is None or not task.done():
            return None
        del self.tasks[key]
        # The work turns its own failures into answers; a cancelled one has none.
        return None if task.cancelled() else task.result()

    async def settle(self, keys: list[Hashable], *, within: float) -> None:
        """Wait until the queries of `keys` have answered, `within` seconds at most."""
        pending = [self.tasks[k] for k in keys if k in self.tasks and not self.tasks[k].done()]
        if pending and within > 0:
            await asyncio.wait(pending, timeout=within)


@dataclass(frozen=True)
class QueriesChecked:
    """What Prometheus's parser said of a runbook's PromQL."""
    invalid: str = ""      # "<where>: <the parser's message>" for the first that does not parse
    unchecked: str = ""    # why they could not be checked (then nothing is claimed of them)


def queries_of(runbook: Runbook) -> dict[str, str]:
    """Every PromQL template of a runbook, by where it stands."""
    found = {f"condition {c.name}": c.detector.query for c in runbook.trigger.conditions
             if getattr(c.detector, "query", "")}
    for step in runbook.steps:
        if isinstance(step.params, AssessBlastRadius):
            found.update({f"step {step.id} dashboard {d.name}": d.query
                          for d in step.params.dashboards})
    return found


async def check_queries(prometheus: Prometheus | None,
                        queries: dict[str, str]) -> QueriesChecked:
    """Parse every query with Prometheus's own parser, all at once."""
    if not queries:
        return QueriesChecked()
    if prometheus is None:
        return QueriesChecked(unchecked="no Prometheus configured (--prometheus-url)")
    results = await asyncio.gather(*(prometheus.parse(q) for q in queries.values()),
                                   return_exceptions=True)
    for where, result in zip(queries, results, strict=True):
        if isinstance(result, str):
            return QueriesChecked(invalid=f"{where}: {result}")
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        return QueriesChecked(unchecked=f"Prometheus could not parse them: {failures[0]}")
    return QueriesChecked()
