"""Who owns a Deployment: its service name from labels (the Deployment's, then its
Namespace's), resolved through the ServiceOwnership map to contacts per role."""

from __future__ import annotations

from dataclasses import dataclass

from .labels import SERVICE
from .model import Ownership, Route

SERVICE_LABELS = SERVICE


def service_of(deployment_labels: dict[str, str] | None, namespace_labels: dict[str, str] | None,
               deployment_name: str) -> str:
    for labels in (deployment_labels or {}, namespace_labels or {}):
        for key in SERVICE_LABELS[:1]:
            if labels.get(key):
                return labels[key]
    for key in SERVICE_LABELS[1:]:
        if (deployment_labels or {}).get(key):
            return deployment_labels[key]
    return deployment_name


def find(ownerships: list[Ownership], service: str, *, name: str | None = None) -> Ownership | None:
    """An explicit reference wins; else the map that names the service."""
    if name is not None:
        return next((o for o in ownerships if o.name == name), None)
    return next((o for o in ownerships if o.service == service), None)


@dataclass(frozen=True)
class Recipient:
    role: str
    contact: str
    route: Route


def recipients(ownership: Ownership | None, roles: tuple[str, ...]) -> tuple[list[Recipient],
                                                                               list[str]]:
    """Contacts for the roles, and the roles nobody holds."""
    found: list[Recipient] = []
    missing: list[str] = []
    for role in roles:
        contacts = ownership.contacts(role) if ownership else ()
        if not contacts:
            missing.append(role)
        found.extend(Recipient(role, c.name, c.route) for c in contacts)
    return found, missing


def roles_named(runbook) -> tuple[str, ...]:  # noqa: ANN001 - a model.Runbook
    """Every role a runbook may page, in the order it would."""
    roles: list[str] = list(runbook.escalation.page)
    for step in runbook.steps:
        roles.extend(getattr(step.params, "roles", ()))
    for rule in runbook.escalation.rules:
        roles.extend(rule.page)
    return tuple(dict.fromkeys(roles))
