"""A policy's automation while it guards its targets (not only during an incident), only what
its runbook asks for (`asks`): RB-002's scheduled database checks (dbchecks/runner.py, in
status.scheduledChecks), and RB-003's: every interval, the retry backoff from the
queue-depth trend (backoff.py decides) and dead-letter routing, published into each
target's consumer contract ConfigMap. Each published change is recorded in the policy's
status.automation (with the value found before, the first time a key is touched) and told
as an Event; `restore` puts the values found back when the policy goes or its runbook's
automation is turned off, unless someone changed a key since.

Status (status.automation of the IncidentPolicy):
  targets: [{namespace, name, configMap, backoff, depth, sampledAt, trend,
             published: {key: value}, previous: {key: value | null}}]
  history: the newest changes, [{at, namespace, name, key, from, to}]"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from . import backoff, guard, tenancy, timeutil
from .dbchecks import runner
from .kube import Kube, NotFound
from .model import Automation, Runbook
from .parse import ModelError
from .signals.kubernetes import read_targets, target_namespaces
from .signals.prometheus import Answer

log = logging.getLogger(__name__)
HISTORY = 30
BACKOFF_KEY, DEAD_LETTER_KEY, STREAM_KEY = "retry-backoff", "dead-letter", "dead-letter-stream"


@dataclass
class Result:
    status: dict                                         # the new status.automation
    events: list[tuple[str, str, str]] = field(default_factory=list)   # type, reason, message
    wait: float = 10.0
    checks: dict | None = None                           # the new status.scheduledChecks


def asks(automation: Automation) -> bool:
    """Whether the runbook asks for anything to run while a policy guards: only then does a
    policy get its automation daemon (and kopf's finalizer for it)."""
    return automation.publishes or bool(automation.scheduled_checks)


def runbook_asks(body: dict) -> bool:
    """`asks` of a Runbook as the API returns it; one that cannot be read asks nothing (its
    Ready condition says why, and no policy guards with it)."""
    try:
        return asks(Runbook.parse(body).automation)
    except (ModelError, AttributeError, TypeError, ValueError, KeyError):
        return False


async def tick(ctx: guard.Context, body: dict, recorded: dict,
               checks: dict | None = None) -> Result:
    """One interval of the policy's automation: the consumer contract (RB-003) and the
    scheduled checks (RB-002), each only if the runbook asks for it."""
    resolved = await guard.resolve(ctx, body)
    if isinstance(resolved, guard.Readiness):   # guards nothing: changes nothing, keeps the record
        return Result(recorded, wait=10.0, checks=checks)
    result = await _contract(ctx, resolved, recorded)
    if resolved.runbook.automation.scheduled_checks:
        outcome = await runner.tick(ctx, resolved, checks or {})
        result.checks = outcome.status
        result.events += outcome.events
        result.wait = min(result.wait, outcome.wait)
    elif checks:
        result.checks = {}   # the runbook's checks are gone, and their findings with them
    return result


def wanted(automation: Automation, value: float | None) -> dict[str, str]:
    """The contract keys the automation holds, as it publishes them."""
    keys: dict[str, str] = {}
    if automation.adaptive_backoff is not None and value is not None:
        keys[BACKOFF_KEY] = backoff.shown(value)
    if automation.dead_letter_topic is not None:
        keys[DEAD_LETTER_KEY] = "on"
        keys[STREAM_KEY] = automation.dead_letter_topic
    return keys


async def _contract(ctx: guard.Context, resolved: guard.Resolved, recorded: dict) -> Result:
    """RB-003: the adaptive backoff and dead-letter routing in each target's contract."""
    policy, runbook = resolved.policy, resolved.runbook
    auto = runbook.automation
    dry_run = guard.mode_of(ctx, policy) == "dryRun"
    if not auto.publishes:
        if not recorded.get("targets"):
            return Result(recorded, wait=60.0)
        status, events = await restore(ctx.kube, recorded, dry_run=dry_run,
                                       why="the runbook's automation is off")
        return Result(status, events, wait=30.0)
    namespaces, _ = tenancy.split(await target_namespaces(ctx.kube, policy))
    targets = await read_targets(ctx.kube, policy, namespaces)
    keys = [t.key for t in targets]
    answer = Answer(error="no Prometheus configured")
    if auto.adaptive_backoff is not None and ctx.prometheus is not None:
        answer = await ctx.prometheus.by_target(auto.depth_query, keys)
    now = ctx.clock()
    before = {(t["namespace"], t["name"]): t for t in recorded.get("targets") or []}
    history = list(recorded.get("history") or [])
    entries, events = [], []
    run = _Pass(ctx.kube, auto, now, dry_run)
    for key in keys:
        entry, changed = await _one(run, before.get(key), key, answer.get(key))
        entries.append(entry)
        for name, old, new in changed:
            history.append({"at": timeutil.iso_precise(now), "namespace": key[0],
                            "name": key[1], "key": name, "from": old, "to": new})
            verb = "would set" if dry_run else "set"
            events.append(("Normal", "AutomationPublished",
                           f"{verb} {name} from {old!r} to {new!r} in ConfigMap "
                           f"{key[0]}/{auto.contract_config_map} ({entry['trend']} retry "
                           f"queue at depth {entry.get('depth')})"))
    # Targets no longer selected keep their entries: restored with the rest.
    entries += [t for k, t in before.items() if k not in set(keys)]
    status = {"targets": entries, "history": history[-HISTORY:]}
    return Result(status, events, wait=auto.backoff_interval)


@dataclass(frozen=True)
class _Pass:
    kube: Kube
    auto: Automation
    now: float
    dry_run: bool


async def _one(run: _Pass, prior: dict | None, key: tuple[str, str],
               depth: float | None) -> tuple[dict, list]:
    """One target: the next backoff, and the contract keys that differ published."""
    kube, auto, now, dry_run = run.kube, run.auto, run.now, run.dry_run
    namespace, name = key
    prior = prior or {}
    value = None
    state = None
    if auto.adaptive_backoff is not None:
        initial, maximum = auto.adaptive_backoff
        state = backoff.Backoff(float(prior.get("backoff", initial)), prior.get("depth"),
                                prior.get("sampledAt"))
        state = backoff.step(state, depth=depth, now=now, initial=initial, maximum=maximum)
        value = state.value
    entry = {"namespace": namespace, "name": name, "configMap": auto.contract_config_map,
             "published": dict(prior.get("published") or {}),
             "previous": dict(prior.get("previous") or {}),
             "trend": state.trend if state else "flat"}
    if state is not None:
        entry.update(backoff=state.value, depth=state.depth, sampledAt=state.at)
    try:
        live = await kube.json(kube.core.read_namespaced_config_map, auto.contract_config_map,
                               namespace)
    except NotFound:
        entry["message"] = f"ConfigMap {namespace}/{auto.contract_config_map} does not exist"
        return entry, []
    data = live.get("data") or {}
    changes = [(k, data.get(k), v) for k, v in wanted(auto, value).items() if data.get(k) != v]
    if not changes:
        return entry, []
    for k, old, new in changes:
        entry["previous"].setdefault(k, old)
        entry["published"][k] = new
    if not dry_run:
        await kube.call(kube.core.patch_namespaced_config_map, auto.contract_config_map,
                        namespace, {"data": {k: v for k, _, v in changes}})
    else:   # planned only: nothing was published, so nothing is owed back
        entry["published"], entry["previous"] = {}, {}
        entry["planned"] = {k: v for k, _, v in changes}
        if prior.get("planned") == entry["planned"]:
            return entry, []   # told already: not again every interval
    return entry, changes


async def restore(kube: Kube, recorded: dict, *, dry_run: bool,
                  why: str) -> tuple[dict, list[tuple[str, str, str]]]:
    """Each published key back to the value found before, unless its live value is no longer
    the one published (someone changed it: left as it is, and said)."""
    events = []
    for entry in recorded.get("targets") or []:
        namespace, config_map = entry["namespace"], entry["configMap"]
        published, previous = entry.get("published") or {}, entry.get("previous") or {}
        if not published:
            continue
        try:
            live = await kube.json(kube.core.read_namespaced_config_map, config_map, namespace)
        except NotFound:
            continue
        data = live.get("data") or {}
        back = {k: previous.get(k) for k, v in published.items() if data.get(k) == v}
        left = sorted(k for k, v in published.items() if data.get(k) != v)
        if back and not dry_run:
            await kube.call(kube.core.patch_namespaced_config_map, config_map, namespace,
                            {"data": back})
        if back:
            shown = ", ".join(f"{k}={v!r}" if v is not None else f"{k} removed"
                              for k, v in back.items())
            events.append(("Normal", "AutomationRestored",
                           f"{'would restore' if dry_run else 'restored'} {shown} in ConfigMap "
                           f"{namespace}/{config_map}: {why}"))
        if left:
            events.append(("Warning", "RevertSkipped",
                           f"left {', '.join(left)} in ConfigMap {namespace}/{config_map} as "
                           f"someone changed them since the automation published them"))
    if dry_run:
        return recorded, events
    return {"targets": [], "history": recorded.get("history") or []}, events
