"""The operator's entry point: one place that builds the runtime, sets kopf up and
registers every handler module."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import kopf
from prometheus_client import start_http_server

from . import guard, metrics, tenancy, timeutil
from .engine import Engine
from .kube import Kube, load_client
from .signals.prometheus import Prometheus
from .webhook import WebhookOptions

log = logging.getLogger("missioncontrol")


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...] = ()
    dry_run: bool = False
    prometheus_url: str | None = None
    kubeconfig: str | None = None
    liveness_port: int = 8080
    metrics_port: int = 9090
    webhook: WebhookOptions | None = field(default_factory=WebhookOptions)
    tick: float = 2.0
    redeliver_every: float = 60.0
    delivery_expiry: float = 86400.0
    standalone: bool = True
    priority: int = 0
    peering_name: str = "mission-control"
    protected_namespaces: tuple[str, ...] = tenancy.SYSTEM_NAMESPACES
    reference_namespaces: tuple[str, ...] = ()
    cluster_policy_namespaces: tuple[str, ...] = ()


def register() -> None:
    """Importing a handler module registers its kopf handlers."""
    from .handlers import catalogue, freeze, incidents, policies, startup  # noqa: F401


def build_memo(options: Options) -> kopf.Memo:
    kube = Kube(load_client(options.kubeconfig))
    metrics.SECONDS_SINCE_API_SUCCESS.set_function(kube.health.seconds_since_success)
    prometheus = Prometheus(options.prometheus_url) if options.prometheus_url else None
    memo = kopf.Memo()
    memo.options = options
    memo.kube = kube
    memo.guard = guard.Context(kube, prometheus, timeutil.wall, options.dry_run)
    memo.engine = Engine(kube, prometheus, timeutil.wall, _post_event,
                         force_dry_run=options.dry_run, tick=options.tick,
                         redeliver_every=options.redeliver_every,
                         delivery_expiry=options.delivery_expiry)
    return memo


def _post_event(body: dict, kind: str, reason: str, message: str) -> None:
    kopf.event(body, type=kind, reason=reason, message=message)


def run(options: Options, *, verbose: bool = False) -> int:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    register()
    rules = tenancy.configure(protected=options.protected_namespaces,
                              reference_namespaces=options.reference_namespaces,
                              cluster_policy_namespaces=options.cluster_policy_namespaces,
                              watched=options.namespaces)
    log.info("protected namespaces: %s; cluster-policy namespaces: %s",
             ", ".join(sorted(rules.protected)) or "none",
             ", ".join(sorted(rules.cluster_policy_namespaces)) or "none")
    if options.metrics_port:
        start_http_server(options.metrics_port, addr="0.0.0.0")
        log.info("metrics on :%d/metrics", options.metrics_port)
    liveness = (f"http://0.0.0.0:{options.liveness_port}/healthz"
                if options.liveness_port else None)
    asyncio.run(kopf.operator(
        clusterwide=not options.namespaces,
        namespaces=list(options.namespaces),
        liveness_endpoint=liveness,
        memo=build_memo(options),
    ))
    return 0
