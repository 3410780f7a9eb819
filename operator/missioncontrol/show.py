"""Read-only tools for people: render a runbook (from a file or the cluster) as Markdown."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .model import Runbook
from .parse import ModelError


def load_runbook(source: str, *, namespace: str, kubeconfig: str | None) -> dict:
    path = Path(source)
    if path.exists():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Runbook":
                return doc
        raise ModelError("", f"{source} holds no Runbook")
    from kubernetes import client

    from . import GROUP, VERSION
    from .kube import load_client

    api = client.CustomObjectsApi(load_client(kubeconfig))
    return api.get_namespaced_custom_object(GROUP, VERSION, namespace, "runbooks", source)


def render_runbook_command(source: str, *, namespace: str, kubeconfig: str | None) -> int:
    from .render import render_runbook

    try:
        runbook = Runbook.parse(load_runbook(source, namespace=namespace, kubeconfig=kubeconfig))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render_runbook(runbook))
    return 0
