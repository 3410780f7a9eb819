"""Replay a sampled batch in staging: one Job, named after the incident (so it is created
once however often the step runs)."""

from __future__ import annotations

from .. import labels, tenancy
from ..incident import Change
from ..kube import ApiException
from ..markdown import code
from ..model import ReplaySample, Step
from .base import Action, StepContext, StepResult


async def replay_sample(ctx: StepContext, step: Step) -> StepResult:
    params: ReplaySample = step.params
    job_name = f"replay-{ctx.name}"[:63]
    container = {"name": "replay", "image": params.image,
                 "env": [{"name": "SAMPLE_SIZE", "value": str(params.sample)},
                         {"name": "INCIDENT", "value": f"{ctx.namespace}/{ctx.name}"}]}
    if params.command:
        container["command"] = list(params.command)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": job_name, "labels": {labels.INCIDENT: ctx.name}},
           "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400, "template": {
               "spec": {"restartPolicy": "Never", "containers": [container]}}}}
    change = Change("Job", job_name, "created", None, f"replay of {params.sample} events",
                    params.namespace)
    tenancy.refuse_protected(params.namespace, what=f"create Job {job_name}")
    if ctx.dry_run:
        return StepResult.planned(f"would start Job {params.namespace}/{job_name}",
                                  changes=(change,))
    try:
        await ctx.kube.call(ctx.kube.batch.create_namespaced_job, params.namespace, job)
    except ApiException as exc:
        if exc.status != 409:
            raise
    return StepResult.ok(f"started Job {params.namespace}/{job_name} replaying "
                         f"{params.sample} sampled events", changes=(change,))


class ReplayAction(Action):
    name = "replaySample"

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await replay_sample(ctx, step)

    def describe(self, params: ReplaySample) -> list[str]:
        command = f", running {code(' '.join(params.command))}" if params.command else ""
        return [f"Replay a sample of {params.sample} events in namespace `{params.namespace}` "
                f"with image `{params.image}`{command}."]


ACTION = ReplayAction()
