"""Alerts Alertmanager sent us (its webhook, payload version 4), held in memory for the `alert`
trigger condition. Pure: parsing a payload, and the bounded store the guard reads.

Kept per alert name, then per alert (fingerprint): one report, the latest, of each alert. The
target is read from each alert's labels by the condition that asks (its label names are the
condition's own), so one store serves every policy. Bounded: at most `max_alerts` alerts; when
full, the alert reported least recently goes first, and a report older than `retention` is
dropped at the next payload (it is past any condition's staleAfter by then)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import matchers, timeutil
from .detect.signals import AlertReport
from .model import Alert

PAYLOAD_VERSION = "4"
MAX_ALERTS = 10_000
RETENTION = 7 * 86400.0        # the longest staleAfter a condition may set
MAX_LABELS = 100


class PayloadError(ValueError):
    """A payload that is not Alertmanager's webhook version 4: answered with 400 and this."""


def parse_payload(data: object, *, now: float) -> list[AlertReport]:
    """The alerts of one webhook notification, as reports received `now`."""
    if not isinstance(data, Mapping):
        raise PayloadError("expected a JSON object (Alertmanager's webhook payload)")
    version = data.get("version")
    if version != PAYLOAD_VERSION:
        raise PayloadError(f"payload version {version!r}: this receiver reads Alertmanager's "
                           f"webhook payload version {PAYLOAD_VERSION!r}")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: expected a list")
    return [_report(a, f"alerts[{i}]", now) for i, a in enumerate(alerts)]


def _report(data: object, path: str, now: float) -> AlertReport:
    if not isinstance(data, Mapping):
        raise PayloadError(f"{path}: expected an object")
    labels = data.get("labels")
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise PayloadError(f"{path}.labels: expected a map of string to string "
                           f"(at most {MAX_LABELS})")
    name = labels.get("alertname")
    if not name:
        raise PayloadError(f"{path}.labels.alertname: required")
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{path}.status: expected firing or resolved, got {status!r}")
    try:
        starts_at = timeutil.parse(data.get("startsAt")) if data.get("startsAt") else None
    except (TypeError, ValueError):
        raise PayloadError(f"{path}.startsAt: {data.get('startsAt')!r} is not an RFC 3339 "
                           f"timestamp") from None
    annotations = data.get("annotations") if isinstance(data.get("annotations"), Mapping) \
        else {}
    summary = annotations.get("summary") or annotations.get("description") or ""
    fingerprint = data.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        # Alertmanager sends one; without it, the label set is the alert's identity.
        fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    return AlertReport(fingerprint, name, tuple(sorted(labels.items())), status == "firing",
                       now, starts_at, str(summary)[:300])


@dataclass
class AlertStore:
    max_alerts: int = MAX_ALERTS
    retention: float = RETENTION
    # (alertname, fingerprint) -> report, least recently reported first
    _order: OrderedDict[tuple[str, str], AlertReport] = field(default_factory=OrderedDict)
    _by_name: dict[str, dict[str, AlertReport]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._order)

    def put(self, reports: list[AlertReport], *, now: float) -> None:
        for report in reports:
            key = (report.alertname, report.fingerprint)
            self._order.pop(key, None)
            self._order[key] = report
            self._by_name.setdefault(report.alertname, {})[report.fingerprint] = report
        while self._order:
            (name, fingerprint), oldest = next(iter(self._order.items()))
            if len(self._order) <= self.max_alerts and now - oldest.received_at <= self.retention:
                break
            self._order.popitem(last=False)
            same = self._by_name.get(name, {})
            same.pop(fingerprint, None)
            if not same:
                self._by_name.pop(name, None)

    def reports(self, detector: Alert, target: tuple[str, str]) -> tuple[AlertReport, ...]:
        """The reports of the condition's alert about this Deployment: its alertname, the
        target's namespace and name in the condition's label names, and its matchers."""
        namespace, deployment = target
        out = []
        for report in self._by_name.get(detector.alertname, {}).values():
            labels = dict(report.labels)
            if labels.get(detector.namespace_label) == namespace \
                    and labels.get(detector.deployment_label) == deployment \
                    and matchers.all_match(detector.matchers, labels):
                out.append(report)
        return tuple(out)
