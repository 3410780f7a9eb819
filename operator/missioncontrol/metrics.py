"""The operator's own metrics, exported with prometheus_client on --metrics-port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Incident durations run from seconds (a fast rollback) to hours.
_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 2700, 3600, 7200, 14400)

INCIDENTS_OPENED = Counter(
    "missioncontrol_incidents_opened_total", "Incidents opened, by runbook and mode.",
    ["runbook", "mode"])
STEPS = Counter(
    "missioncontrol_steps_total", "Runbook steps run, by runbook, action and result.",
    ["runbook", "action", "result"])
PAGES = Counter(
    "missioncontrol_pages_total", "Notifications sent, by route type, kind and outcome.",
    ["route", "kind", "outcome"])
TIME_TO_DETECT = Histogram(
    "missioncontrol_time_to_detect_seconds", "From the release to the incident opening.",
    ["runbook"], buckets=_BUCKETS)
TIME_TO_PAGE = Histogram(
    "missioncontrol_time_to_page_seconds", "From detection to the first delivered page.",
    ["runbook"], buckets=_BUCKETS)
TIME_TO_ACKNOWLEDGE = Histogram(
    "missioncontrol_time_to_acknowledge_seconds", "From detection to the first acknowledgement.",
    ["runbook"], buckets=_BUCKETS)
TIME_TO_MITIGATE = Histogram(
    "missioncontrol_time_to_mitigate_seconds", "From detection to Mitigated.",
    ["runbook"], buckets=_BUCKETS)
TIME_TO_RESOLVE = Histogram(
    "missioncontrol_time_to_resolve_seconds", "From detection to Resolved.",
    ["runbook"], buckets=_BUCKETS)
# Alert on it: above a few ticks, the operator is not seeing or changing the cluster (its
# value comes from kube.Health at each scrape; see main.build_memo).
SECONDS_SINCE_API_SUCCESS = Gauge(
    "missioncontrol_seconds_since_last_api_success",
    "Seconds since a Kubernetes API call of the operator last succeeded.")

LEADER = Gauge(
    "missioncontrol_leader",
    "1 while this replica holds the leader Lease and acts; 0 while it stands by.", ["identity"])
FREEZE_ADMISSIONS = Counter(
    "missioncontrol_freeze_admissions_total",
    "Freeze webhook answers by verdict (allowed, refused, error).", ["verdict"])
WEBHOOK_CERT_EXPIRY = Gauge(
    "missioncontrol_webhook_certificate_expiry_timestamp_seconds",
    "When the freeze webhook's serving certificate, as this replica serves it, expires "
    "(Unix time).")
WEBHOOK_CERT_RENEWALS = Counter(
    "missioncontrol_webhook_certificate_renewals_total",
    "Changes this replica made to the shared webhook certificate, by step (create, replace, "
    "stage, promote, prune).", ["step"])
