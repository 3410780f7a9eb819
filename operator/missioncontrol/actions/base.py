"""The interface every action implements, and what its steps get and return.

An action owns its whole lifecycle in its own module (Argo Rollouts' metric providers are the
model): running a step (or planning it in dryRun), the sentence the runbook page says about
it, whether it only reads, and how it judges that its step had its effect. The engine and the
runbook page reach an action only through this interface, by the step's action name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ..incident import PLANNED, SKIPPED, STEP_FAILED, SUCCEEDED, Change, IncidentStatus, StepRecord
from ..kube import Kube
from ..model import Policy, Runbook, Step
from ..signals.prometheus import Prometheus
from ..timeutil import Clock


@dataclass
class StepContext:
    kube: Kube
    prometheus: Prometheus | None
    clock: Clock
    incident: dict            # the Incident's body (metadata, spec)
    status: IncidentStatus    # its status as the step starts
    runbook: Runbook
    policy: Policy | None
    dry_run: bool
    page: Callable[..., Awaitable[Any]]   # engine.page: deliver to roles, record in status

    @property
    def name(self) -> str:
        return self.incident["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.incident["metadata"]["namespace"]

    @property
    def target(self) -> tuple[str, str]:
        target = self.incident["spec"]["target"]
        return target["namespace"], target["name"]


@dataclass
class StepResult:
    state: str
    message: str
    changes: tuple[Change, ...] = ()
    updates: dict[str, Any] = field(default_factory=dict)   # IncidentStatus fields to set
    escalate: str | None = None                             # why people must step in

    @classmethod
    def ok(cls, message: str, **kw: Any) -> StepResult:
        return cls(SUCCEEDED, message, **kw)

    @classmethod
    def failed(cls, message: str, **kw: Any) -> StepResult:
        return cls(STEP_FAILED, message, **kw)

    @classmethod
    def skipped(cls, message: str, **kw: Any) -> StepResult:
        return cls(SKIPPED, message, **kw)

    @classmethod
    def planned(cls, message: str, **kw: Any) -> StepResult:
        return cls(PLANNED, f"dry run: {message}", **kw)


Executor = Callable[[StepContext, Step], Awaitable[StepResult]]


class Action:
    """One action. Subclasses set `name` (as runbooks spell it) and implement `run` and
    `describe`; the rest has the defaults of an action that changes something and whose
    effect is judged by the incident's recovery alone."""
    name: ClassVar[str]
    read_only: ClassVar[bool] = False   # changes nothing: gates no step after it
    undoable: ClassVar[bool] = False    # `undo` puts its changes back
    revert_on: ClassVar[tuple[str, ...]] = ()   # undone then, unless the step's revertOn says

    def reverts_on(self, step: Step) -> tuple[str, ...]:
        """The phases in which this step's changes are undone (none, if it cannot be)."""
        if not self.undoable:
            return ()
        return self.revert_on if step.revert_on is None else step.revert_on

    async def undo(self, *, kube: Kube, record: StepRecord, dry_run: bool) -> StepResult:
        """Put back each change `record` made, unless someone changed the value since: then
        leave it and say who (`changed_by`). Idempotent: a value already put back counts as
        done. In dry-run mode only say what it would do."""
        raise NotImplementedError

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        """Apply the step (idempotently: the live object and the record are checked first),
        or in dry-run mode say what it would do."""
        raise NotImplementedError

    def describe(self, params: Any) -> list[str]:
        """The step's parameters as the sentences the runbook page says."""
        raise NotImplementedError

    def no_effect(self, *, step: Step, record: StepRecord, status: IncidentStatus,
                  now: float) -> str | None:
        """Why the step did not have its effect in time, or None (not judged, not yet due,
        or it worked). With `verifyWithin`: a change that was made, and the incident still
        not mitigated that long after it (its trigger's checks have not recovered)."""
        if step.verify_within is None or self.read_only or record.state != SUCCEEDED \
                or record.finished_at is None or not record.changes:
            return None
        if status.mitigated_at is None and now - record.finished_at > step.verify_within:
            return (f"step {step.id} ({step.action}) had no effect: not mitigated within "
                    f"{step.verify_within / 60:g}m of it")
        return None

    def holds(self, *, record: StepRecord, status: IncidentStatus, deployment: dict) -> bool:
        """Whether the target is as the step left it: recovery counts only then."""
        return True

    def expired(self, *, step: Step, status: IncidentStatus, now: float) -> str | None:
        """Why what the step holds in place (a freeze) must be let go now, or None."""
        return None


def changed_by(body: dict, path: tuple[str, ...]) -> str:
    """Who last wrote a field of `body` (`path` in managedFields' terms, e.g. ("f:data",
    "f:mode")), from its managedFields: the manager, or "someone else" if none is named."""
    owners = []
    for entry in (body.get("metadata") or {}).get("managedFields") or []:
        node = entry.get("fieldsV1") or {}
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and entry.get("manager"):
            owners.append((entry.get("time") or "", entry["manager"]))
    return max(owners)[1] if owners else "someone else"


def reversed_changes(changes: tuple[Change, ...]) -> tuple[Change, ...]:
    """What undoing `changes` would change: each one the other way round (dryRun's plan)."""
    return tuple(replace(c, from_=c.to, to=c.from_) for c in changes)


def undone(done: list[str], skipped: list[str], changes: tuple[Change, ...],
           dry_run: bool) -> StepResult:
    """The result of an undo: what was put back, and what was left as someone set it."""
    if dry_run:
        return StepResult.planned("would restore " + "; ".join(done) if done
                                  else "nothing to restore", changes=changes)
    if skipped:
        return StepResult.skipped("; ".join(skipped) + (
            f" (restored: {'; '.join(done)})" if done else ""), changes=changes)
    return StepResult.ok("restored " + "; ".join(done) if done else "nothing to restore",
                         changes=changes)
