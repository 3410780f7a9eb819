"""GitOps-aware rollback end to end: RB-001 on a Deployment that Flux (a Kustomization) or
Argo CD (an Application with automated sync) applies. The rollback's step suspendGitOps
suspends the owner so drift correction cannot put the broken release back; past resolution
the freeze holds, until the Flux source's revision moves on (a fix landed in Git) or a person
lifts the freeze; then GitOps resumes, as the step's undo, and the timeline says so.

Flux's and Argo CD's CRDs are installed as their Go modules ship them (tests/harness/gitops);
no Flux or Argo CD controller runs, so the test writes what their controllers would (the
GitRepository's artifact revision, the Application's sync status)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from e2e.conftest import rb001_policy
from harness import objects
from harness.crds import install_file
from harness.procs import wait_for

pytestmark = pytest.mark.cluster

CRDS = Path(__file__).resolve().parents[1] / "harness" / "gitops"
FLUX_SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories")
FLUX_KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations")
ARGO = ("argoproj.io", "v1alpha1", "applications")
BROKEN_COMMIT, FIX_COMMIT = "main@sha1:" + "1" * 40, "main@sha1:" + "2" * 40
AUTOMATED = {"prune": True, "selfHeal": True}


@pytest.fixture(scope="module")
def gitops_crds(env):
    for name, crd in (("flux-gitrepositories.yaml", "gitrepositories.source.toolkit.fluxcd.io"),
                      ("flux-kustomizations.yaml", "kustomizations.kustomize.toolkit.fluxcd.io"),
                      ("argocd-applications.yaml", "applications.argoproj.io")):
        install_file(env.kubectl, env.api, CRDS / name, crd)


def custom(env) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(env.api)


def artifact(revision: str) -> dict:
    return {"artifact": {"revision": revision, "digest": "sha256:" + "a" * 64,
                         "lastUpdateTime": "2030-01-01T10:00:00Z", "path": "gitrepository/x.tar.gz",
                         "url": "http://source-controller/x.tar.gz"}}


def checkout(rb001, cluster, *, labels=None, annotations=None) -> None:
    """checkout revision 1, healthy, applied (its labels say) by a GitOps tool."""
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0", labels=labels,
                                      annotations=annotations))
    wait_for(lambda: cluster.target_state("checkout-guard", "checkout").get(
        "lastHealthyRevision") == 1, timeout=60, what="revision 1 of checkout recorded as healthy")


def step(cluster, name: str, step_id: str) -> dict | None:
    return next((s for s in (cluster.get("Incident", name).get("status") or {}).get("steps")
                 or [] if s["id"] == step_id), None)


def done(cluster, name: str, step_id: str) -> dict:
    return wait_for(lambda: (s := step(cluster, name, step_id)) and s.get("state") in (
        "Succeeded", "Failed", "Skipped") and s, timeout=60, what=f"step {step_id} done")


def timeline(cluster, name: str, kind: str) -> list[dict]:
    return [e for e in cluster.get("Incident", name)["status"].get("timeline") or []
            if e["type"] == kind]


def frozen(cluster) -> bool:
    labels = cluster.core.read_namespace(cluster.namespace).metadata.labels or {}
    return labels.get("missioncontrol.dev/frozen") == "true"


def resolved_and_held(cluster, name: str) -> dict:
    """Resolved, yet the freeze holds: the namespace still frozen, the hold said."""
    body = cluster.wait_phase(name, "Resolved", timeout=90)
    held = wait_for(lambda: timeline(cluster, name, "FreezeHeld"), timeout=30,
                    what="the freeze held past resolution")
    assert body["status"]["freeze"]["active"] is True, body["status"]["freeze"]
    assert frozen(cluster)
    return held[0]


def test_flux_is_suspended_and_the_freeze_holds_until_git_moves_on(
        gitops_crds, rb001, cluster, env):
    ns, api = cluster.namespace, custom(env)
    api.create_namespaced_custom_object(*FLUX_SOURCE[:2], ns, FLUX_SOURCE[2], {
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "shop"},
        "spec": {"interval": "1m", "url": "https://git.example/shop.git"}})
    api.patch_namespaced_custom_object_status(*FLUX_SOURCE[:2], ns, FLUX_SOURCE[2], "shop",
                                              {"status": artifact(BROKEN_COMMIT)})
    api.create_namespaced_custom_object(*FLUX_KUSTOMIZE[:2], ns, FLUX_KUSTOMIZE[2], {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "shop"},
        "spec": {"interval": "5m", "prune": True, "path": "./deploy",
                 "sourceRef": {"kind": "GitRepository", "name": "shop"}}})
    cluster.create(rb001_policy())
    rb001.start_operator()
    checkout(rb001, cluster, labels={"kustomize.toolkit.fluxcd.io/name": "shop",
                                     "kustomize.toolkit.fluxcd.io/namespace": ns})

    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    suspended = done(cluster, name, "suspend-gitops")
    assert suspended["state"] == "Succeeded", suspended
    assert f"suspended Kustomization {ns}/shop at revision {BROKEN_COMMIT}" in \
        suspended["message"]
    assert suspended["changes"] == [{"kind": "Kustomization", "name": "shop",
                                     "field": "spec.suspend", "from": "false", "to": "true",
                                     "namespace": ns}]
    kustomization = lambda: api.get_namespaced_custom_object(  # noqa: E731
        *FLUX_KUSTOMIZE[:2], ns, FLUX_KUSTOMIZE[2], "shop")
    assert kustomization()["spec"]["suspend"] is True
    hold = cluster.get("Incident", name)["status"]["gitops"]
    assert (hold["kind"], hold["name"], hold["revision"], hold["source"]) == (
        "Kustomization", "shop", BROKEN_COMMIT, f"GitRepository {ns}/shop")

    held = resolved_and_held(cluster, name)
    assert f"Kustomization {ns}/shop is suspended at revision {BROKEN_COMMIT}" in held["message"]
    assert kustomization()["spec"]["suspend"] is True
    assert step(cluster, name, "revert:suspend-gitops") is None

    # The fix lands in Git: the source's artifact moves on, and the hold ends by itself.
    api.patch_namespaced_custom_object_status(*FLUX_SOURCE[:2], ns, FLUX_SOURCE[2], "shop",
                                              {"status": artifact(FIX_COMMIT)})
    resumed = done(cluster, name, "revert:suspend-gitops")
    assert resumed["state"] == "Succeeded", resumed
    assert kustomization()["spec"]["suspend"] is False
    status = cluster.get("Incident", name)["status"]
    assert status["freeze"]["active"] is False and not frozen(cluster)
    assert status["gitops"]["releasedBecause"] == (
        f"the source revision moved on from {BROKEN_COMMIT} to {FIX_COMMIT}")
    lifted = timeline(cluster, name, "FreezeLifted")
    assert lifted and FIX_COMMIT in lifted[-1]["message"], lifted
    assert timeline(cluster, name, "Reverted"), status["timeline"]
    assert status["phase"] == "Resolved"


def test_argo_cd_auto_sync_goes_off_and_comes_back_when_git_moves_on(
        gitops_crds, rb001, cluster, env):
    ns, api = cluster.namespace, custom(env)
    # An Application in the target's namespace: Argo CD's `<namespace>_<app>` tracking id.
    api.create_namespaced_custom_object(*ARGO[:2], ns, ARGO[2], {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "shop"},
        "spec": {"project": "default",
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
                 "source": {"repoURL": "https://git.example/shop.git", "path": "deploy",
                            "targetRevision": "main"},
                 "syncPolicy": {"automated": AUTOMATED}},
        "status": {"sync": {"status": "Synced", "revision": "1" * 40}}})
    cluster.create(rb001_policy())
    rb001.start_operator()
    checkout(rb001, cluster, annotations={
        "argocd.argoproj.io/tracking-id": f"{ns}_shop:apps/Deployment:{ns}/checkout"})

    cluster.release("checkout", image="shop/checkout:2.0", ready=False)
    name = cluster.one_incident()["metadata"]["name"]
    suspended = done(cluster, name, "suspend-gitops")
    assert suspended["state"] == "Succeeded", suspended
    application = lambda: api.get_namespaced_custom_object(  # noqa: E731
        *ARGO[:2], ns, ARGO[2], "shop")
    assert "automated" not in application()["spec"]["syncPolicy"]
    held = resolved_and_held(cluster, name)
    assert f"Application {ns}/shop is suspended at revision {'1' * 40}" in held["message"]
    assert "automated" not in application()["spec"]["syncPolicy"]

    # Argo CD compares with Git even with auto-sync off: the fix shows as a new revision.
    api.patch_namespaced_custom_object(*ARGO[:2], ns, ARGO[2], "shop", {
        "status": {"sync": {"status": "OutOfSync", "revision": "2" * 40}}})
    resumed = done(cluster, name, "revert:suspend-gitops")
    assert resumed["state"] == "Succeeded", resumed
    assert application()["spec"]["syncPolicy"]["automated"] == AUTOMATED
    status = cluster.get("Incident", name)["status"]
    assert status["freeze"]["active"] is False and not frozen(cluster)
    assert status["gitops"]["releasedBecause"] == (
        f"the source revision moved on from {'1' * 40} to {'2' * 40}")
