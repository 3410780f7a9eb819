"""Pod templates compared by content: the freeze lets through exactly the template of the
last healthy release, whoever writes it (the operator's rollback, or `kubectl rollout undo`)."""

from __future__ import annotations

import copy
import hashlib
import json

HASH_LABEL = "pod-template-hash"


def strip(template: dict) -> dict:
    """A ReplicaSet's template as a Deployment would carry it: no pod-template-hash label
    (what `kubectl rollout undo` removes too)."""
    out = copy.deepcopy(template or {})
    meta = out.setdefault("metadata", {})
    (meta.get("labels") or {}).pop(HASH_LABEL, None)
    meta.pop("creationTimestamp", None)
    return out


def fingerprint(template: dict) -> str:
    canonical = json.dumps(strip(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]
