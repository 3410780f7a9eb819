"""kopf settings, set once when the operator starts."""

from __future__ import annotations

import logging
import shutil

import kopf

from .. import GROUP, webhook


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
    # Peering: kopf's own (no Lease); HA replicas need distinct --priority values.
    settings.peering.standalone = memo.options.standalone
    # With peering asked for, a missing peering object must stop us, not let every replica act.
    settings.peering.mandatory = not memo.options.standalone
    settings.peering.priority = memo.options.priority
    settings.peering.name = memo.options.peering_name
    settings.peering.clusterwide = not memo.options.namespaces
    if memo.options.webhook is not None:
        options = memo.options.webhook
        certs = (await webhook.shared_certificates(memo.kube, options) if options.secret
                 else webhook.make_certificates(options))
        memo.webhook_files = certs.directory
        settings.admission.server = webhook.server(memo.options.webhook, certs)
        settings.admission.managed = None   # we manage the configuration: see webhook.py
        await webhook.install(memo.kube, memo.options.webhook, certs.ca)
        logger.info("freeze webhook %s installed", memo.options.webhook.config_name)


@kopf.on.cleanup()
def remove_files(memo: kopf.Memo, **_: object) -> None:
    """The certificate files were only for this process: leave nothing behind."""
    if getattr(memo, "webhook_files", None):
        shutil.rmtree(memo.webhook_files, ignore_errors=True)
