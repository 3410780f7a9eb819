"""The shipped alert rules and dashboard (deploy/monitoring/), checked by Prometheus's own
tool: the rule file is valid, each alert fires (and stays silent) as its promtool unit test
says, the PrometheusRule carries the same rules, and the dashboard is well formed.
tests/e2e/test_monitoring.py loads them into the real Prometheus over a real incident."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "rules.yaml"


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(binary).exists(), ("promtool is not installed: `apt-get install -y "
                                   "prometheus` (make test does it)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_rule_file_is_valid():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_each_alert_fires_and_stays_silent_as_specified():
    here = Path(__file__).parent / "monitoring"
    result = promtool("test", "rules", "rules_test.yaml", cwd=here)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {t["alertname"] for case in yaml.safe_load((here / "rules_test.yaml").read_text())
              ["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    shipped = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"]
               for r in g["rules"]}
    assert tested == shipped, f"alerts without a firing test: {shipped - tested}"


def test_the_prometheus_rule_carries_the_same_rules():
    rule = yaml.safe_load((MONITORING / "prometheus-operator" / "prometheusrule.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the shipped dashboard."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_queries_the_datasource_it_is_given():
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    assert dashboard["uid"] == "mission-control"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert len(dashboard_queries()) >= 20
