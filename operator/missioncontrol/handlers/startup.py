"""kopf settings, set once when the operator starts."""

from __future__ import annotations

import logging

import kopf

from .. import GROUP


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo,
                    logger: logging.Logger, **_: object) -> None:
    # Handler progress in annotations (kopf's default), under our own prefix.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO   # INFO and above also become Kubernetes events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # kopf's own requests (watches, events) retry an API server outage at the pace of ours
    # (kube.Backoff: 0.5 s doubling to 5 s) rather than 1..21 s, so watches are back within
    # seconds of it; about a minute of retries, as by default, before a request gives up.
    settings.networking.error_backoffs = (0.5, 1, 2, 4, *(5,) * 10)
    # Who acts is the leader Lease's business (leadership.py). kopf peering stays available
    # (--peering) but is not needed: without it every replica runs kopf, standbys idle.
    settings.peering.standalone = memo.options.standalone
    # With peering asked for, a missing peering object must stop us, not let every replica act.
    settings.peering.mandatory = not memo.options.standalone
    settings.peering.priority = memo.options.priority
    settings.peering.name = memo.options.peering_name
    settings.peering.clusterwide = not memo.options.namespaces
