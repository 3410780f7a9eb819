"""suspendGitOps: stop Flux or Argo CD from re-applying the broken release over the rollback
(gitops.py finds the owner and says how). Recorded with its undo, which resumes it; the
incident holds its freeze past resolution until the source revision moves on (engine)."""

from __future__ import annotations

from .. import gitops
from ..incident import Change, GitOpsHold, StepRecord
from ..kube import Kube
from ..model import Step, SuspendGitOps
from .base import Action, StepContext, StepResult, changed_by, reversed_changes, undone


async def suspend_gitops(ctx: StepContext, step: Step) -> StepResult:
    params: SuspendGitOps = step.params
    namespace, name = ctx.target
    deployment = await ctx.kube.json(ctx.kube.apps.read_namespaced_deployment, name, namespace)
    owner = gitops.owner_of(deployment, argocd_namespace=params.argocd_namespace)
    if owner is None:
        return StepResult.ok(f"Deployment {namespace}/{name} is not applied by Flux or Argo CD "
                             f"(no label or annotation of theirs): nothing to suspend")
    body = await gitops.read(ctx.kube, owner.kind, owner.namespace, owner.name)
    if body is None:
        return StepResult.failed(f"Deployment {namespace}/{name} names {owner} as its GitOps "
                                 f"owner, which cannot be found: it may re-apply the broken "
                                 f"release", escalate=f"{owner} not found")
    before = gitops.syncing(owner, body)
    if before is None:
        return StepResult.ok(f"{owner} does not sync by itself (suspended or manual sync "
                             f"already): nothing to suspend")
    revision, source = await gitops.revision(ctx.kube, owner, body)
    change = Change(owner.kind.kind, owner.name, gitops.field_of(owner), before,
                    "manual sync" if owner.argo else "true", owner.namespace)
    hold = GitOpsHold(step.id, owner.kind.kind, owner.namespace, owner.name, source, revision,
                      ctx.clock())
    at = f" at revision {revision}" if revision else " (its source revision unknown)"
    if ctx.dry_run:
        return StepResult.planned(f"would suspend {owner}{at}", changes=(change,))
    await ctx.kube.call(ctx.kube.custom.patch_namespaced_custom_object, owner.kind.group,
                        owner.kind.version, owner.namespace, owner.kind.plural, owner.name,
                        gitops.suspend_patch(owner))
    return StepResult.ok(f"suspended {owner}{at}: it no longer re-applies the release from "
                         f"{source}", changes=(change,), updates={"gitops": hold})


async def resume_gitops(kube: Kube, change: Change, *, dry_run: bool) -> tuple[str, str]:
    """("done" | "skipped", what to say): put back what the change recorded, unless someone
    resumed or changed it since."""
    owner = gitops.Owner(gitops.OWNERS[change.kind], change.namespace or "", change.name)
    body = await gitops.read(kube, owner.kind, owner.namespace, owner.name)
    if body is None:
        return "skipped", f"Skipped: {owner} is gone"
    now = gitops.syncing(owner, body)
    if now == change.from_:
        return "done", f"{owner} (already resumed)"
    if now is not None:
        return "skipped", (f"Skipped: {owner} syncs again, as "
                           f"{changed_by(body, gitops.managed_path(owner))} set it")
    if not dry_run:
        await kube.call(kube.custom.patch_namespaced_custom_object, owner.kind.group,
                        owner.kind.version, owner.namespace, owner.kind.plural, owner.name,
                        gitops.resume_patch(owner, change.from_ or "false"))
    return "done", f"resumed {owner}"


class SuspendGitOpsAction(Action):
    name = "suspendGitOps"
    undoable = True
    # Not undone on resolution: the incident holds it (and its freeze) until the source
    # revision moves on or a person lifts the freeze; closing the incident resumes it.
    revert_on = ("Closed",)

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        return await suspend_gitops(ctx, step)

    async def undo(self, *, kube: Kube, record: StepRecord, dry_run: bool) -> StepResult:
        done, skipped = [], []
        for change in record.changes:
            outcome, said = await resume_gitops(kube, change, dry_run=dry_run)
            (done if outcome == "done" else skipped).append(said)
        return undone(done, skipped, reversed_changes(record.changes), dry_run)

    def describe(self, params: SuspendGitOps) -> list[str]:
        return ["Suspend the Flux Kustomization or HelmRelease, or the Argo CD Application's "
                "automated sync, that applies the target (found from its labels and "
                "annotations), so drift correction does not re-apply the broken release; "
                "the freeze then holds past resolution until the source revision moves on or "
                "a person lifts it, and GitOps resumes then "
                f"(Applications in `{params.argocd_namespace}` unless their name says)."]


ACTION = SuspendGitOpsAction()
