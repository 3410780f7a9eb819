"""The shipped observability (deploy/monitoring/) over a real incident: the real Prometheus
scrapes the operator and evaluates the shipped rule file; the SLO-breached and escalation
alerts fire for the incident and go when it resolves, with its series; every query of the
shipped dashboard parses and returns data over the incident's lifetime."""

from __future__ import annotations

import json
import math
import time
import urllib.request

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from e2e.conftest import REPO, rb001_policy
from e2e.test_ha import leading, pair, the_leader  # noqa: F401 - pair is a fixture
from harness import objects
from harness.operator import OperatorProcess
from harness.procs import HarnessError, wait_for
from missioncontrol import timeutil

pytestmark = pytest.mark.cluster

MONITORING = REPO / "deploy" / "monitoring"


def firing(env, alertname: str, **labels: str) -> list[dict]:
    return [a for a in env.prometheus.api("alerts")["alerts"]
            if a["state"] == "firing" and a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def series(env, query: str) -> list[dict]:
    return env.prometheus.api("query", query=query)["result"]


def grafana(expr: str, *, window: float) -> str:
    """The dashboard's Grafana variables as Grafana fills them in for this time range."""
    return (expr.replace("$__range", f"{math.ceil(window)}s")
            .replace("$__rate_interval", "15s").replace("$__interval", "5s"))


def test_shipped_alerts_fire_for_a_breached_incident_and_every_dashboard_query_has_data(
        rb001, cluster, receiver, env):
    began = time.time()
    ns = cluster.namespace
    policy = rb001_policy(slo="15s")
    policy["spec"]["overrides"]["escalationRules"] = [
        {"after": "2s", "when": "NotMitigated", "page": ["platform-lead"]}]
    cluster.create(policy)
    op = rb001.start_operator()
    target, rules = f"operator-{ns}", f"mission-control-{ns}"
    env.prometheus.add_target(target, f"127.0.0.1:{op.metrics_port}", {"job": "mission-control"})
    env.prometheus.add_rules(rules, MONITORING / "rules.yaml")
    try:
        wait_for(lambda: series(env, f'up{{job="mission-control",instance='
                                     f'"127.0.0.1:{op.metrics_port}"}} == 1'),
                 timeout=30, what="Prometheus scraping the operator")
        # Broken from its first release: no rollback target, so it stays open past its SLO.
        cluster.create(objects.deployment("checkout", image="shop/checkout:1.0", ready=False))
        name = cluster.one_incident()["metadata"]["name"]
        # The freeze holds: a release other than a rollback is refused at admission.
        wait_for(lambda: cluster.get("Incident", name)["status"].get("freeze", {}).get("active"),
                 timeout=30, what="the freeze")
        with pytest.raises(client.ApiException) as refused:
            cluster.release("checkout", image="shop/checkout:1.1", ready=True)
        assert "frozen" in str(refused.value.body)

        breached = wait_for(lambda: firing(env, "MissionControlSLOBreached", namespace=ns,
                                           incident=name),
                            timeout=90, what="MissionControlSLOBreached firing")
        assert breached[0]["labels"]["runbook"] == "RB-001"
        assert breached[0]["labels"]["severity"] == "critical"
        assert f"incident {name} -n {ns}" in breached[0]["annotations"]["description"]
        # The operator's own record agrees: the incident's SLO is breached.
        slo = cluster.get("Incident", name)["status"]["slo"]
        assert slo.get("breached") is True or time.time() >= timeutil.parse(slo["deadline"])
        wait_for(lambda: firing(env, "MissionControlIncidentEscalated", namespace=ns,
                                incident=name), timeout=30,
                 what="MissionControlIncidentEscalated firing")
        (remaining,) = series(env, f'missioncontrol_incident_slo_remaining_seconds'
                                   f'{{namespace="{ns}",incident="{name}"}}')
        assert float(remaining["value"][1]) < 0

        # People fix it: the series of the incident go once it resolves, and its alerts.
        env.kubectl("patch", "incident", name, "--type=merge", "-p",
                    '{"spec":{"liftFreeze":true}}', namespace=ns)
        wait_for(lambda: not cluster.get("Incident", name)["status"]["freeze"]["active"],
                 timeout=30, what="the freeze to lift")
        cluster.release("checkout", image="shop/checkout:1.1", ready=True)
        cluster.wait_phase(name, "Resolved", timeout=90)
        wait_for(lambda: not series(env, f'{{__name__=~"missioncontrol_incident_.*",'
                                         f'namespace="{ns}",incident="{name}"}}'),
                 timeout=30, what="the resolved incident's series to go")
        wait_for(lambda: not firing(env, "MissionControlSLOBreached", namespace=ns,
                                    incident=name),
                 timeout=30, what="MissionControlSLOBreached to stop firing")
        # Resolved after the SLO: the time to resolve was observed, its distribution has it.
        wait_for(lambda: series(env, 'increase(missioncontrol_time_to_resolve_seconds_count'
                                     '{runbook="RB-001"}[5m]) > 0'),
                 timeout=30, what="the time to resolve scraped")

        empty = []
        # To a little past now: the last steps of the range then follow the newest samples,
        # whatever the alignment of the steps (Prometheus answers them from the latest data).
        end = time.time() + 10
        window = end - began + 30
        for title, expr in dashboard_queries():
            query = grafana(expr, window=window)
            try:
                result = env.prometheus.api("query_range", query=query, start=str(began),
                                            end=str(end), step="2")["result"]
            except HarnessError as exc:
                raise AssertionError(f"{title}: {query}: {exc}") from None
            values = [float(v) for s in result for _, v in s["values"]]
            if not [v for v in values if not math.isnan(v)]:
                empty.append(f"{title}: {query}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    finally:
        env.prometheus.remove_rules(rules)
        env.prometheus.remove_target(target)
    op.check_alive()


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]



def state_samples(op: OperatorProcess) -> list:
    """The state gauges (incidents, freezes, policies) in one scrape of the operator."""
    with urllib.request.urlopen(op.metrics_url, timeout=5) as response:
        text = response.read().decode()
    names = ("missioncontrol_incident", "missioncontrol_freezes", "missioncontrol_polic")
    return [s for family in text_string_to_metric_families(text)
            if family.name.startswith(names) for s in family.samples]


def test_the_leader_alone_exports_incident_state_and_the_next_leader_takes_it_over(
        rb001, cluster, pair):  # noqa: F811 - the fixture
    cluster.create(rb001_policy(slo="30m"))
    ops = pair()
    leader = the_leader(ops)
    standby = next(op for op in ops if op is not leader)
    cluster.create(objects.deployment("checkout", image="shop/checkout:1.0", ready=False))
    name = cluster.one_incident()["metadata"]["name"]

    def exported(op: OperatorProcess) -> list:
        return [s for s in state_samples(op) if s.name == "missioncontrol_incident_info"
                and s.labels["incident"] == name]

    wait_for(lambda: exported(leader), timeout=30, what="the leader exporting the incident")
    assert state_samples(standby) == [], "a standby exports incident state: counted twice"
    leader.kill()
    wait_for(lambda: leading(standby), timeout=60, what="the standby to take the Lease")
    (info,) = wait_for(lambda: exported(standby), timeout=30,
                       what="the new leader exporting the incident")
    assert info.labels["runbook"] == "RB-001" and info.labels["mode"] == "enforce"
    standby.check_alive()
