"""RB-002 end to end on real parts: the control plane, Prometheus, a PostgreSQL primary with
its streaming replica, and the reference read service (examples/rb-002-read-service) under a
bounded load, its histogram scraped by Prometheus.

The regression is real: a tuning change pushed to the primary only (`ALTER SYSTEM SET
enable_indexscan = off, enable_bitmapscan = off`, as a bad configuration roll-out would do;
postgresql.auto.conf is not replicated) makes the order-history query a sequential scan of
600 000 rows on the primary, while the replica still reads it through its index. Moving the
non-critical reads to the replica and caching the popular list cures it. Dropping the index
instead (the DDL is replicated) makes both servers slow: nothing the runbook does helps, and
the platform lead is paged."""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Iterator

import pytest

from e2e.conftest import GROUP, ROLES, VERSION, Cluster, catalogue, events_for, ownership, secret
from harness import objects
from harness.procs import HarnessError, wait_for
from harness.readservice import ReadService
from missioncontrol import timeutil
from missioncontrol.postmortem import render_postmortem

pytestmark = pytest.mark.cluster

# Seconds: the policy's p95 threshold (the catalogue says 0.25). Healthy p95 was 13-17 ms and
# regressed 370-560 ms here; 250 ms left too little margin on a loaded machine.
THRESHOLD = 0.15
SUSTAIN = 8        # seconds: the trigger's `for` here (10m in the catalogue)
NON_CRITICAL = 'endpoint=~"history|popular"'
HISTORY_SQL = "FROM orders WHERE customer_id = $1"   # the order-history statement, normalized
TOP_SQL = ("SELECT left(query, 60), calls, round(total_exec_time) FROM pg_stat_statements "
           "ORDER BY total_exec_time DESC LIMIT 5")   # what a failed wait shows


def p95(env, namespace: str, selector: str = "") -> float | None:
    query = (f'histogram_quantile(0.95, sum by (le) (rate(db_query_duration_seconds_bucket'
             f'{{namespace="{namespace}"{"," + selector if selector else ""}}}[10s])))')
    result = env.prometheus.api("query", query=query)["result"]
    if not result or result[0]["value"][1] in ("NaN", "+Inf"):
        return None
    return float(result[0]["value"][1])


def runbook(*, verify_within: str = "60s", checks_every: str | None = None) -> dict:
    """The catalogue's RB-002 with the windows in seconds (a 10 s rate, sustained 8 s) and
    the test's threshold; its scheduled checks every `checks_every` on the database of Secret
    orders-db-checks, or none."""
    body = catalogue("rb-002")
    condition = body["spec"]["trigger"]["anyOf"][0]
    condition["threshold"]["query"] = condition["threshold"]["query"].replace("[5m]", "[10s]")
    condition["threshold"].update({"for": f"{SUSTAIN}s", "interval": "1s",
                                   "above": THRESHOLD})
    for step in body["spec"]["firstResponse"]["steps"]:
        if step["action"] in ("routeReadsToReplica", "setFlags"):
            step["verifyWithin"] = verify_within
    body["spec"].pop("automation", None)
    if checks_every:
        body["spec"]["automation"] = {"scheduledChecks": [
            {"name": name, "check": check, "every": checks_every,
             "databaseSecretRef": {"name": "orders-db-checks", "key": "dsn"}}
            for name, check in (("query-plan-diff", "QueryPlanDiff"),
                                ("index-recommendations", "IndexRecommendations"))]}
    return body


def policy(*, mode: str = "enforce", not_mitigated_after: str = "5m") -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "IncidentPolicy",
        "metadata": {"name": "orders-latency"},
        "spec": {
            "runbookRef": {"name": "rb-002"}, "mode": mode, "ownershipRef": {"name": "orders"},
            "targets": {"selector": {"matchLabels": {"app": "orders"}}},
            "overrides": {
                "recovery": {"slo": "10m", "stableFor": "5s"},
                "escalationRules": [{"after": not_mitigated_after, "when": "NotMitigated",
                                     "page": ["platform-lead"]}],
            },
            "limits": {"cooldown": "1s", "maxRemediations": 3, "window": "1h"},
        },
    }


