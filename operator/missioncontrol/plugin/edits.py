"""What `kubectl mc` writes, as patches built from what it read. Pure.

Lists people add to (acknowledgements, action items) are appended with JSON patch `add` at
`/-`: the API server applies the patch to the object as it is when it writes it, so an entry
a colleague added a moment earlier is kept (a merge patch would replace the whole list). When
the list does not exist yet, a `test` that it is still absent comes first: if someone created
it meanwhile, the API server refuses the patch and the caller appends instead."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import durations, timeutil
from ..model import LONG, ROLES, SEVERITIES

ITEM_KEYS = ("title", "assignee", "due")
# `title=Fix the probe, add a canary,assignee=ada`: a comma starts a new key only before one
# of the known keys, so a title may hold commas.
_ITEM_SPLIT = re.compile(r",\s*(?=(?:" + "|".join(ITEM_KEYS) + r")=)")


class EditError(ValueError):
    """A request that cannot be turned into a patch (the message says what to fix)."""


def append(path: str, current: list | None, entries: list[dict]) -> list[dict]:
    """JSON patch ops that append `entries` to the list at `path` without losing entries
    added concurrently (see the module's docstring)."""
    if current is None:
        return [{"op": "test", "path": path, "value": None},
                {"op": "add", "path": path, "value": list(entries)}]
    return [{"op": "add", "path": f"{path}/-", "value": e} for e in entries]


def overtaken(ops: list[dict], incident: dict) -> bool:
    """Did a colleague create the list these ops `test` to be absent (so the API server
    refused them)? It answers such a refusal with a bare 422 Invalid, the same as any other,
    so the caller asks the object as it is now."""
    tested = [op["path"] for op in ops if op.get("op") == "test" and op.get("value") is None]
    for path in tested:
        node: object = incident
        for key in path.strip("/").split("/"):
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            return True
    return False


@dataclass(frozen=True)
class Ack:
    role: str
    by: str


def acknowledgement(incident: dict, *, role: str | None, by: str, now: float) -> tuple[
        Ack, list[dict] | None]:
    """The acknowledgement of `role` (default: the one role paged and not acknowledged yet)
    by `by`, and the JSON patch that appends it; None when `by` already acknowledged it."""
    spec, status = incident.get("spec") or {}, incident.get("status") or {}
    current = spec.get("acknowledgements")
    acks = [a for a in current or [] if isinstance(a, dict)]
    if role is None:
        paged = list(dict.fromkeys(p.get("role") for p in status.get("pages") or []
                                   if p.get("kind", "page") == "page"))
        waiting = [r for r in paged if r not in {a.get("role") for a in acks}]
        if len(waiting) != 1:
            raise EditError("say which role you acknowledge for: --role ROLE ("
                            + (f"waiting for {', '.join(waiting)}" if waiting else
                               f"one of {', '.join(ROLES)}") + ")")
        role = waiting[0]
    if role not in ROLES:
        raise EditError(f"--role {role!r} is not a role: use one of {', '.join(ROLES)}")
    ack = Ack(role, by)
    if any(a.get("role") == role and a.get("by") == by for a in acks):
        return ack, None
    entry = {"role": role, "by": by, "at": timeutil.iso(now)}
    return ack, append("/spec/acknowledgements", current, [entry])


def action_item(text: str) -> dict:
    """`title=...,assignee=...[,due=YYYY-MM-DD]` as an action item."""
    item: dict[str, str] = {}
    for part in _ITEM_SPLIT.split(text.strip()):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ITEM_KEYS:
            raise EditError(f"--action-item {text!r}: write title=...,assignee=...[,due=...] "
                            f"(got {part!r})")
        if key in item:
            raise EditError(f"--action-item {text!r}: {key} given twice")
        item[key] = value.strip()
    if not item.get("title"):
        raise EditError(f"--action-item {text!r}: the title is missing (title=...)")
    return {k: v for k, v in item.items() if v}


def close(incident: dict, items: list[dict]) -> list[dict]:
    """Append the action items and set close: the API server's own rules refuse it, with
    their message, when an item has no assignee or there are none."""
    current = (incident.get("spec") or {}).get("actionItems")
    ops = append("/spec/actionItems", current, items) if items else []
    return [*ops, {"op": "add", "path": "/spec/close", "value": True}]


def approval(incident: dict, *, step: str, decision: str, by: str, now: float,
             reason: str = "") -> list[dict] | None:
    """The JSON patch that appends a person's go (Approved) or no (Rejected) for a step to
    spec.approvals; None when the same decision is there already. The operator acts on the
    first decision per step, so a step decided otherwise, or done, is refused here."""
    spec, status = incident.get("spec") or {}, incident.get("status") or {}
    records = {r.get("id"): r for r in status.get("steps") or [] if isinstance(r, dict)}
    if step not in records:
        known = [i for i in records if i and not i.startswith("revert:")]
        raise EditError(f"the incident has no step {step!r}"
                        + (f" (its steps: {', '.join(known)})" if known else ""))
    current = spec.get("approvals")
    earlier = next((a for a in current or [] if isinstance(a, dict) and a.get("step") == step),
                   None)
    if earlier is not None:
        if earlier.get("decision") == decision:
            return None
        raise EditError(f"step {step} was already {earlier.get('decision', '?').lower()} by "
                        f"{earlier.get('by', 'someone')}: the first decision stands")
    state = records[step].get("state") or "Pending"
    if state not in ("Pending", "AwaitingApproval"):
        raise EditError(f"step {step} is {state} already: there is nothing to "
                        f"{'approve' if decision == 'Approved' else 'reject'}")
    entry = {"step": step, "decision": decision, "by": by, "at": timeutil.iso(now)}
    if reason:
        entry["reason"] = reason
    return append("/spec/approvals", current, [entry])


def severity(level: str) -> dict:
    if level not in SEVERITIES:
        raise EditError(f"{level!r} is not a severity: use one of {', '.join(SEVERITIES)}")
    return {"spec": {"severity": level}}


def lift_freeze() -> dict:
    return {"spec": {"liftFreeze": True}}


def pause(*, for_: str, reason: str, by: str, now: float) -> tuple[float, dict]:
    """Until when, and the merge patch that pauses the policy for `for_` (a duration)."""
    try:
        seconds = durations.parse(for_)
    except ValueError as exc:
        raise EditError(f"--for: {exc}") from None
    if not LONG[0] <= seconds <= LONG[1]:
        raise EditError(f"--for {for_}: pause for {durations.exact(LONG[0])} to "
                        f"{durations.exact(LONG[1])} (a week) at most")
    until = now + seconds
    spec = {"pausedUntil": timeutil.iso(until), "pauseReason": reason or None,
            "pausedBy": by or None}
    return until, {"spec": spec}


def resume() -> dict:
    return {"spec": {"pausedUntil": None, "pauseReason": None, "pausedBy": None}}
