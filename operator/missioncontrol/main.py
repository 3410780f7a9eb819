"""The operator's entry point: kopf settings set once, every handler module registered here."""

from __future__ import annotations

import asyncio
import logging

import kopf
from prometheus_client import start_http_server

from . import settings as mc_settings

log = logging.getLogger("missioncontrol")


def register() -> None:
    """Import the handler modules: importing a module registers its kopf handlers."""
    from .handlers import startup  # noqa: F401


def run(
    *,
    namespaces: list[str],
    dry_run: bool,
    liveness_port: int,
    metrics_port: int,
    verbose: bool = False,
) -> int:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    mc_settings.configure(dry_run=dry_run)
    register()
    if metrics_port:
        start_http_server(metrics_port, addr="0.0.0.0")
        log.info("metrics on :%d/metrics", metrics_port)
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=False,
    ))
    return 0
