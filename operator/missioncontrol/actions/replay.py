"""Replay a sampled batch in staging: one Job, named after the incident (so it is created
once however often the step runs)."""

from __future__ import annotations

import asyncio

from .. import labels, tenancy
from ..incident import Change
from ..kube import Conflict, NotFound
from ..markdown import code
from ..model import ReplaySample, Step
from .base import Action, StepContext, StepResult

SAMPLE_LIMIT = 256 * 1024   # bytes of events carried in the Job (the object stays small)
# A consumer writes its sample every few seconds (the contract: docs/contracts/
# rb-003-webhook-consumer.md), so right after detection it may not be there yet: the step
# looks again once a second for this long before it fails.
SAMPLE_WAIT = 30


async def sample_of(ctx: StepContext, params: ReplaySample) -> list[str] | None:
    """Up to `sample` real events from the consumer's sample ConfigMap, newest first as it
    keeps them; None when it has none to give."""
    if params.sample_from is None:
        return None
    config_map, key = params.sample_from
    namespace, _ = ctx.target
    try:
        body = await ctx.kube.json(ctx.kube.core.read_namespaced_config_map, config_map,
                                   namespace)
    except NotFound:
        return None
    events, size = [], 0
    for line in ((body.get("data") or {}).get(key) or "").splitlines():
        if line.strip() and len(events) < params.sample and size + len(line) < SAMPLE_LIMIT:
            events.append(line)
            size += len(line) + 1
    return events or None


async def awaited_sample(ctx: StepContext, params: ReplaySample, *,
                         wait: int = SAMPLE_WAIT, pause: float = 1.0) -> list[str] | None:
    """The sample, looked for again once a `pause` for up to `wait` looks."""
    for look in range(wait):
        events = await sample_of(ctx, params)
        if events is not None or params.sample_from is None:
            return events
        if look + 1 < wait:
            await asyncio.sleep(pause)
    return None


async def replay_sample(ctx: StepContext, step: Step) -> StepResult:
    params: ReplaySample = step.params
    job_name = f"replay-{ctx.name}"[:63]
    container = {"name": "replay", "image": params.image,
                 "env": [{"name": "SAMPLE_SIZE", "value": str(params.sample)},
                         {"name": "INCIDENT", "value": f"{ctx.namespace}/{ctx.name}"}]}
    events = await awaited_sample(ctx, params)
    if params.sample_from is not None and events is None:
        return StepResult.failed(f"no sample to replay: ConfigMap {ctx.target[0]}/"
                                 f"{params.sample_from[0]} has no events under "
                                 f"{params.sample_from[1]} after {SAMPLE_WAIT} s")
    if events is not None:
        container["env"] += [{"name": "SAMPLE_EVENTS", "value": "\n".join(events)}]
    if params.command:
        container["command"] = list(params.command)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": job_name, "labels": {labels.INCIDENT: ctx.name},
                        "annotations": {labels.INCIDENT: f"{ctx.namespace}/{ctx.name}"}},
           "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400, "template": {
               "spec": {"restartPolicy": "Never", "containers": [container]}}}}
    count = len(events) if events is not None else params.sample
    change = Change("Job", job_name, "created", None, f"replay of {count} events",
                    params.namespace)
    tenancy.refuse_protected(params.namespace, what=f"create Job {job_name}")
    if ctx.dry_run:
        return StepResult.planned(f"would start Job {params.namespace}/{job_name}",
                                  changes=(change,))
    try:
        await ctx.kube.call(ctx.kube.batch.create_namespaced_job, params.namespace, job)
    except Conflict:
        pass   # created once: the Job is named after the incident
    return StepResult.ok(f"started Job {params.namespace}/{job_name} replaying "
                         f"{count} sampled events", changes=(change,))


class ReplayAction(Action):
    name = "replaySample"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await replay_sample(ctx, step)

    def describe(self, params: ReplaySample) -> list[str]:
        command = f", running {code(' '.join(params.command))}" if params.command else ""
        return [f"Replay a sample of {params.sample} events in namespace `{params.namespace}` "
                f"with image `{params.image}`{command}."]


ACTION = ReplayAction()