class Rb002:
    def __init__(self, env, cluster: Cluster, postgres, service: ReadService) -> None:
        self.env, self.cluster, self.postgres, self.service = env, cluster, postgres, service

    def p95(self, selector: str = NON_CRITICAL) -> float | None:
        return p95(self.env, self.cluster.namespace, selector)

    def wait_p95(self, check, what: str, timeout: float = 90) -> float:
        return wait_for(lambda: (v := self.p95()) is not None and check(v) and v,
                        timeout=timeout, what=what)

    def config(self, name: str) -> dict:
        return self.cluster.core.read_namespaced_config_map(name, self.cluster.namespace).data

    def checks(self) -> dict:
        return (self.cluster.get("IncidentPolicy", "orders-latency").get("status") or {}).get(
            "scheduledChecks") or {}

    def wait_baseline(self) -> dict:
        """Until the scheduled checks keep a baseline plan of the order-history statement."""
        def baseline() -> dict | None:
            return next((b for b in self.checks().get("baselines") or []
                         if HISTORY_SQL in b["query"]), None)
        try:
            return wait_for(baseline, timeout=90, what="a baseline plan of the order history")
        except HarnessError as exc:
            checks = self.checks()
            kept = [b["query"][:60] for b in checks.get("baselines") or []]
            try:
                top = self.postgres.query("primary", TOP_SQL)
            except Exception as read:  # noqa: BLE001 - said instead
                top = f"unreadable: {read}"
            rest = {k: v for k, v in checks.items() if k != "baselines"}
            raise HarnessError(f"{exc}; status.scheduledChecks {rest}; baselines of {kept}; "
                               f"top statements {top}"
                               ) from None

    def wait_findings(self, *checks: str) -> dict:
        def found() -> dict | None:
            got = {f["check"]: f for f in self.checks().get("findings") or []
                   if HISTORY_SQL in f["query"]}
            return got if set(checks) <= set(got) else None
        return wait_for(found, timeout=90, what=f"findings of {checks}")

    def indexes(self) -> list[tuple]:
        return self.postgres.query("primary", "SELECT indexname FROM pg_indexes WHERE "
                                   "tablename = 'orders' ORDER BY indexname")


@pytest.fixture
def rb002(env, crds, cluster, receiver, operator_factory, postgres, tmp_path
          ) -> Iterator[Rb002]:
    """RB-002 guarding Deployment orders, its database Secrets and ConfigMaps, the read service
    running under load and scraped; the operator is started by the test."""
    ns = cluster.namespace
    for body in postgres.secrets():
        cluster.core.create_namespaced_secret(ns, body)
    # The scheduled checks' own read-only DSN (a test may break orders-db's).
    cluster.core.create_namespaced_secret(ns, {
        "metadata": {"name": "orders-db-checks"},
        "stringData": {"dsn": postgres.dsn("primary", "missioncontrol")}})
    cluster.create(secret("pager-routes", **{role: receiver.url(f"/{role}") for role in ROLES}))
    cluster.create(ownership("orders", {role: role for role in ROLES}))
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "db-routing"},
                                                   "data": {"non-critical-reads": "primary"}})
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "feature-flags"},
                                                   "data": {"safe-mode-cache": "off"}})
    cluster.create(objects.deployment("orders"))
    service = ReadService(env.kubeconfig, ns, "orders", postgres, tmp_path)
    try:
        service.start()
        env.prometheus.add_target(f"read-service-{ns}", f"127.0.0.1:{service.port}")
        service.load(rate=40, duration=600)
        yield Rb002(env, cluster, postgres, service)
    finally:
        env.prometheus.remove_target(f"read-service-{ns}")
        service.stop()
        # The regressions are undone for the next test on this session's database.
        reset_regression(postgres)
        postgres.execute("primary", "CREATE INDEX IF NOT EXISTS orders_customer_id_idx "
                         "ON orders (customer_id)", role="app")


def primary_only_regression(postgres) -> None:
    postgres.execute("primary", "ALTER SYSTEM SET enable_indexscan = off")
    postgres.execute("primary", "ALTER SYSTEM SET enable_bitmapscan = off")
    postgres.execute("primary", "SELECT pg_reload_conf()")


