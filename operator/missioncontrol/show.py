"""Read-only tools for people: a runbook or an incident's postmortem as Markdown, read from
a file or from the cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .model import Runbook
from .parse import ModelError


def load(kind: str, source: str, *, namespace: str, kubeconfig: str | None) -> dict:
    """A Runbook or Incident from a YAML file, or by name from the cluster."""
    path = Path(source)
    if path.exists():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                return doc
        raise ModelError("", f"{source} holds no {kind}")
    from kubernetes import client

    from . import GROUP, VERSION
    from .kube import PLURALS, REQUEST_TIMEOUT, load_client

    api = client.CustomObjectsApi(load_client(kubeconfig))
    return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], source,
                                            _request_timeout=REQUEST_TIMEOUT)


def render_runbook_command(source: str, *, namespace: str, kubeconfig: str | None) -> int:
    from kubernetes.client.rest import ApiException

    from .render import render_runbook

    try:
        runbook = Runbook.parse(load("Runbook", source, namespace=namespace,
                                     kubeconfig=kubeconfig))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ApiException as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 2
    print(render_runbook(runbook))
    return 0


def postmortem_command(source: str, *, namespace: str, kubeconfig: str | None) -> int:
    from kubernetes.client.rest import ApiException

    from .postmortem import render_postmortem

    try:
        incident = load("Incident", source, namespace=namespace, kubeconfig=kubeconfig)
    except (ModelError, ApiException) as exc:
        print(f"error: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
        return 2
    print(render_postmortem(incident))
    return 0
