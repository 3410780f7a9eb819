"""What an executor gets and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..incident import PLANNED, SKIPPED, STEP_FAILED, SUCCEEDED, Change, IncidentStatus
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
