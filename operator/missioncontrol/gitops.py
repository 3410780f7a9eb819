"""The GitOps tool that owns a Deployment, as suspendGitOps meets it. Rolled back in place, a
Deployment that Flux or Argo CD applies from Git is put back to the broken release at the next
drift correction, so the step suspends its owner (Flux: `spec.suspend` of the Kustomization or
HelmRelease; Argo CD: the Application's automated sync), and the incident's freeze then holds
past resolution until the source revision moves on from the broken one (a fix landed in Git)
or a person lifts it. Resuming is the step's undo.

Who owns the Deployment is read from what the tools themselves put on the objects they apply:
  Flux       labels kustomize.toolkit.fluxcd.io/name + /namespace (a Kustomization), or
             helm.toolkit.fluxcd.io/name + /namespace (a HelmRelease: checked first, since a
             HelmRelease is often itself applied by a Kustomization);
  Argo CD    the annotation argocd.argoproj.io/tracking-id (`<app>:<group>/<kind>:<ns>/<name>`),
             else the label argocd.argoproj.io/instance; `<ns>_<app>` names an Application
             outside Argo CD's own namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import incident as inc
from .kube import Kube, NotFound

FLUX_KUSTOMIZE, FLUX_HELM = "kustomize.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io"
ARGO_TRACKING, ARGO_INSTANCE = "argocd.argoproj.io/tracking-id", "argocd.argoproj.io/instance"
ARGOCD_NAMESPACE = "argocd"   # where Argo CD keeps its Applications unless the name says


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str
    version: str
    plural: str


KUSTOMIZATION = Kind("Kustomization", FLUX_KUSTOMIZE, "v1", "kustomizations")
HELM_RELEASE = Kind("HelmRelease", FLUX_HELM, "v2", "helmreleases")
APPLICATION = Kind("Application", "argoproj.io", "v1alpha1", "applications")
OWNERS = {k.kind: k for k in (KUSTOMIZATION, HELM_RELEASE, APPLICATION)}
# Flux's sources: their status.artifact.revision moves when Git (or the chart) does, whether
# or not the Kustomization or HelmRelease reading them is suspended.
SOURCES = {k.kind: k for k in (
    Kind("GitRepository", "source.toolkit.fluxcd.io", "v1", "gitrepositories"),
    Kind("OCIRepository", "source.toolkit.fluxcd.io", "v1", "ocirepositories"),
    Kind("Bucket", "source.toolkit.fluxcd.io", "v1", "buckets"),
    Kind("HelmChart", "source.toolkit.fluxcd.io", "v1", "helmcharts"))}


@dataclass(frozen=True)
class Owner:
    kind: Kind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.kind} {self.namespace}/{self.name}"

    @property
    def argo(self) -> bool:
        return self.kind is APPLICATION


def owner_of(deployment: dict, *, argocd_namespace: str = ARGOCD_NAMESPACE) -> Owner | None:
    """The Flux or Argo CD object that applies this Deployment, or None."""
    meta = deployment.get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    for group, kind in ((FLUX_HELM, HELM_RELEASE), (FLUX_KUSTOMIZE, KUSTOMIZATION)):
        name = labels.get(f"{group}/name")
        if name:
            return Owner(kind, labels.get(f"{group}/namespace") or meta.get("namespace", ""),
                         name)
    tracking = notes.get(ARGO_TRACKING) or ""
    app = tracking.split(":", 1)[0] if ":" in tracking else labels.get(ARGO_INSTANCE)
    if app:
        namespace, _, name = app.rpartition("_")
        return Owner(APPLICATION, namespace or argocd_namespace, name)
    return None


# -- suspend and resume, as patches (pure) ------------------------------------------------------
FLUX_FIELD, ARGO_FIELD = "spec.suspend", "spec.syncPolicy.automated"


def field_of(owner: Owner) -> str:
    return ARGO_FIELD if owner.argo else FLUX_FIELD


def syncing(owner: Owner, body: dict) -> str | None:
    """What keeps it applying from Git, as the text a Change records (None: it does not:
    suspended, or Argo CD's sync is manual already)."""
    spec = body.get("spec") or {}
    if owner.argo:
        automated = (spec.get("syncPolicy") or {}).get("automated")
        if automated is None or automated.get("enabled") is False:
            return None
        return json.dumps(automated, sort_keys=True)
    return None if spec.get("suspend") is True else json.dumps(spec.get("suspend", False))


def suspend_patch(owner: Owner) -> dict:
    if owner.argo:
        return {"spec": {"syncPolicy": {"automated": None}}}
    return {"spec": {"suspend": True}}


def resume_patch(owner: Owner, before: str) -> dict:
    """Put back what `syncing` recorded."""
    if owner.argo:
        return {"spec": {"syncPolicy": {"automated": json.loads(before)}}}
    return {"spec": {"suspend": json.loads(before)}}


def managed_path(owner: Owner) -> tuple[str, ...]:
    """The field in managedFields' terms (who changed it since: actions.base.changed_by)."""
    if owner.argo:
        return ("f:spec", "f:syncPolicy", "f:automated")
    return ("f:spec", "f:suspend")


# -- the source revision ----------------------------------------------------------------------
def source_of(owner: Owner, body: dict) -> tuple[Kind, str, str] | None:
    """The Flux source whose artifact the owner applies (kind, namespace, name)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if owner.kind is KUSTOMIZATION:
        ref = spec.get("sourceRef") or {}
    elif spec.get("chartRef"):
        ref = spec["chartRef"]
    else:   # the HelmChart the helm-controller made for it, "<namespace>/<name>"
        namespace, _, name = (status.get("helmChart") or "").rpartition("/")
        ref = {"kind": "HelmChart", "name": name, "namespace": namespace}
    kind = SOURCES.get(ref.get("kind") or "")
    if kind is None or not ref.get("name"):
        return None
    return kind, ref.get("namespace") or owner.namespace, ref["name"]


def argo_revision(body: dict) -> str | None:
    sync = (body.get("status") or {}).get("sync") or {}
    revisions = sync.get("revisions") or []
    return ",".join(revisions) if revisions else (sync.get("revision") or None)


async def read(kube: Kube, kind: Kind, namespace: str, name: str) -> dict | None:
    try:
        return await kube.call(kube.custom.get_namespaced_custom_object, kind.group,
                               kind.version, namespace, kind.plural, name)
    except NotFound:   # not there, or the tool's CRD is not installed
        return None


async def revision(kube: Kube, owner: Owner, body: dict | None = None) -> tuple[
        str | None, str]:
    """The revision the owner would apply now, and where it was read ("GitRepository
    flux-system/shop"); None when it cannot be told (no source, no artifact yet)."""
    if body is None:
        body = await read(kube, owner.kind, owner.namespace, owner.name)
        if body is None:
            return None, str(owner)
    if owner.argo:
        return argo_revision(body), str(owner)
    source = source_of(owner, body)
    if source is None:
        return None, str(owner)
    kind, namespace, name = source
    where = f"{kind.kind} {namespace}/{name}"
    found = await read(kube, kind, namespace, name)
    artifact = ((found or {}).get("status") or {}).get("artifact") or {}
    return artifact.get("revision") or None, where


# -- the hold (pure) -----------------------------------------------------------------------------
def holding(status: inc.IncidentStatus) -> bool:
    """Resolved with its GitOps owner suspended: the freeze stays and the incident's daemon
    watches the source revision. (Closing it resumes GitOps: the step's undo on Closed.)"""
    hold = status.gitops
    return hold is not None and hold.released_at is None and status.phase == inc.RESOLVED


def hold_over(hold: inc.GitOpsHold, current: str | None, *, lift_asked: bool) -> str | None:
    """Why the hold ends now, or None. A revision that cannot be read is no change."""
    if lift_asked:
        return "lifted by hand (spec.liftFreeze)"
    if hold.revision and current and current != hold.revision:
        return f"the source revision moved on from {hold.revision} to {current}"
    return None


def held_message(hold: inc.GitOpsHold) -> str:
    at = f" at revision {hold.revision}" if hold.revision else ""
    until = ("until the source revision moves on or a person lifts it" if hold.revision else
             "until a person lifts it (the source revision could not be read)")
    return (f"deploy freeze held past resolution: {hold.kind} {hold.namespace}/{hold.name} "
            f"is suspended{at} ({hold.source}); it lifts, and GitOps resumes, {until} "
            f"(kubectl mc lift-freeze)")
