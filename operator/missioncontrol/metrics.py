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
_PAGES = Counter(
    "missioncontrol_pages_total",
    "Pages to people (kind page, acknowledge or resolve), by route type, kind and outcome.",
    ["route", "kind", "outcome"])
STAKEHOLDER_UPDATES = Counter(
    "missioncontrol_stakeholder_updates_total",
    "Stakeholder updates sent (the final all-clear included), by route type and outcome.",
    ["route", "outcome"])
CHANNEL_ANNOUNCEMENTS = Counter(
    "missioncontrol_channel_announcements_total",
    "Response channel announcements sent, by route type and outcome.", ["route", "outcome"])


class _Sent:
    """Where paging.send counts every message it sends: a page counts as a page, a stakeholder
    update or a channel announcement in its own counter (they go to groups, not on-call people,
    and alerting on pages must not see them)."""

    def labels(self, *, route: str, kind: str, outcome: str):  # noqa: ANN201 - a child
        if kind == "update":
            return STAKEHOLDER_UPDATES.labels(route=route, outcome=outcome)
        if kind == "channel":
            return CHANNEL_ANNOUNCEMENTS.labels(route=route, outcome=outcome)
        return _PAGES.labels(route=route, kind=kind, outcome=outcome)


PAGES = _Sent()
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


def guarding(*, runbook: str, mode: str) -> None:
    """A runbook is guarding in this mode: its series exist from now on, at zero, so the first
    incident counts as an increase (rate() and increase() cannot see a series' first sample)."""
    INCIDENTS_OPENED.labels(runbook=runbook, mode=mode)
    for histogram in (TIME_TO_DETECT, TIME_TO_PAGE, TIME_TO_ACKNOWLEDGE, TIME_TO_MITIGATE,
                      TIME_TO_RESOLVE):
        histogram.labels(runbook=runbook)


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
ALERT_PAYLOADS = Counter(
    "missioncontrol_alertmanager_payloads_total",
    "Alertmanager webhook payloads received, by result (accepted, standby, invalid, "
    "unauthorized).", ["result"])
SILENCE_LOOKUPS = Counter(
    "missioncontrol_alertmanager_silence_lookups_total",
    "Alertmanager silence lookups before an incident opened, by result (silenced, "
    "not_silenced, unreachable).", ["result"])
