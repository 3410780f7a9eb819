"""What an incident round works with: the engine's settings, the facts a round reads once,
and the part of a round that the escalation protocol (people.py) drives. Apart from
engine.py so that people.py needs nothing of the engine's own (no import cycle)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from . import incident as inc
from .kube import Kube
from .model import Ownership, Policy, Runbook
from .notifiers import DEFAULT_POLICY
from .notifiers import Policy as DeliveryPolicy
from .paging import Ask, Brief, Pager
from .signals.prometheus import Prometheus
from .timeutil import Clock

EventPoster = Callable[[dict, str, str, str], None]   # (body, type, reason, message)


@dataclass
class Engine:
    kube: Kube
    prometheus: Prometheus | None
    clock: Clock
    post_event: EventPoster
    force_dry_run: bool = False
    tick: float = 2.0
    delivery: DeliveryPolicy = DEFAULT_POLICY
    redeliver_every: float = 60.0     # between deliveries of a failed page or all-clear
    delivery_expiry: float = 86400.0  # then it is given up (status outcome "expired")
    cluster: str = ""                 # --cluster-name: in every message about an incident


@dataclass
class Loaded:
    runbook: Runbook
    policy: Policy | None
    ownership: Ownership | None
    deployment: dict | None
    policy_status: dict | None = None   # as read this round: the guard's target checks
    gone: tuple[str, str] | None = None   # (reason, message): the policy or target is gone


class Round(Protocol):
    """An incident being driven (engine.Run), as the escalation protocol sees it."""
    e: Engine
    body: dict
    status: inc.IncidentStatus

    @property
    def name(self) -> str: ...

    @property
    def dry_run(self) -> bool: ...

    async def apply(self, change: Callable[[inc.IncidentStatus], inc.IncidentStatus]
                    ) -> None: ...

    def start_background(self, key: str, work: Awaitable[None]) -> None: ...

    def brief(self, loaded: Loaded) -> Brief: ...

    def pager(self, loaded: Loaded) -> Pager: ...

    async def page(self, loaded: Loaded, roles: tuple[str, ...], ask: Ask
                   ) -> list[inc.Page]: ...

    def observe_time_to_page(self, loaded: Loaded, first: bool,
                             pages: list[inc.Page]) -> None: ...

    async def escalate(self, loaded: Loaded, key: str, why: str) -> None: ...