def reset_regression(postgres) -> None:
    postgres.execute("primary", "ALTER SYSTEM RESET enable_indexscan")
    postgres.execute("primary", "ALTER SYSTEM RESET enable_bitmapscan")
    postgres.execute("primary", "SELECT pg_reload_conf()")


def test_a_primary_regression_is_found_routed_to_the_replica_cached_and_put_back(
        rb002, cluster, operator_factory, measured):
    cluster.create(runbook())
    cluster.create(policy())
    operator_factory()
    before = rb002.wait_p95(lambda v: v < THRESHOLD, "a healthy p95 under load")
    assert rb002.service.contract() == {"non-critical-reads": "primary",
                                        "safe-mode-cache": False}

    primary_only_regression(rb002.postgres)
    injected = time.time()
    during = rb002.wait_p95(lambda v: v > THRESHOLD, "the regression seen by Prometheus")
    crossed = time.time()
    incident = cluster.one_incident(timeout=90)
    name = incident["metadata"]["name"]
    assert incident["spec"]["runbook"]["id"] == "RB-002"
    status = cluster.wait_phase(name, "Mitigating", "Mitigated", "Resolved")["status"]
    detected = timeutil.parse(status["detectedAt"])
    # Sustained `for` 8 s above the SLO before it opened, never sooner.
    assert detected - injected >= SUSTAIN, (detected - injected, crossed - injected)

    # The operator moved the non-critical reads and turned the cache on; the service honours it.
    wait_for(lambda: rb002.service.contract() == {"non-critical-reads": "replica",
                                                  "safe-mode-cache": True},
             timeout=60, what="the service reading from the replica with the cache on")
    after_mitigation = rb002.wait_p95(lambda v: v < THRESHOLD, "p95 back under the SLO")

    def slow_queries() -> dict | None:
        steps = {s["id"]: s for s in cluster.get("Incident", name)["status"]["steps"]}
        return steps if steps.get("slow-queries", {}).get("state") in (
            "Succeeded", "Failed") else None
    steps = wait_for(slow_queries, timeout=60, what="the slow-query step done")
    assert steps["slow-queries"]["state"] == "Succeeded", steps["slow-queries"]
    status = cluster.get("Incident", name)["status"]
    found = status["slowQueries"]["statements"]
    assert "FROM orders WHERE customer_id = $1" in found[0]["query"], found
    measured.append(f"RB-002 slowQueries[0]: {found[0]}")
    measured.append(f"RB-002 slow-queries step: {steps['slow-queries']['message']}")

    # The on-call engineer, shown the statement, takes the bad tuning change back.
    reset_regression(rb002.postgres)
    done = cluster.wait_phase(name, "Resolved", timeout=120)["status"]
    phases = [e["type"] for e in done["timeline"]]
    assert phases.index("Mitigated") < phases.index("Resolved"), phases
    # Resolved on the mitigated signal: the routing and the cache stay (revertOn: [Closed])
    # until people close it, the cause fixed; then they are put back in reverse order.
    assert rb002.config("db-routing") == {"non-critical-reads": "replica"}
    assert rb002.config("feature-flags") == {"safe-mode-cache": "on"}
    cluster.patch("Incident", name, {"spec": {"close": True, "actionItems": [
        {"title": "keep enable_indexscan on in the primary's tuning", "assignee": "dba"}]}})
    cluster.wait_phase(name, "Closed", timeout=60)
    wait_for(lambda: rb002.config("db-routing") == {"non-critical-reads": "primary"}
             and rb002.config("feature-flags") == {"safe-mode-cache": "off"},
             timeout=60, what="routing and flags put back")
    wait_for(lambda: rb002.service.contract() == {"non-critical-reads": "primary",
                                                  "safe-mode-cache": False},
             timeout=30, what="the service back on the primary, cache off")
    # Back on the primary, without the cache: fast again, the regression taken back.
    after = rb002.wait_p95(lambda v: v < THRESHOLD, "p95 under the SLO on the primary")
    measured.append(f"RB-002 non-critical p95: before {before * 1000:.0f} ms, during "
                    f"{during * 1000:.0f} ms, mitigated (replica + cache) "
                    f"{after_mitigation * 1000:.0f} ms, after (primary, fixed) "
                    f"{after * 1000:.0f} ms")
    assert not done.get("escalations"), done.get("escalations")


