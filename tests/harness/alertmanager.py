"""The real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, in a temp
dir, run as the package's non-root `prometheus` user when the tests run as root (as `nobody`
if that user is missing). No cluster (no gossip port), short group_wait / group_interval /
repeat_interval so notifications come within seconds. Its one receiver posts to the webhook a
test sets (`receive_at`: the operator under test, with its bearer token); `stop` leaves no
process and no file."""

from __future__ import annotations

import datetime
import json
import os
import pwd
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .procs import HarnessError, Proc, free_port, wait_for

GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = "1s", "2s", "20s"


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        path = shutil.which(name)
        if path:
            return path
    raise HarnessError("prometheus-alertmanager is not installed: "
                       "`apt-get install -y prometheus-alertmanager` (make deps does it)")


def _unprivileged() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("prometheus", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise HarnessError("running as root and neither a `prometheus` nor a `nobody` user exists")


@dataclass
class Alertmanager:
    workdir: Path | None = None
    port: int = 0
    proc: Proc | None = None
    _own_dir: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="mc-alertmanager-"))
            self._own_dir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        user = _unprivileged()
        self._write_config(None, None)
        self.port = self.port or free_port()
        argv = [alertmanager_binary(), f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",   # no gossip: one instance, no second port
                "--log.level=warn"]
        if user is not None:
            for path in (self.workdir, *self.workdir.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
            argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                    "--clear-groups", "--", *argv]
        log = Path(tempfile.gettempdir()) / f"mc-alertmanager-{self.port}.log"
        self.proc = Proc("alertmanager", argv, log).start()
        try:
            wait_for(lambda: self._get("/-/ready") is not None, timeout=30,
                     what=f"alertmanager on port {self.port}", alive=self.proc.check_alive)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_config(self, url: str | None, token: str | None) -> None:
        assert self.workdir is not None
        receiver: dict = {"name": "operator"}
        if url:
            token_file = self.workdir / "token"
            token_file.write_text(token or "")
            token_file.chmod(0o644)
            receiver["webhook_configs"] = [{
                "url": url, "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(token_file)}}}]
        config = {
            "route": {"receiver": "operator", "group_by": ["alertname", "namespace",
                                                           "deployment"],
                      "group_wait": GROUP_WAIT, "group_interval": GROUP_INTERVAL,
                      "repeat_interval": REPEAT_INTERVAL},
            "receivers": [receiver],
        }
        path = self.workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o644)

    def receive_at(self, url: str | None, token: str | None = None) -> None:
        """Send notifications to `url` with this bearer token from now on (None: nowhere)."""
        self._write_config(url, token)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise HarnessError(f"Alertmanager refused its configuration: "
                               f"{exc.read().decode(errors='replace')}") from None

    def silence(self, matchers: dict[str, str], *, created_by: str, comment: str,
                minutes: float = 30) -> str:
        """Create a silence through the API (equality matchers); return its id."""
        now = datetime.datetime.now(datetime.UTC)
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                             for k, v in matchers.items()],
                "startsAt": now.isoformat(),
                "endsAt": (now + datetime.timedelta(minutes=minutes)).isoformat(),
                "createdBy": created_by, "comment": comment}
        request = urllib.request.Request(f"{self.url}/api/v2/silences", method="POST",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["silenceID"]

    def expire(self, silence_id: str) -> None:
        request = urllib.request.Request(f"{self.url}/api/v2/silence/{silence_id}",
                                         method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def alerts(self) -> list[dict]:
        return json.loads(self._get("/api/v2/alerts") or b"[]")

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
                return response.read() if response.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def check_alive(self) -> None:
        if self.proc is not None:
            self.proc.check_alive()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc.log.unlink(missing_ok=True)
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
