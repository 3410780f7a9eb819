"""kubectl at the control plane's version (the one hack/build-control-plane.sh built), run
against a kubeconfig: one way, for the tests, the demo and the benchmark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .controlplane import binaries_dir


def binary() -> str:
    built = binaries_dir() / "kubectl"
    return str(built) if built.exists() else (shutil.which("kubectl") or "kubectl")


def run(kubeconfig: Path | str, *args: str, input: str | None = None,
        cache_dir: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run kubectl; the caller decides what a non-zero exit means."""
    argv = [binary(), f"--kubeconfig={kubeconfig}"]
    if cache_dir is not None:
        argv.append(f"--cache-dir={cache_dir}")
    return subprocess.run([*argv, *args], input=input, capture_output=True, text=True,
                          timeout=timeout)
