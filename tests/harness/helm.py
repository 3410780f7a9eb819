"""helm, built by hack/build-helm.sh (`make deps`): the Helm chart rendered and linted for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .controlplane import REPO, VERSIONS

CHART = REPO / "deploy" / "helm" / "mission-control"


def binary() -> Path:
    return Path(VERSIONS["HELM_BIN"]) / "helm"


def run(*args: str, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """helm; `template` and `lint` need no chart repository, cluster or kubeconfig (for the
    others pass `env`, see `cluster_env`)."""
    helm = binary()
    if not helm.exists():
        raise FileNotFoundError(f"{helm} is missing: run `make deps` (hack/build-helm.sh)")
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=180,
                            env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
    return result


def template(*values: str, namespace: str = "mission-control", crds: bool = True,
             release: str = "mission-control") -> str:
    """`helm template` of the chart; `values` are `--set` assignments."""
    args = ["template", release, str(CHART), f"--namespace={namespace}"]
    if crds:
        args.append("--include-crds")
    for value in values:
        args += ["--set", value]
    return run(*args).stdout


def cluster_env(kubeconfig: Path, home: Path) -> dict[str, str]:
    """helm against the test cluster, with its cache, configuration and data in `home`."""
    return {**os.environ, "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}