def steps_of(cluster: Cluster, name: str, *ids: str, timeout: float = 90) -> dict:
    def done() -> dict | None:
        steps = {s["id"]: s for s in cluster.get("Incident", name)["status"].get("steps") or []}
        return steps if all(steps.get(i, {}).get("state") in (
            "Succeeded", "Failed", "Skipped", "Planned") for i in ids) else None
    return wait_for(done, timeout=timeout, what=f"steps {ids} of {name} done")


def test_both_servers_slow_and_the_database_unreachable_escalate_to_the_platform_lead(
        rb002, cluster, operator_factory, receiver, postgres, measured):
    # The operator's Secret points at a server that is not there: the slow-query step fails
    # with the reason, and the rest of the runbook runs.
    from harness.procs import free_port
    cluster.core.replace_namespaced_secret("orders-db", cluster.namespace, {
        "metadata": {"name": "orders-db"},
        "stringData": {"dsn": f"postgresql://missioncontrol:x@127.0.0.1:{free_port()}/orders"}})
    cluster.create(runbook(verify_within="15s", checks_every="3s"))
    cluster.create(policy(not_mitigated_after="30s"))
    operator_factory()
    rb002.wait_p95(lambda v: v < THRESHOLD, "a healthy p95 under load")
    baseline = rb002.wait_baseline()
    assert {s["node"] for s in baseline["plan"]["scans"]} & {
        "Index Scan", "Bitmap Heap Scan"}, baseline
    # DDL is replicated: the replica loses the index as well.
    postgres.execute("primary", "DROP INDEX orders_customer_id_idx", role="app")
    name = cluster.one_incident(timeout=120)["metadata"]["name"]
    steps = steps_of(cluster, name, "slow-queries", "read-replicas", "safe-mode-cache")
    failed = steps["slow-queries"]
    assert failed["state"] == "Failed"
    assert failed["message"].startswith("cannot read pg_stat_statements in the database of "
                                        "Secret orders-db: OperationalError: connection "
                                        "failed: "), failed["message"]
    assert steps["read-replicas"]["state"] == steps["safe-mode-cache"]["state"] == "Succeeded"
    wait_for(lambda: rb002.service.contract() == {"non-critical-reads": "replica",
                                                  "safe-mode-cache": True},
             timeout=60, what="the service on the replica with the cache on")
    # Nothing helps: the platform lead is paged by the NotMitigated rule.
    def escalated() -> set | None:
        keys = {e["after"] for e in cluster.get("Incident", name)["status"].get(
            "escalations") or []}
        return keys if "30s" in keys else None
    keys = wait_for(escalated, timeout=120, what="the NotMitigated escalation after 30s")
    # The steps without effect said so too, after their verifyWithin.
    assert {"verify:read-replicas", "verify:safe-mode-cache"} <= keys, keys
    receiver.wait_for_requests("/platform-lead", 1, timeout=60)
    status = cluster.get("Incident", name)["status"]
    assert status["phase"] not in ("Mitigated", "Resolved") and status["escalated"]
    still = rb002.p95()
    assert still is not None and still > THRESHOLD
    measured.append(f"RB-002 both servers slow: non-critical p95 {still * 1000:.0f} ms on the "
                    f"replica with the cache on; escalations {sorted(keys)}")

    # The scheduled checks (their own Secret, the operator's reads a dead port) found the
    # dropped index: the plan diff against the baseline and the index HypoPG confirms.
    found = rb002.wait_findings("QueryPlanDiff", "IndexRecommendations")
    diff, rec = found["QueryPlanDiff"], found["IndexRecommendations"]
    assert re.match(r"(Index|Bitmap Heap) Scan -> Seq Scan on orders \(\d+ rows; was using "
                    r"index orders_customer_id_idx\)", diff["message"]), diff
    assert rec["ddl"] == "CREATE INDEX CONCURRENTLY ON orders (customer_id)"
    assert rec["message"].startswith("CREATE INDEX CONCURRENTLY ON orders (customer_id): "
                                     "confirmed by HypoPG, estimated cost "), rec
    assert rec["costAfter"] * 2 <= rec["costBefore"], rec
    assert f"{rec['costBefore']:.2f} -> {rec['costAfter']:.2f}" in rec["message"]
    measured.append(f"RB-002 policy status QueryPlanDiff: {diff['message']}")
    measured.append(f"RB-002 policy status IndexRecommendations: {rec['message']}")
    told = events_for(cluster, "orders-latency")
    assert any(e.startswith("QueryPlanChanged: QueryPlanDiff: ") and "Seq Scan on orders" in e
               for e in told), told
    assert any(e.startswith("IndexRecommended: IndexRecommendations: CREATE INDEX "
                            "CONCURRENTLY ON orders (customer_id)") for e in told), told
    # Each statement whose plan changed is told once: the order history, and any other
    # statement of the session's database on the dropped index (the integration tests' own,
    # when they ran first); a later run finding the same is no news.
    changed = collections.Counter(re.findall(r"\(queryid (-?\d+): ", e)[0] for e in told
                                  if e.startswith("QueryPlanChanged:"))
    assert changed and set(changed.values()) == {1}, "\n".join(told)
    assert any(e.startswith("QueryPlanChanged:") and "SELECT id, status, total, created_at "
               "FROM orders WHERE customer_id = $1" in e for e in told), "\n".join(told)

    # Attached to the open incident: its evidence, its timeline, its postmortem.
    def attached() -> dict | None:
        body = cluster.get("Incident", name)
        checks = {f["check"] for f in body["status"].get("planFindings") or []}
        return body if {"QueryPlanDiff", "IndexRecommendations"} <= checks else None
    body = wait_for(attached, timeout=60, what="the findings attached to the incident")
    kinds = [e["type"] for e in body["status"]["timeline"]]
    assert "QueryPlanChanged" in kinds and "IndexRecommended" in kinds, kinds
    page = render_postmortem(body)
    assert "## Query plans" in page and diff["message"] in page and rec["message"] in page
    # Only proposed: the operator built no index.
    assert rb002.indexes() == [("orders_pkey",)]


