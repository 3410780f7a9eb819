"""Tenancy: which namespaces the operator may act in, and which namespaces a policy may reach.

One rule, set once at start-up, asked at every place where a policy's choice turns into a
read or a write: the targets a policy guards (signals/kubernetes.py), the Secrets read for
pages (paging.py, handlers/catalogue.py), the freeze labels (actions/freeze.py), the steps an
incident runs on its target (engine.py) and the Jobs a replay creates (actions/replay.py).
Whatever a policy selects, the operator never acts in a protected namespace: by default the
cluster's own (kube-system, kube-public, kube-node-lease) and the operator's.

A policy reaches only its own namespace, unless the operator was started with namespaces a
policy may also refer to (`--allow-reference-namespace`); a policy that selects namespaces
(`namespaceSelector`) may live only in a namespace named as a cluster-policy namespace
(`--cluster-policy-namespace`). The CRD cannot judge these (CEL on a custom resource sees no
`metadata.namespace`), so the policy reports them as Ready=False."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .model import Policy, ReplaySample, Runbook

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
# Where a pod learns its own namespace: the downward API (POD_NAMESPACE, set in
# deploy/operator.yaml), else the ServiceAccount token's mount.
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ProtectedNamespace(Exception):
    """An action a policy asked for, refused because it would touch a protected namespace."""

    def __init__(self, namespace: str, what: str) -> None:
        super().__init__(f"refused to {what} in namespace {namespace}: it is protected or "
                         f"not watched (the operator never acts there; see "
                         f"--protected-namespaces and --namespace)")
        self.namespace = namespace


@dataclass(frozen=True)
class Rules:
    protected: frozenset[str] = frozenset(SYSTEM_NAMESPACES)
    reference_namespaces: frozenset[str] = frozenset()   # a policy may refer to these too
    cluster_policy_namespaces: frozenset[str] = frozenset()   # namespaceSelector allowed here
    # The namespaces the operator watches (`missionctl run -n`; empty: all). Outside them it
    # never acts either: the namespaced install grants it nothing there.
    watched: frozenset[str] = frozenset()


RULES = Rules()


def own_namespace() -> str | None:
    """The operator's namespace when it runs in a pod; None outside one."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def default_protected(own: str | None) -> tuple[str, ...]:
    return SYSTEM_NAMESPACES + ((own,) if own else ())


def configure(*, protected: Iterable[str], reference_namespaces: Iterable[str] = (),
              cluster_policy_namespaces: Iterable[str] = (),
              watched: Iterable[str] = ()) -> Rules:
    global RULES
    RULES = Rules(frozenset(n for n in protected if n), frozenset(reference_namespaces),
                  frozenset(cluster_policy_namespaces), frozenset(watched))
    return RULES


def is_protected(namespace: str) -> bool:
    """Protected, or outside the namespaces the operator watches."""
    return namespace in RULES.protected or bool(RULES.watched and namespace not in RULES.watched)


def refuse_protected(namespace: str, *, what: str) -> None:
    """Raise ProtectedNamespace before any call that would `what` in `namespace`."""
    if is_protected(namespace):
        raise ProtectedNamespace(namespace, what)


def split(namespaces: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the namespaces the operator may guard, the protected ones among them)."""
    names = list(namespaces)
    return ([n for n in names if not is_protected(n)], [n for n in names if is_protected(n)])


def reference_violations(policy: Policy, runbook: Runbook) -> list[str]:
    """What the policy (with its runbook) reaches beyond its own namespace, and the rule
    that forbids it; empty when it stays within bounds. Runbook, ServiceOwnership and every
    Secret a policy names are read in the policy's own namespace by construction (their
    references carry no namespace); what can point elsewhere is checked here."""
    own = policy.namespace
    may_reach = {own} | RULES.reference_namespaces
    out = []
    if policy.namespace_selector is not None and own not in RULES.cluster_policy_namespaces:
        allowed = ", ".join(sorted(RULES.cluster_policy_namespaces)) or "none"
        out.append(f"spec.targets.namespaceSelector: a policy that selects namespaces may "
                   f"live only in a cluster-policy namespace (--cluster-policy-namespace; "
                   f"allowed: {allowed}), not in {own}")
    for step in runbook.steps:
        params = step.params
        if isinstance(params, ReplaySample) and params.namespace not in may_reach:
            out.append(f"runbook {runbook.name} step {step.id}: replaySample.namespace "
                       f"{params.namespace} is not the policy's namespace {own} (allow it "
                       f"with --allow-reference-namespace)")
    return out


def policy_namespace_allowed(incident_namespace: str, policy_namespace: str) -> bool:
    """An Incident names the namespace of the policy that opened it (an annotation): honour
    it only where a policy could have opened an incident from there, so an Incident written
    by hand cannot borrow another namespace's runbook."""
    return (policy_namespace == incident_namespace
            or policy_namespace in RULES.cluster_policy_namespaces)
