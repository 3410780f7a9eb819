"""A real Redis server (Debian's `redis-server`) on a free loopback port, in a temp dir, run as
the package's non-root `redis` user when the tests run as root (as `nobody` if that user is
missing). No persistence: nothing is written but the log, and the dir goes at `stop`."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .procs import HarnessError, Proc, free_port, wait_for


def redis_binary() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(path).exists():
        raise HarnessError("redis-server is not installed: `apt-get install -y redis-server` "
                           "(make deps does it)")
    return path


def _unprivileged() -> pwd.struct_passwd | None:
    """The user to run as: None when not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("redis", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise HarnessError("running as root and neither a `redis` nor a `nobody` user exists")


@dataclass
class RedisServer:
    workdir: Path | None = None
    port: int = 0
    proc: Proc | None = None
    _own_dir: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="mc-redis-"))
            self._own_dir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        user = _unprivileged()
        self.port = self.port or free_port()
        argv = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]
        if user is not None:
            os.chown(self.workdir, user.pw_uid, user.pw_gid)
            # setpriv execs redis-server itself (no process in between to forward signals).
            argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                    "--clear-groups", "--", *argv]
        log = Path(tempfile.gettempdir()) / f"mc-redis-{self.port}.log"
        self.proc = Proc("redis-server", argv, log).start()
        wait_for(self._pong, timeout=30, what=f"redis-server on port {self.port}",
                 alive=self.proc.check_alive)
        return self

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc.log.unlink(missing_ok=True)
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
