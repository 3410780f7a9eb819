"""The deploy freeze, enforced at admission: while an incident freezes a Deployment (or its
namespace), changes to its pod template are rejected, except a return to the last healthy
release's template (the operator's rollback, or a person's `kubectl rollout undo`)."""

from __future__ import annotations

import kopf

from .. import GROUP, VERSION, podtemplate
from ..actions.freeze import FROZEN
from ..kube import PLURALS
from . import incidents

# The API server gives the webhook 5 s: a read of the cluster must leave time to answer.
LIVE_READ_TIMEOUT = (1.0, 2.0)


@kopf.on.validate("apps", "v1", "deployments", id="freeze", operations=["CREATE", "UPDATE"])
def check_freeze(body: kopf.Body, old: kopf.Body | None, freezes: kopf.Index,
                 operation: str, memo: kopf.Memo | None = None, **_: object) -> None:
    namespace, name = body.metadata.namespace, body.metadata.name
    template = dict(body.spec.get("template") or {})
    if operation == "UPDATE" and old is not None and podtemplate.fingerprint(
            dict(old.get("spec", {}).get("template") or {})) == podtemplate.fingerprint(template):
        return   # scaling, labels, annotations: not a release
    keys = (f"Deployment/{namespace}/{name}", f"Namespace/{namespace}")
    found = [entry for key in keys for entry in freezes.get(key, [])]
    if not found and memo is not None:
        # The index follows a watch, which can lag the operator's own writes (by seconds
        # after an API server outage: kopf's watch resumes after our loops do). Before
        # refusing, ask the cluster: the freeze just recorded lets its own rollback pass.
        found = _live_freezes(memo.kube, namespace, keys)
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


def _live_freezes(kube, namespace: str, keys: tuple[str, ...]) -> list[dict]:
    """The active freezes of `keys` as the Incidents in the cluster hold them now (kopf runs
    this handler in a thread: a blocking read with a short deadline). Unreadable: none."""
    try:
        listing = kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS["Incident"], _request_timeout=LIVE_READ_TIMEOUT)
    except Exception:  # noqa: BLE001 - the freeze stays closed: refusing is the safe answer
        return []
    return [entry for item in listing.get("items") or []
            for key, entry in incidents.freezes(kopf.Body(item)).items() if key in keys]
