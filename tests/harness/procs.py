"""Child processes of the harness: start with a log file, wait on a condition with a deadline,
stop with SIGTERM then SIGKILL."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class HarnessError(RuntimeError):
    """A component of the local cluster could not start."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, below the kernel's ephemeral range. A port from bind(0) lies
    inside that range, so an outgoing connection can take it as its local port before the
    server that was given it binds (seen: an operator's liveness port "already in use" in a
    test that makes many connections). Never the same port twice in one session."""
    low, high = _below_ephemeral()
    for _ in range(500):
        port = random.randint(low, high)
        if port not in _HANDED_OUT and _bindable(port):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _below_ephemeral() -> tuple[int, int]:
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    return (10000, first - 1) if first > 11000 else (first // 2, first - 1)


def _bindable(port: int) -> bool:
    # 0.0.0.0: some servers (kopf's probes) bind every address, which conflicts with a socket
    # on 127.0.0.1 as well.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Callable[[], None] | None = None,
) -> object:
    """Poll `condition` until it returns a truthy value; fail after `timeout` seconds.

    `alive` is called on each round and raises if the process being waited on has died, so a
    crash reports at once instead of at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if alive:
            alive()
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
            )
        return self

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise HarnessError(
                f"{self.name} exited with code {self.popen.returncode}; "
                f"last lines of {self.log}:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def kill(self, timeout: float = 15) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout)

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)
