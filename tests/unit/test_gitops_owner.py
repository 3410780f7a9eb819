"""Who applies a Deployment from Git (gitops.py), how it is suspended and resumed, and when the
freeze held for it ends. Pure."""

from __future__ import annotations

from dataclasses import replace

from missioncontrol import gitops
from missioncontrol import incident as inc


def deployment(*, labels: dict | None = None, annotations: dict | None = None) -> dict:
    return {"metadata": {"name": "checkout", "namespace": "shop", "labels": labels or {},
                         "annotations": annotations or {}}}


def test_the_owner_is_read_from_what_flux_and_argo_cd_put_on_the_objects_they_apply():
    assert gitops.owner_of(deployment()) is None
    flux = gitops.owner_of(deployment(labels={
        "kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace":
        "flux-system"}))
    assert (flux.kind, flux.namespace, flux.name) == (gitops.KUSTOMIZATION, "flux-system",
                                                      "apps")
    # A HelmRelease applied by a Kustomization: the HelmRelease is what applies the Deployment.
    helm = gitops.owner_of(deployment(labels={
        "kustomize.toolkit.fluxcd.io/name": "apps", "helm.toolkit.fluxcd.io/name": "checkout",
        "helm.toolkit.fluxcd.io/namespace": "shop"}))
    assert (helm.kind, str(helm)) == (gitops.HELM_RELEASE, "HelmRelease shop/checkout")
    tracked = gitops.owner_of(deployment(annotations={
        "argocd.argoproj.io/tracking-id": "shop-prod:apps/Deployment:shop/checkout"}))
    assert str(tracked) == "Application argocd/shop-prod" and tracked.argo
    elsewhere = gitops.owner_of(deployment(labels={"argocd.argoproj.io/instance": "team_shop"}),
                                argocd_namespace="gitops")
    assert str(elsewhere) == "Application team/shop"
    assert str(gitops.owner_of(deployment(labels={"argocd.argoproj.io/instance": "shop"}),
                               argocd_namespace="gitops")) == "Application gitops/shop"


def test_suspending_records_what_kept_it_syncing_and_resuming_puts_exactly_that_back():
    flux = gitops.Owner(gitops.KUSTOMIZATION, "flux-system", "apps")
    assert gitops.syncing(flux, {"spec": {}}) == "false"
    assert gitops.syncing(flux, {"spec": {"suspend": True}}) is None   # suspended already
    assert gitops.suspend_patch(flux) == {"spec": {"suspend": True}}
    assert gitops.resume_patch(flux, "false") == {"spec": {"suspend": False}}
    argo = gitops.Owner(gitops.APPLICATION, "argocd", "shop")
    automated = {"spec": {"syncPolicy": {"automated": {"prune": True, "selfHeal": True}}}}
    before = gitops.syncing(argo, automated)
    assert gitops.suspend_patch(argo) == {"spec": {"syncPolicy": {"automated": None}}}
    assert gitops.resume_patch(argo, before) == automated
    assert gitops.syncing(argo, {"spec": {"syncPolicy": {}}}) is None   # manual sync
    assert gitops.syncing(argo, {"spec": {"syncPolicy": {"automated": {"enabled": False}}}}) \
        is None


def test_the_revision_is_read_where_it_moves_while_the_owner_is_suspended():
    kustomization = gitops.Owner(gitops.KUSTOMIZATION, "flux-system", "apps")
    kind, namespace, name = gitops.source_of(kustomization, {"spec": {"sourceRef": {
        "kind": "GitRepository", "name": "fleet"}}})
    assert (kind.plural, namespace, name) == ("gitrepositories", "flux-system", "fleet")
    release = gitops.Owner(gitops.HELM_RELEASE, "shop", "checkout")
    kind, namespace, name = gitops.source_of(release, {"status": {"helmChart":
                                                                  "flux-system/shop-checkout"}})
    assert (kind.kind, namespace, name) == ("HelmChart", "flux-system", "shop-checkout")
    assert gitops.source_of(release, {"spec": {"chartRef": {"kind": "OCIRepository",
                                                            "name": "chart"}}})[2] == "chart"
    assert gitops.source_of(kustomization, {"spec": {}}) is None
    assert gitops.argo_revision({"status": {"sync": {"revision": "abc"}}}) == "abc"
    assert gitops.argo_revision({"status": {"sync": {"revisions": ["a", "b"]}}}) == "a,b"
    assert gitops.argo_revision({}) is None


HOLD = inc.GitOpsHold("suspend-gitops", "Kustomization", "flux-system", "apps",
                      "GitRepository flux-system/fleet", "main@sha1:111", 10.0)


def test_the_hold_ends_when_git_moves_on_or_a_person_lifts_it_and_not_on_no_data():
    assert gitops.hold_over(HOLD, "main@sha1:111", lift_asked=False) is None
    assert gitops.hold_over(HOLD, None, lift_asked=False) is None   # unreadable: no change
    assert gitops.hold_over(HOLD, "main@sha1:222", lift_asked=False) == (
        "the source revision moved on from main@sha1:111 to main@sha1:222")
    assert gitops.hold_over(HOLD, None, lift_asked=True) == "lifted by hand (spec.liftFreeze)"
    unknown = replace(HOLD, revision=None)
    assert gitops.hold_over(unknown, "main@sha1:222", lift_asked=False) is None
    assert "until a person lifts it" in gitops.held_message(unknown)


def test_only_a_resolved_incident_with_its_owner_still_suspended_is_holding():
    status = inc.IncidentStatus(phase=inc.RESOLVED, gitops=HOLD)
    assert gitops.holding(status)
    assert not gitops.holding(replace(status, phase=inc.MITIGATED))   # open: the freeze holds
    assert not gitops.holding(replace(status, phase=inc.CLOSED))      # closing resumes it
    assert not gitops.holding(replace(status, gitops=replace(HOLD, released_at=20.0)))
    assert not gitops.holding(inc.IncidentStatus(phase=inc.RESOLVED))