def test_dry_run_plans_it_all_and_changes_nothing(rb002, cluster, operator_factory):
    cluster.create(runbook(checks_every="3s"))
    cluster.create(policy(mode="dryRun"))
    operator_factory()
    indexes = rb002.indexes()
    rb002.wait_p95(lambda v: v < THRESHOLD, "a healthy p95 under load")
    rb002.wait_baseline()
    primary_only_regression(rb002.postgres)
    rb002.wait_p95(lambda v: v > THRESHOLD, "the regression seen by Prometheus")
    try:
        name = cluster.one_incident(timeout=120)["metadata"]["name"]
    except Exception:
        print(cluster.get("IncidentPolicy", "orders-latency").get("status"))
        raise
    steps = steps_of(cluster, name, "slow-queries", "read-replicas", "safe-mode-cache")
    assert steps["read-replicas"]["state"] == steps["safe-mode-cache"]["state"] == "Planned"
    assert steps["read-replicas"]["changes"][0]["to"] == "replica"
    assert steps["safe-mode-cache"]["changes"][0]["to"] == "on"
    # Reading changes nothing: the evidence is gathered in dry-run mode as well.
    assert steps["slow-queries"]["state"] == "Succeeded", steps["slow-queries"]
    assert rb002.config("db-routing") == {"non-critical-reads": "primary"}
    assert rb002.config("feature-flags") == {"safe-mode-cache": "off"}
    assert rb002.service.contract() == {"non-critical-reads": "primary", "safe-mode-cache": False}
    # The scheduled checks only read, in dryRun as always: the plan diff is found, nothing
    # is built.
    diff = rb002.wait_findings("QueryPlanDiff")["QueryPlanDiff"]
    assert " -> Seq Scan on orders (" in diff["message"], diff
    assert rb002.indexes() == indexes
