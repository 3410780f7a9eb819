"""Run the local environment in the background for people (make cluster-up / cluster-down).

  python -m harness up     start it (or find it running) and print the exports
  python -m harness down   stop every process and remove its files
  python -m harness serve  what `up` runs in the background
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .cluster import LocalCluster
from .procs import HarnessError, wait_for


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("MC_CACHE", Path(base) / "mission-control"))


RUN = cache_dir() / "run"
STATE = RUN / "cluster"
PIDFILE = RUN / "cluster.pid"
ENVFILE = RUN / "cluster.env"
LOG = RUN / "cluster.log"


def running_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def serve() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cluster = LocalCluster(STATE).start()
    try:
        ENVFILE.write_text(
            f"export MC_EXPORTER_URL=http://{cluster.exporter.target}\n"
            f"export KUBECONFIG={cluster.kubeconfig}\n"
            f"export PROMETHEUS_URL={cluster.prometheus_url}\n")
        print("cluster is up", flush=True)
        while not stop.wait(2):
            cluster.check_alive()
    finally:
        ENVFILE.unlink(missing_ok=True)
        cluster.stop()
        PIDFILE.unlink(missing_ok=True)


def up() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    if running_pid() is None:
        ENVFILE.unlink(missing_ok=True)
        with LOG.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness", "serve"], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
        PIDFILE.write_text(str(proc.pid))

        def alive() -> None:
            if proc.poll() is not None:
                raise HarnessError(f"the cluster failed to start; see {LOG}:\n"
                                   + "\n".join(LOG.read_text().splitlines()[-25:]))

        print("starting etcd, kube-apiserver, kube-controller-manager, the node simulator "
              "and Prometheus ...", flush=True)
        started = time.monotonic()
        wait_for(ENVFILE.exists, timeout=300, what="the cluster", alive=alive, interval=0.5)
        print(f"up in {time.monotonic() - started:.0f} s (logs: {LOG}, state: {STATE})")
    else:
        print(f"already running (pid {running_pid()})")
    print(ENVFILE.read_text(), end="")


def down() -> None:
    pid = running_pid()
    if pid is None:
        print("not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while running_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if running_pid() is not None:
        os.killpg(pid, signal.SIGKILL)
        PIDFILE.unlink(missing_ok=True)
    print("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "serve"])
    args = parser.parse_args()
    try:
        {"up": up, "down": down, "serve": serve}[args.command]()
    except HarnessError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
