"""The real Prometheus server (Debian's `prometheus` package) on loopback, scraping every
second: the test exporter, and any target written into its file_sd folder; evaluating every
second the rule files a test adds (`add_rules`)."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .procs import HarnessError, Proc, free_port, wait_for


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).exists():
        raise HarnessError(
            "prometheus is not installed: `apt-get install -y prometheus` (make test does it)")
    return path


@dataclass
class Prometheus:
    workdir: Path
    exporter_target: str
    procs: list[Proc] = field(default_factory=list)
    url: str = ""
    # Basic auth (Prometheus's --web.config.file): user -> bcrypt hash, and the plain
    # (user, password) the harness itself uses to see that it is ready.
    basic_auth_users: dict[str, str] | None = None
    login: tuple[str, str] | None = None

    def start(self) -> Prometheus:
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "targets").mkdir(exist_ok=True)
        (self.workdir / "rules").mkdir(exist_ok=True)
        (self.workdir / "alertmanagers").mkdir(exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": [str(self.workdir / "rules" / "*.yaml")],
            # Alertmanagers a test adds (add_alertmanager): none until then.
            "alerting": {"alertmanagers": [{"file_sd_configs": [
                {"files": [str(self.workdir / "alertmanagers" / "*.json")],
                 "refresh_interval": "1s"}]}]},
            "scrape_configs": [
                {"job_name": "exporter",
                 "static_configs": [{"targets": [self.exporter_target]}]},
                {"job_name": "targets",
                 "file_sd_configs": [{"files": [str(self.workdir / "targets" / "*.json")],
                                      "refresh_interval": "1s"}]},
            ],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [binary, f"--config.file={config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn",
                "--web.enable-lifecycle"]   # POST /-/reload: rule files added by tests
        if self.basic_auth_users:
            web_config = self.workdir / "web.yml"
            web_config.write_text(yaml.safe_dump({"basic_auth_users": self.basic_auth_users}))
            argv.append(f"--web.config.file={web_config}")
        proc = Proc("prometheus", argv, self.workdir / "prometheus.log").start()
        self.procs.append(proc)
        try:
            wait_for(lambda: _ok(f"{self.url}/-/ready", self.login), timeout=60,
                     what="prometheus /-/ready", alive=proc.check_alive)
        except BaseException:
            self.stop()
            raise
        return self

    def add_target(self, name: str, target: str, labels: dict[str, str] | None = None) -> None:
        """Scrape another target (the operator's metrics, a demo app) from now on."""
        path = self.workdir / "targets" / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [target], "labels": labels or {}}]))
        tmp.rename(path)

    def remove_target(self, name: str) -> None:
        (self.workdir / "targets" / f"{name}.json").unlink(missing_ok=True)

    def add_alertmanager(self, name: str, target: str) -> None:
        """Send firing and resolved alerts to this Alertmanager (host:port) from now on, and
        wait until Prometheus has it."""
        path = self.workdir / "alertmanagers" / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [target]}]))
        tmp.rename(path)
        wait_for(lambda: any(target in a["url"] for a in
                             self.api("alertmanagers")["activeAlertmanagers"]),
                 timeout=30, what=f"Prometheus to send alerts to {target}")

    def remove_alertmanager(self, name: str) -> None:
        (self.workdir / "alertmanagers" / f"{name}.json").unlink(missing_ok=True)

    def add_rules(self, name: str, source: Path) -> None:
        """Load a rule file (as Prometheus reads it from rule_files) and wait until its groups
        are evaluated; a file Prometheus refuses fails here with Prometheus's own message."""
        groups = {g["name"] for g in yaml.safe_load(source.read_text())["groups"]}
        shutil.copyfile(source, self.workdir / "rules" / f"{name}.yaml")
        self._reload()
        wait_for(lambda: groups <= {g["name"] for g in self.api("rules")["groups"]},
                 timeout=30, what=f"Prometheus to load the rule groups {sorted(groups)}")

    def remove_rules(self, name: str) -> None:
        (self.workdir / "rules" / f"{name}.yaml").unlink(missing_ok=True)
        self._reload()

    def _reload(self) -> None:
        request = _authorized(urllib.request.Request(f"{self.url}/-/reload", method="POST"),
                              self.login)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise HarnessError(f"Prometheus refused its configuration: "
                               f"{exc.read().decode(errors='replace')}") from None

    def api(self, path: str, **params: str) -> dict:
        """GET /api/v1/<path> (rules, alerts, query, query_range): the `data` of the answer."""
        query = urllib.parse.urlencode(params)
        try:
            request = _authorized(urllib.request.Request(f"{self.url}/api/v1/{path}?{query}"),
                                  self.login)
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:   # a bad query: 400 with Prometheus's reason
            answer = json.loads(exc.read() or b"{}")
        if answer.get("status") != "success":
            raise HarnessError(f"Prometheus {path}: {answer}")
        return answer["data"]

    def check_alive(self) -> None:
        for proc in self.procs:
            proc.check_alive()

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs.clear()


def _authorized(request: urllib.request.Request,
                login: tuple[str, str] | None) -> urllib.request.Request:
    if login:
        token = base64.b64encode(":".join(login).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _ok(url: str, login: tuple[str, str] | None = None) -> bool:
    request = _authorized(urllib.request.Request(url), login)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status == 200
