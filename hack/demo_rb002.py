"""`make demo DEMO=rb-002`: RB-002 (Database Latency Regression) end to end, on a real
PostgreSQL primary and its streaming replica.

After the local cluster, the catalogue and the operator of `make demo` (hack/demo.py), it:

  1. starts PostgreSQL 15 (primary with pg_stat_statements, a hot standby made with
     pg_basebackup -R) as the postgres user in a temporary folder, and the reference read
     service (examples/rb-002-read-service) under a bounded load, scraped by Prometheus;
  2. applies RB-002 with its windows in seconds (p95 above 150 ms for 8 s), a policy guarding
     Deployment `orders`, the database Secrets and the db-routing / feature-flags ConfigMaps;
  3. pushes a bad tuning change to the primary only (index scans off: postgresql.auto.conf is
     not replicated) and follows the incident: the slow-query evidence, reads moved to the
     replica, the safe-mode cache on, p95 back under the SLO, Mitigated;
  4. takes the tuning change back (what the on-call engineer does, shown the statement), and
     follows resolution; the routing and cache stay until the incident is closed, then go back;
  5. prints the status board and the incident's timeline.

All along, the runbook's scheduled checks (every 5 s here, 1 h and 6 h in the catalogue) keep a
baseline plan of each top statement in the policy's status; the tuning change shows as a plan
diff (an Event on the policy, evidence on the incident), printed as it is found.

Everything it starts is stopped on exit.

    .venv/bin/python hack/demo_rb002.py [--deadline SECONDS] [--keep-logs]
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo as base  # noqa: E402
from demo import GROUP, NAMESPACE, REPO, VERSION, DemoFailed, block, say, stage  # noqa: E402

from harness.postgres import Postgres  # noqa: E402
from harness.readservice import ReadService  # noqa: E402

SLO = 0.15   # the policy's threshold: a margin on both sides on a busy machine
HISTORY = "FROM orders WHERE customer_id = $1"   # the order-history statement, normalized


class Rb002Demo(base.Demo):
    postgres: Postgres | None = None
    service: ReadService | None = None

    def run(self) -> None:
        self.start_cluster()
        self.install()
        self.start_operator()
        self.start_database()
        self.install_rb002()
        name = self.regress()
        self.follow_mitigation(name)
        self.follow_resolution(name)
        self.report_rb002(name)

    def alive(self) -> None:
        super().alive()
        if self.service:
            self.service.check_alive()

    def p95(self) -> float | None:
        query = ('histogram_quantile(0.95, sum by (le) (rate(db_query_duration_seconds_bucket'
                 f'{{namespace="{NAMESPACE}",endpoint=~"history|popular"}}[10s])))')
        result = self.cluster.prometheus.api("query", query=query)["result"]
        value = result[0]["value"][1] if result else "NaN"
        return None if value in ("NaN", "+Inf") else float(value)

    def wait_p95(self, check, what: str) -> float:
        return self.wait(lambda: (v := self.p95()) is not None and check(v) and v, what)

    def start_database(self) -> None:
        stage("Starting PostgreSQL 15: a primary (pg_stat_statements) and a streaming replica")
        self.postgres = Postgres().start()
        say(f"primary 127.0.0.1:{self.postgres.primary.port}, replica "
            f"127.0.0.1:{self.postgres.replica.port} (pg_basebackup -R), table orders with "
            f"600 000 rows and an index on customer_id", base.GREEN)

    def install_rb002(self) -> None:
        stage("RB-002 guarding Deployment orders; the read service under load")
        runbook = yaml.safe_load((REPO / "runbooks" /
                                  "rb-002-database-latency-regression.yaml").read_text())
        condition = runbook["spec"]["trigger"]["anyOf"][0]
        condition["threshold"]["query"] = condition["threshold"]["query"].replace("[5m]",
                                                                                  "[10s]")
        condition["threshold"].update({"for": "8s", "interval": "1s", "above": SLO})
        for step in runbook["spec"]["firstResponse"]["steps"]:
            if "verifyWithin" in step:
                step["verifyWithin"] = "60s"
        for check in runbook["spec"]["automation"]["scheduledChecks"]:
            check["every"] = "5s"
        policy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "IncidentPolicy",
                  "metadata": {"name": "orders-latency", "namespace": NAMESPACE},
                  "spec": {"runbookRef": {"name": "rb-002"}, "mode": "enforce",
                           "ownershipRef": {"name": "checkout"},
                           "targets": {"selector": {"matchLabels": {"app": "orders"}}},
                           "overrides": {"recovery": {"slo": "10m", "stableFor": "5s"}}}}
        config_maps = [{"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": NAMESPACE}, "data": data}
                       for name, data in (("db-routing", {"non-critical-reads": "primary"}),
                                          ("feature-flags", {"safe-mode-cache": "off"}))]
        secrets = [{**copy.deepcopy(s), "metadata": {**s["metadata"], "namespace": NAMESPACE}}
                   for s in self.postgres.secrets()]
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "orders", "namespace": NAMESPACE,
                                   "labels": {"app": "orders"}},
                      "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "orders"}},
                               "template": {"metadata": {"labels": {"app": "orders"}},
                                            "spec": {"containers": [{
                                                "name": "app", "image": "shop/orders:1.0"}]}}}}
        runbook["metadata"]["namespace"] = NAMESPACE
        say("$ kubectl apply --server-side -f -   (RB-002 sped up, Secrets orders-db and "
            "orders-app-db, ConfigMaps db-routing and feature-flags, Deployment orders, "
            "IncidentPolicy orders-latency)", base.DIM)
        out = self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                           input=yaml.safe_dump_all([runbook, *secrets, *config_maps,
                                                     deployment, policy]))
        block(out.stdout)
        self.service = ReadService(self.cluster.kubeconfig, NAMESPACE, "orders", self.postgres,
                                   self.root).start()
        self.cluster.prometheus.add_target("read-service", f"127.0.0.1:{self.service.port}")
        self.service.load(rate=40, duration=900)
        say(f"read service at {self.service.url} honours {self.service.contract()}; "
            f"40 requests/s of /popular, /history/<customer>, /customers/<id>")
        before = self.wait_p95(lambda v: v < SLO, "a healthy non-critical p95")
        say(f"non-critical p95 {before * 1000:.0f} ms (SLO {SLO * 1000:.0f} ms)", base.GREEN)
        baseline = self.wait(lambda: next((b for b in self.checks().get("baselines") or []
                                           if HISTORY in b["query"]), None),
                             "the scheduled checks' baseline plan of the order history")
        scans = ", ".join(f"{s['node']} on {s['relation']}"
                          + (f" ({s['index']})" if s.get("index") else "")
                          for s in baseline["plan"]["scans"])
        say(f"QueryPlanDiff baseline of the order history: {scans}, estimated cost "
            f"{baseline['plan']['totalCost']:.2f}", base.GREEN)

    def checks(self) -> dict:
        policy = self.kubectl("get", "incidentpolicy", "orders-latency", "-n", NAMESPACE,
                              "-o", "json").stdout
        return (json.loads(policy).get("status") or {}).get("scheduledChecks") or {}

    def findings(self) -> list[dict]:
        return [f for f in self.checks().get("findings") or [] if HISTORY in f["query"]]

    def regress(self) -> str:
        stage("A bad tuning change on the primary only: ALTER SYSTEM SET enable_indexscan = "
              "off, enable_bitmapscan = off")
        for sql in ("ALTER SYSTEM SET enable_indexscan = off",
                    "ALTER SYSTEM SET enable_bitmapscan = off", "SELECT pg_reload_conf()"):
            self.postgres.execute("primary", sql)
        injected = time.time()
        during = self.wait_p95(lambda v: v > SLO, "p95 above the SLO")
        say(f"non-critical p95 {during * 1000:.0f} ms: order histories are sequential scans "
            f"of 600 000 rows on the primary (the replica still uses its index)", base.YELLOW)
        incident = self.wait(lambda: self.incidents() and self.incidents()[0],
                             "an RB-002 incident")
        name = incident["metadata"]["name"]
        opened = base.epoch(incident["status"]["detectedAt"]) if incident.get("status") \
            else time.time()
        say(f"incident {name} opened {opened - injected:.1f} s after the change (p95 above "
            f"the SLO for 8 s first)", base.RED)
        return name

    def follow_mitigation(self, name: str) -> None:
        stage("First response: slow queries, reads to the replica, safe-mode cache")

        def step(step_id: str) -> dict | None:
            steps = {s["id"]: s for s in (self.incident(name).get("status") or {}).get(
                "steps") or []}
            s = steps.get(step_id) or {}
            return s if s.get("state") in ("Succeeded", "Failed", "Skipped") else None

        found = self.wait(lambda: step("slow-queries"), "the slow-query step")
        say(f"slow-queries: {found['message']}")
        for f in self.wait(self.findings, "the scheduled plan diff"):
            say(f"{f['check']}: {f['message']}", base.YELLOW)
        self.wait(lambda: self.service.contract() == {"non-critical-reads": "replica",
                                                      "safe-mode-cache": True},
                  "the service on the replica with the cache on")
        say(f"read service now honours {self.service.contract()}", base.GREEN)
        after = self.wait_p95(lambda v: v < SLO, "p95 back under the SLO")
        say(f"non-critical p95 {after * 1000:.0f} ms", base.GREEN)
        self.wait(lambda: (self.incident(name).get("status") or {}).get("phase") in (
            "Mitigated", "Resolved"), "the incident to be Mitigated")
        say(f"incident {name}: Mitigated", base.GREEN)

    def follow_resolution(self, name: str) -> None:
        stage("The on-call engineer takes the tuning change back; recovery and undo")
        for sql in ("ALTER SYSTEM RESET enable_indexscan", "ALTER SYSTEM RESET enable_bitmapscan",
                    "SELECT pg_reload_conf()"):
            self.postgres.execute("primary", sql)
        self.wait(lambda: (self.incident(name).get("status") or {}).get("phase") == "Resolved",
                  "the incident to resolve")
        say(f"incident {name}: Resolved", base.GREEN)
        say(f"routing and cache stay until the incident is closed (revertOn: [Closed]): "
            f"{self.service.contract()}", base.GREEN)
        stage("People close the incident with an action item; the routing and cache go back")
        self.kubectl("patch", "incident", name, "-n", NAMESPACE, "--type=merge", "-p",
                     json.dumps({"spec": {"close": True, "actionItems": [
                         {"title": "keep index scans on in the primary's tuning",
                          "assignee": "dba"}]}}), show=True)
        self.wait(lambda: self.service.contract() == {"non-critical-reads": "primary",
                                                      "safe-mode-cache": False},
                  "routing and the cache put back")
        say(f"routing and flags put back: the service honours {self.service.contract()}",
            base.GREEN)
        after = self.wait_p95(lambda v: v < SLO, "p95 under the SLO on the primary")
        say(f"non-critical p95 {after * 1000:.0f} ms on the primary", base.GREEN)

    def report_rb002(self, name: str) -> None:
        stage(f"What the scheduled checks attached to {name} (status.planFindings)")
        for f in self.incident(name)["status"].get("planFindings") or []:
            block(f"{f['check']}: {f['message']}")
        stage("The status board")
        block(self.kubectl("get", "incidents", "-n", NAMESPACE, show=True).stdout)
        stage(f"Timeline of {name}")
        for e in self.incident(name)["status"].get("timeline") or []:
            block(f"{base.hms(e.get('at')):<12}  {e.get('type', ''):<18}  "
                  f"{e.get('message', '')[:200]}")

    def stop(self) -> None:
        if self.service:
            self.service.stop()
        super().stop()
        if self.postgres:
            self.postgres.stop()


if __name__ == "__main__":
    base.Demo = Rb002Demo   # main() builds the demo by this name
    sys.argv += [] if "--deadline" in sys.argv else ["--deadline", "420"]
    try:
        sys.exit(base.main())
    except DemoFailed as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
