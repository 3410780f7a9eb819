"""The deploy freeze, enforced at admission: while an incident freezes a Deployment (or its
namespace), changes to its pod template are rejected, except a return to the last healthy
release's template (the operator's rollback, or a person's `kubectl rollout undo`)."""

from __future__ import annotations

import kopf

from .. import podtemplate
from ..actions.freeze import FROZEN


@kopf.on.validate("apps", "v1", "deployments", id="freeze", operations=["CREATE", "UPDATE"])
def check_freeze(body: kopf.Body, old: kopf.Body | None, freezes: kopf.Index,
                 operation: str, **_: object) -> None:
    namespace, name = body.metadata.namespace, body.metadata.name
    template = dict(body.spec.get("template") or {})
    if operation == "UPDATE" and old is not None and podtemplate.fingerprint(
            dict(old.get("spec", {}).get("template") or {})) == podtemplate.fingerprint(template):
        return   # scaling, labels, annotations: not a release
    found = [entry for key in (f"Deployment/{namespace}/{name}", f"Namespace/{namespace}")
             for entry in freezes.get(key, [])]
    if not found:
        labels = dict(body.metadata.labels or {})
        raise kopf.AdmissionError(
            f"{namespace}/{name} is marked frozen (label {FROZEN} on it or its namespace) but "
            f"no open incident holds the freeze: remove the label to deploy "
            f"(`kubectl label deployment/{name} -n {namespace} {FROZEN}-`"
            + ("" if labels.get(FROZEN) else f" or `kubectl label namespace {namespace} {FROZEN}-`")
            + ")", code=403)
    fingerprint = podtemplate.fingerprint(template)
    if any(entry.get("allowed") == fingerprint for entry in found):
        return   # back to the last healthy release: always allowed
    entry = found[0]
    healthy = (f"revision {entry['toRevision']}" if entry.get("toRevision") is not None
               else "no healthy release is known")
    raise kopf.AdmissionError(
        f"deployments of {namespace}/{name} are frozen by incident {entry['incident']}: "
        f"only a rollback to the last healthy release ({healthy}) is allowed. The freeze lifts "
        f"when the incident resolves; to lift it now: kubectl patch incident "
        f"{entry['incident']} -n {entry['namespace']} --type=merge "
        f"-p '{{\"spec\":{{\"liftFreeze\":true}}}}'", code=403)
