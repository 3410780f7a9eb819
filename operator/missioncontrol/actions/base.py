"""The interface every action implements, and what its steps get and return.

An action owns its whole lifecycle in its own module (Argo Rollouts' metric providers are the
model): running a step (or planning it in dryRun), the sentence the runbook page says about
it, whether it only reads, and how it judges that its step had its effect. The engine and the
runbook page reach an action only through this interface, by the step's action name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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

    async def run(self, ctx: StepContext, step: Step) -> StepResult:
        """Apply the step (idempotently: the live object and the record are checked first),
        or in dry-run mode say what it would do."""
        raise NotImplementedError

    def describe(self, params: Any) -> list[str]:
        """The step's parameters as the sentences the runbook page says."""
        raise NotImplementedError

    def no_effect(self, *, step: Step, record: StepRecord, status: IncidentStatus,
                  now: float) -> str | None:
        """Why people must step in because the step did not have its effect in time, or
        None (not judged, not yet due, or it worked)."""
        return None

    def holds(self, *, record: StepRecord, status: IncidentStatus, deployment: dict) -> bool:
        """Whether the target is as the step left it: recovery counts only then."""
        return True

    def expired(self, *, step: Step, status: IncidentStatus, now: float) -> str | None:
        """Why what the step holds in place (a freeze) must be let go now, or None."""
        return None
