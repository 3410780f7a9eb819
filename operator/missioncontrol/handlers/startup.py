"""kopf settings, set once when the operator starts."""

from __future__ import annotations

import kopf

from .. import GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    # Handler progress in annotations (kopf's default), under our own prefix.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.peering.standalone = True
    settings.posting.level = 20  # INFO and above become Kubernetes events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
