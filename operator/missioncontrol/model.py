"""The typed model of Mission Control's resources: Runbook, IncidentPolicy, ServiceOwnership.

Handlers parse a resource body once, here; the core only ever sees these objects.
A resource the CRD schema let through but that still cannot work raises `ModelError`,
naming the field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from . import timeutil
from .matchers import Matcher, MatcherError
from .parse import ModelError, Reader

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
ROLES = ("release-owner", "oncall-backend", "platform-lead", "integration-owner",
         "incident-commander", "stakeholders")
MODES = ("enforce", "dryRun")
ROUTE_TYPES = ("PagerDuty", "Slack", "Webhook")
ACTIONS = ("freezeDeployments", "assessBlastRadius", "rollback", "routeReadsToReplica",
           "setFlags", "rateLimit", "pauseConsumers", "replaySample", "identifySlowQueries",
           "notify", "suspendGitOps")
REVERT_ON = ("Resolved", "Closed")
ON_NO_EFFECT = ("escalate", "revert", "continue")
APPROVAL = ("required", "none")
ON_APPROVAL_TIMEOUT = ("proceed", "skip", "escalate")
WHEN = ("Always", "NotMitigated", "NotRecovered", "SLOBreached")
DEFAULT_CADENCE = {"SEV1": 15 * 60.0, "SEV2": 30 * 60.0, "SEV3": 3600.0, "SEV4": 4 * 3600.0}
# The range of every duration, in seconds: the same the CRDs' rules enforce (docs/api.md,
# "Durations"). The operator checks them too, for objects stored before the rules existed.
INTERVAL = (1.0, 3600.0)          # how often a check runs; synthetic timeouts; backoff
GRACE = (0.0, 3600.0)             # readiness gracePeriod: 0s counts failures at once
SPAN = (1.0, 86400.0)             # for, windows of a check, within, timeouts, cadence, stableFor
LONG = (1.0, 7 * 86400.0)         # release window, freeze, escalation `after`, SLO, limits


# -- shared pieces ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str

    @classmethod
    def parse(cls, r: Reader) -> SecretRef:
        return cls(name=r.str("name"), key=r.str("key"))


@dataclass(frozen=True)
class Route:
    type: str
    secret: SecretRef
    url: str | None = None

    @classmethod
    def parse(cls, r: Reader) -> Route:
        return cls(type=r.str("type", choices=ROUTE_TYPES),
                   secret=SecretRef.parse(r.obj("secretRef")), url=r.str("url", None))


# Label syntax as the API server parses a selector (apimachinery validation): a key is an
# optional DNS-subdomain prefix and "/", then a name of up to 63 characters; a value is empty
# or up to 63 characters. The CRDs carry the same patterns.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = re.compile(
    rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$")
LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
# An object's name (a DNS subdomain). The CRDs check names too; the model names the field.
DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class SelectorError(ModelError):
    """A label selector the API server could not parse: reported as InvalidSelector."""


def _label_key(key: str, path: str) -> str:
    prefix = key.rpartition("/")[0]
    if not LABEL_KEY.match(key) or len(prefix) > 253:
        raise SelectorError(path, f"{key!r} is not a label key: an optional DNS prefix and "
                                  f"'/', then up to 63 letters, digits, '-', '_' or '.', "
                                  f"starting and ending with a letter or digit")
    return key


def _label_value(value: str, path: str) -> str:
    if not LABEL_VALUE.match(value):
        raise SelectorError(path, f"{value!r} is not a label value: up to 63 letters, digits, "
                                  f"'-', '_' or '.', starting and ending with a letter or digit")
    return value


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, r: Reader) -> LabelSelector:
        expressions = tuple(
            (_label_key(e.str("key"), f"{e.path}.key"),
             e.str("operator", choices=("In", "NotIn", "Exists", "DoesNotExist")),
             tuple(_label_value(v, f"{e.path}.values") for v in e.strings("values")))
            for e in r.items("matchExpressions"))
        labels = r.mapping("matchLabels")
        for key, value in labels.items():
            _label_key(key, f"{r.path}.matchLabels")
            _label_value(value, f"{r.path}.matchLabels[{key}]")
        return cls(tuple(sorted(labels.items())), expressions)

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and (not present or labels[key] not in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True

    def to_query(self) -> str:
        """The selector as the API's `labelSelector` query parameter."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for key, op, values in self.match_expressions:
            if op == "In":
                parts.append(f"{key} in ({','.join(values)})")
            elif op == "NotIn":
                parts.append(f"{key} notin ({','.join(values)})")
            elif op == "Exists":
                parts.append(key)
            else:
                parts.append(f"!{key}")
        return ",".join(parts)


# -- detectors --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readiness:
    consecutive_failures: int = 3
    interval: float = 10.0
    grace_period: float = 30.0
    kind = "readiness"


@dataclass(frozen=True)
class Threshold:
    query: str
    above: float | None = None
    below: float | None = None
    sustain: float | None = None           # `for`: failing continuously this long
    consecutive_failures: int | None = None
    interval: float = 30.0
    kind = "threshold"

    def breached(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below

    def describe(self) -> str:
        return f"> {self.above:g}" if self.above is not None else f"< {self.below:g}"


@dataclass(frozen=True)
class RisesSharply:
    query: str
    window: float
    factor: float
    min_increase: float = 0.0
    interval: float = 30.0
    kind = "risesSharply"


@dataclass(frozen=True)
class Alert:
    """An Alertmanager alert about the target (see alerts.py): firing fails the check,
    resolved passes it, no report within `stale_after` is unknown."""
    alertname: str
    matchers: tuple[Matcher, ...] = ()           # beyond the alertname and the target
    namespace_label: str = "namespace"
    deployment_label: str = "deployment"
    sustain: float | None = None                 # `for`: firing continuously this long
    consecutive_failures: int | None = None
    interval: float = 5.0
    # Alertmanager re-sends a firing alert every repeat_interval (4h by default), and a
    # resolved one once: a report older than this says nothing of now.
    stale_after: float = 5 * 3600.0
    kind = "alert"


Detector = Readiness | Threshold | RisesSharply | Alert


@dataclass(frozen=True)
class Condition:
    name: str
    detector: Detector
    description: str = ""

    @property
    def interval(self) -> float:
        return self.detector.interval

    @classmethod
    def parse(cls, r: Reader) -> Condition:
        kinds = [k for k in ("readiness", "threshold", "risesSharply", "alert") if r.has(k)]
        if len(kinds) != 1:
            raise ModelError(r.path, "set exactly one of readiness, threshold, risesSharply, "
                                     "alert")
        d = r.obj(kinds[0])
        detector: Detector
        if kinds[0] == "readiness":
            detector = Readiness(d.int("consecutiveFailures", 3, minimum=1),
                                 d.duration("interval", 10.0, bounds=INTERVAL),
                                 d.duration("gracePeriod", 30.0, bounds=GRACE))
        elif kinds[0] == "threshold":
            above, below = d.float("above", None), d.float("below", None)
            if (above is None) == (below is None):
                raise ModelError(d.path, "set exactly one of above, below")
            sustain = d.duration("for", None, bounds=SPAN)
            consecutive = d.int("consecutiveFailures", None, minimum=1)
            detector = Threshold(d.str("query"), above, below, sustain,
                                 consecutive if consecutive or sustain else 1,
                                 d.duration("interval", 30.0, bounds=INTERVAL))
        elif kinds[0] == "alert":
            detector = _parse_alert(d)
        else:
            factor = d.float("factor")
            if factor <= 1:
                raise ModelError(f"{d.path}.factor", f"must be greater than 1, got {factor:g}")
            detector = RisesSharply(d.str("query"), d.duration("window", bounds=SPAN), factor,
                                    d.float("minIncrease", 0.0),
                                    d.duration("interval", 30.0, bounds=INTERVAL))
        return cls(name=r.str("name"), detector=detector, description=r.str("description", ""))


def _parse_alert(d: Reader, base: Alert | None = None) -> Alert:
    """An `alert` condition, or a policy's override of one (`base`: the runbook's)."""
    alertname = d.str("alertname") if base is None else d.str("alertname", base.alertname)
    matchers = base.matchers if base is not None else ()
    if d.has("labels") or d.has("matchers"):
        matchers = tuple(_matchers(d))
    sustain = d.duration("for", base.sustain if base else None, bounds=SPAN)
    consecutive = d.int("consecutiveFailures", base.consecutive_failures if base else None,
                        minimum=1)
    alert = Alert(alertname, matchers,
                  _alert_label(d.str("namespaceLabel", base.namespace_label if base
                                     else "namespace"), f"{d.path}.namespaceLabel"),
                  _alert_label(d.str("deploymentLabel", base.deployment_label if base
                                     else "deployment"), f"{d.path}.deploymentLabel"),
                  sustain, consecutive if consecutive or sustain else 1,
                  d.duration("interval", base.interval if base else 5.0, bounds=INTERVAL),
                  d.duration("staleAfter", base.stale_after if base else 5 * 3600.0,
                             bounds=LONG))
    if alert.stale_after < alert.interval:
        raise ModelError(f"{d.path}.staleAfter", "must not be shorter than interval")
    return alert


PROMETHEUS_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _alert_label(name: str, path: str) -> str:
    if not PROMETHEUS_LABEL.fullmatch(name):
        raise ModelError(path, f"{name!r} is not a Prometheus label name: letters, digits and "
                               f"'_', not starting with a digit")
    return name


def _matchers(d: Reader) -> list[Matcher]:
    """`labels` (each one equal) and `matchers` (Alertmanager's shape: name, value, isRegex,
    isEqual), one list."""
    labels = d.raw("labels", {}) or {}
    if not isinstance(labels, dict):
        raise ModelError(f"{d.path}.labels", "must be a map of label name to value")
    out = []
    for key, value in labels.items():
        out.append(Matcher.make(_alert_label(str(key), f"{d.path}.labels"), str(value)))
    for index, m in enumerate(d.items("matchers")):
        try:
            out.append(Matcher.make(_alert_label(m.str("name"), f"{m.path}.name"),
                                    m.str("value"),
                                    is_regex=m.bool("isRegex", False),
                                    is_equal=m.bool("isEqual", True)))
        except MatcherError as exc:
            raise ModelError(f"{d.path}.matchers[{index}]", str(exc)) from None
    return out


@dataclass(frozen=True)
class Trigger:
    conditions: tuple[Condition, ...]
    after_release_window: float | None = None

    def condition(self, name: str) -> Condition | None:
        return next((c for c in self.conditions if c.name == name), None)


# -- steps ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FreezeDeployments:
    scope: str = "Deployment"
    max_duration: float = 7200.0


@dataclass(frozen=True)
class Dashboard:
    name: str
    query: str


@dataclass(frozen=True)
class SyntheticCheck:
    name: str
    url: str
    method: str = "GET"
    expect_status: int = 200
    timeout: float = 5.0


@dataclass(frozen=True)
class AssessBlastRadius:
    dashboards: tuple[Dashboard, ...] = ()
    synthetic_checks: tuple[SyntheticCheck, ...] = ()


@dataclass(frozen=True)
class Rollback:
    to: str = "LastHealthy"
    verify_within: float = 300.0


@dataclass(frozen=True)
class ConfigValue:
    """routeReadsToReplica, rateLimit: one key of a ConfigMap the application reads."""
    config_map: str
    key: str
    value: str


@dataclass(frozen=True)
class RateLimit(ConfigValue):
    """rateLimit: the ConfigMap key, and where the runbook names one, the Ingress (in the
    target's namespace) whose ingress-nginx limit-rps annotation is set to the same rate."""
    ingress: str | None = None


@dataclass(frozen=True)
class SetFlags:
    config_map: str
    flags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PauseConsumers:
    selector: LabelSelector


@dataclass(frozen=True)
class ReplaySample:
    namespace: str
    image: str
    sample: int = 100
    command: tuple[str, ...] = ()
    sample_from: tuple[str, str] | None = None   # (ConfigMap, key) of the target's namespace


@dataclass(frozen=True)
class IdentifySlowQueries:
    database: SecretRef
    top: int = 10


@dataclass(frozen=True)
class Notify:
    roles: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True)
class SuspendGitOps:
    argocd_namespace: str = "argocd"   # where Applications live unless their name says


def _parse_params(action: str, r: Reader) -> Any:
    if action == "freezeDeployments":
        return FreezeDeployments(r.str("scope", "Deployment", choices=("Deployment", "Namespace")),
                                 r.duration("maxDuration", 7200.0, bounds=LONG))
    if action == "assessBlastRadius":
        dashboards = tuple(Dashboard(d.str("name"), d.str("query")) for d in r.items("dashboards"))
        checks = tuple(SyntheticCheck(c.str("name"), c.str("url"), c.str("method", "GET"),
                                      c.int("expectStatus", 200),
                                      c.duration("timeout", 5.0, bounds=INTERVAL))
                       for c in r.items("syntheticChecks"))
        if not dashboards and not checks:
            raise ModelError(r.path, "name at least one dashboard or synthetic check")
        return AssessBlastRadius(dashboards, checks)
    if action == "rollback":
        return Rollback(r.str("to", "LastHealthy", choices=("LastHealthy", "PreviousRevision")),
                        r.duration("verifyWithin", 300.0, bounds=SPAN))
    if action == "routeReadsToReplica":
        return ConfigValue(r.str("configMap"), r.str("key"), r.str("value", "replica"))
    if action == "rateLimit":
        rps = r.float("requestsPerSecond")
        if rps <= 0:
            raise ModelError(f"{r.path}.requestsPerSecond", "must be greater than 0")
        ingress = r.str("ingress", None)
        if ingress is not None:
            if not DNS_SUBDOMAIN.fullmatch(ingress):
                raise ModelError(f"{r.path}.ingress", f"{ingress!r} is not an Ingress name "
                                 f"(lower-case letters, digits, '-' and '.', at most 253)")
            # ingress-nginx reads limit-rps as a whole number, and anything else as no limit.
            if not rps.is_integer():
                raise ModelError(f"{r.path}.requestsPerSecond", f"ingress-nginx's limit-rps "
                                 f"takes whole requests per second, got {rps:g}: round it, or "
                                 f"leave out ingress")
        # A whole rate in full ("2000000", never "2e+06": ingress-nginx parses an integer).
        rate = str(int(rps)) if rps.is_integer() else f"{rps:g}"
        return RateLimit(r.str("configMap"), r.str("key"), rate, ingress)
    if action == "setFlags":
        flags = r.mapping("flags")
        if not flags:
            raise ModelError(f"{r.path}.flags", "set at least one flag")
        return SetFlags(r.str("configMap"), tuple(sorted(flags.items())))
    if action == "pauseConsumers":
        return PauseConsumers(LabelSelector.parse(r.obj("selector")))
    if action == "replaySample":
        source = r.obj("sampleFrom", required=False)
        return ReplaySample(r.str("namespace"), r.str("image"), r.int("sample", 100, minimum=1),
                            r.strings("command"),
                            (source.str("configMap"), source.str("key", "events"))
                            if source else None)
    if action == "identifySlowQueries":
        return IdentifySlowQueries(SecretRef.parse(r.obj("databaseSecretRef")),
                                   r.int("top", 10, minimum=1))
    if action == "notify":
        return Notify(r.strings("roles", required=True, choices=ROLES), r.str("message", ""))
    if action == "suspendGitOps":
        return SuspendGitOps(r.str("argoCDNamespace", "argocd"))
    raise ModelError(r.path, f"unknown action {action!r}")


@dataclass(frozen=True)
class Approval:
    """A step that waits for a person's approval (gates.py): who is asked, and what happens
    if nobody answers within `timeout` (None: it waits until someone does)."""
    approvers: tuple[str, ...] = ()   # empty: the roles the runbook pages when it opens
    timeout: float | None = None
    on_timeout: str = "escalate"

    @classmethod
    def parse(cls, r: Reader) -> Approval | None:
        required = r.str("approval", "none", choices=APPROVAL) == "required"
        extra = [k for k in ("approvalTimeout", "onApprovalTimeout", "approvers") if r.has(k)]
        if not required:
            if extra:
                raise ModelError(r.path, f"{', '.join(extra)} need approval: required")
            return None
        return cls(r.strings("approvers", choices=ROLES),
                   r.duration("approvalTimeout", None, bounds=LONG),
                   r.str("onApprovalTimeout", "escalate", choices=ON_APPROVAL_TIMEOUT))


@dataclass(frozen=True)
class Step:
    id: str
    action: str
    params: Any
    description: str = ""
    continue_on_failure: bool = False
    timeout: float | None = None
    revert_on: tuple[str, ...] | None = None   # None: the action's default (actions/)
    verify_within: float | None = None   # mitigated within this long after it, or no effect
    on_no_effect: str = "escalate"
    approval: Approval | None = None   # it waits for a person's go first (gates.py)

    @classmethod
    def parse(cls, r: Reader) -> Step:
        action = r.str("action", choices=ACTIONS)
        others = [a for a in ACTIONS if a != action and r.has(a)]
        if others:
            raise ModelError(r.path, f"action is {action}: remove the parameters of "
                                     f"{', '.join(others)}")
        return cls(id=r.str("id"), action=action, params=_parse_params(action, r.obj(action)),
                   description=r.str("description", ""),
                   continue_on_failure=r.bool("continueOnFailure", False),
                   timeout=r.duration("timeout", None, bounds=SPAN),
                   revert_on=r.strings("revertOn", choices=REVERT_ON)
                   if r.has("revertOn") else None,
                   verify_within=r.duration("verifyWithin", None, bounds=SPAN),
                   on_no_effect=r.str("onNoEffect", "escalate", choices=ON_NO_EFFECT),
                   approval=Approval.parse(r))


# -- escalation, recovery, automation ----------------------------------------------------------
@dataclass(frozen=True)
class EscalationRule:
    after: float
    page: tuple[str, ...]
    when: str = "NotMitigated"


@dataclass(frozen=True)
class Escalation:
    page: tuple[str, ...] = ()
    page_within: float = 300.0
    rules: tuple[EscalationRule, ...] = ()
    repage_after: float = 600.0   # page an unacknowledged role again after this long

    @classmethod
    def parse(cls, r: Reader | None) -> Escalation:
        if r is None:
            return cls()
        return cls(r.strings("page", choices=ROLES),
                   r.duration("pageWithin", 300.0, bounds=SPAN),
                   parse_rules(r), r.duration("repageAfter", 600.0, bounds=SPAN))


def parse_rules(r: Reader, key: str = "rules") -> tuple[EscalationRule, ...]:
    rules = tuple(EscalationRule(e.duration("after", bounds=LONG),
                                 e.strings("page", required=True, choices=ROLES),
                                 e.str("when", "NotMitigated", choices=WHEN))
                  for e in r.items(key))
    for earlier, later in zip(rules, rules[1:], strict=False):
        if later.after <= earlier.after:
            raise ModelError(f"{r.path}.{key}", "`after` must increase from rule to rule")
    return rules


@dataclass(frozen=True)
class Stable:
    """A signal whose slope stays within +-band (per second, over window) and whose value is at
    most `below`: one PromQL query that returns a series only when it holds."""
    query: str
    window: float = 60.0
    band: float = 1.0
    below: float | None = None

    def promql(self) -> str:
        step = max(1, int(self.window // 30))
        value = f"({self.query})" + (f" <= {self.below:g}" if self.below is not None else "")
        return (f"{value} and on (namespace, deployment) "
                f"(abs(deriv(({self.query})[{int(self.window)}s:{step}s])) <= {self.band:g})")


@dataclass(frozen=True)
class Recovery:
    slo: float
    stable_for: float = 120.0
    description: str = ""
    stable: Stable | None = None


@dataclass(frozen=True)
class ScheduledCheck:
    name: str
    check: str
    every: float
    # The database it reads; None: the one the runbook's identifySlowQueries step names.
    database: SecretRef | None = None


DEPTH_QUERY = ('sum by (namespace, deployment) (webhook_retry_queue_depth{namespace=~"'
               '{{ .namespace }}", deployment=~"{{ .name }}"})')


@dataclass(frozen=True)
class Automation:
    automatic_rollback: bool = False
    rollback_after_failures: int | None = None
    scheduled_checks: tuple[ScheduledCheck, ...] = ()
    adaptive_backoff: tuple[float, float] | None = None   # (initial, max)
    dead_letter_topic: str | None = None
    # Where adaptive backoff and dead-letter routing are published (the consumer contract),
    # the queue depth they follow, and how often.
    contract_config_map: str = "webhook-ingress"
    depth_query: str = DEPTH_QUERY
    backoff_interval: float = 30.0

    @classmethod
    def parse(cls, r: Reader | None) -> Automation:
        if r is None:
            return cls()
        rollback = r.obj("automaticRollback", required=False)
        backoff = r.obj("adaptiveBackoff", required=False)
        dead = r.obj("deadLetter", required=False)
        return cls(
            automatic_rollback=bool(rollback and rollback.bool("enabled", True)),
            rollback_after_failures=rollback.int("afterConsecutiveFailures", None, minimum=1)
            if rollback else None,
            scheduled_checks=tuple(ScheduledCheck(
                c.str("name"), c.str("check"), c.duration("every", bounds=LONG),
                SecretRef.parse(c.obj("databaseSecretRef"))
                if c.has("databaseSecretRef") else None)
                for c in r.items("scheduledChecks")),
            adaptive_backoff=(backoff.duration("initial", 1.0, bounds=INTERVAL),
                              backoff.duration("max", 300.0, bounds=INTERVAL))
            if backoff and backoff.bool("enabled", True) else None,
            dead_letter_topic=dead.str("topic", None) if dead and dead.bool("enabled", True)
            else None,
            contract_config_map=(backoff.str("configMap", None) if backoff else None)
            or (dead.str("configMap", None) if dead else None) or "webhook-ingress",
            depth_query=backoff.str("query", DEPTH_QUERY) if backoff else DEPTH_QUERY,
            backoff_interval=backoff.duration("interval", 30.0, bounds=INTERVAL)
            if backoff else 30.0,
        )

    @property
    def publishes(self) -> bool:
        """Whether anything runs while the policy guards (the consumer contract's keys)."""
        return self.adaptive_backoff is not None or self.dead_letter_topic is not None


# -- Runbook ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Runbook:
    namespace: str
    name: str
    id: str
    title: str
    severity: str
    trigger: Trigger
    steps: tuple[Step, ...]
    recovery: Recovery
    summary: str = ""
    first_response_within: float = 300.0
    escalation: Escalation = field(default_factory=Escalation)
    automation: Automation = field(default_factory=Automation)

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def templated(self) -> tuple[tuple[str, str], ...]:
        """Every text rendered with the target's {{ .namespace }} and {{ .name }}: (where,
        text), for checking them all before anything renders one."""
        out = [(f"condition {c.name}", c.detector.query) for c in self.trigger.conditions
               if isinstance(c.detector, Threshold | RisesSharply)]
        if self.automation.adaptive_backoff:
            out.append(("automation.adaptiveBackoff.query", self.automation.depth_query))
        if self.recovery.stable:
            out.append(("recovery.stable.query", self.recovery.stable.query))
        for step in self.steps:
            if isinstance(step.params, AssessBlastRadius):
                out += [(f"step {step.id} dashboard {d.name}", d.query)
                        for d in step.params.dashboards]
                out += [(f"step {step.id} synthetic check {c.name}", c.url)
                        for c in step.params.synthetic_checks]
        return tuple(out)

    def secret_refs(self) -> tuple[tuple[str, SecretRef], ...]:
        """The Secrets the steps read, in the runbook's namespace: (where, reference)."""
        return tuple((f"step {s.id}", s.params.database) for s in self.steps
                     if isinstance(s.params, IdentifySlowQueries)) + tuple(
            (f"scheduled check {c.name}", c.database)
            for c in self.automation.scheduled_checks if c.database is not None)

    def check_database(self, check: ScheduledCheck) -> SecretRef | None:
        """The database a scheduled check reads: its own, else the slow-query step's."""
        return check.database or next((s.params.database for s in self.steps
                                       if isinstance(s.params, IdentifySlowQueries)), None)

    @classmethod
    def parse(cls, body: dict) -> Runbook:
        meta = Reader(body.get("metadata"), "metadata")
        spec = Reader(body.get("spec"), "spec")
        trigger = spec.obj("trigger")
        conditions = tuple(Condition.parse(c) for c in trigger.items("anyOf", required=True))
        _unique([c.name for c in conditions], f"{trigger.path}.anyOf", "name")
        release = trigger.obj("afterRelease", required=False)
        first = spec.obj("firstResponse")
        steps = tuple(Step.parse(s) for s in first.items("steps", required=True))
        _unique([s.id for s in steps], f"{first.path}.steps", "id")
        recovery = spec.obj("recovery")
        stable = recovery.obj("stable", required=False)
        rec = Recovery(recovery.duration("slo", bounds=LONG),
                       recovery.duration("stableFor", 120.0, bounds=SPAN),
                       recovery.str("description", ""),
                       Stable(stable.str("query"), stable.duration("window", 60.0, bounds=SPAN),
                              stable.float("band", 1.0), stable.float("below", None))
                       if stable else None)
        if rec.stable_for >= rec.slo:
            raise ModelError(f"{recovery.path}.stableFor", "must be shorter than slo")
        return cls(
            namespace=meta.str("namespace", "default"), name=meta.str("name"),
            id=spec.str("id"), title=spec.str("title"), summary=spec.str("summary", ""),
            severity=spec.str("severity", "SEV3", choices=SEVERITIES),
            trigger=Trigger(conditions,
                            release.duration("window", bounds=LONG) if release else None),
            first_response_within=first.duration("within", 300.0, bounds=SPAN), steps=steps,
            escalation=Escalation.parse(spec.obj("escalation", required=False)),
            recovery=rec, automation=Automation.parse(spec.obj("automation", required=False)),
        )


def _unique(values: list[str], path: str, key: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ModelError(path, f"two entries have {key} {value!r}")
        seen.add(value)


# -- IncidentPolicy ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    cooldown: float = 600.0
    max_remediations: int = 3
    window: float = 3600.0


@dataclass(frozen=True)
class AlertmanagerSettings:
    """spec.alertmanager: consult its silences before acting (silences.py)."""
    respect_silences: bool = False
    url: str | None = None               # default: the operator's --alertmanager-url
    namespace_label: str = "namespace"
    deployment_label: str = "deployment"

    @classmethod
    def parse(cls, r: Reader) -> AlertmanagerSettings:
        url = r.str("url", None)
        if url is not None and not re.match(r"https?://[^/\s]+", url):
            raise ModelError(f"{r.path}.url", f"{url!r} is not an http(s) URL")
        return cls(r.bool("respectSilences", False), url,
                   _alert_label(r.str("namespaceLabel", "namespace"), f"{r.path}.namespaceLabel"),
                   _alert_label(r.str("deploymentLabel", "deployment"),
                                f"{r.path}.deploymentLabel"))


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    runbook: str
    selector: LabelSelector
    namespace_selector: LabelSelector | None = None
    severity: str | None = None
    mode: str = "dryRun"
    overrides: tuple[tuple[str, dict[str, Any]], ...] = ()  # (condition name, raw fields)
    recovery: dict[str, Any] = field(default_factory=dict)
    after_release_window: float | None = None
    page_within: float | None = None
    repage_after: float | None = None
    escalation_rules: tuple[EscalationRule, ...] | None = None   # replaces the runbook's
    limits: Limits = field(default_factory=Limits)
    cadence: tuple[tuple[str, float], ...] = tuple(DEFAULT_CADENCE.items())
    updates_route: Route | None = None
    channel_route: Route | None = None
    channel_prefix: str = "inc"
    ownership: str | None = None
    uid: str = ""
    # A maintenance window (`kubectl mc pause`): see pause.py. Seconds since the epoch.
    paused_until: float | None = None
    pause_reason: str = ""
    paused_by: str = ""
    alertmanager: AlertmanagerSettings = field(default_factory=AlertmanagerSettings)

    @property
    def dry_run(self) -> bool:
        return self.mode == "dryRun"

    def cadence_for(self, severity: str) -> float:
        return dict(self.cadence).get(severity, DEFAULT_CADENCE["SEV3"])

    @classmethod
    def parse(cls, body: dict) -> Policy:
        meta = Reader(body.get("metadata"), "metadata")
        spec = Reader(body.get("spec"), "spec")
        targets = spec.obj("targets")
        ns_selector = targets.obj("namespaceSelector", required=False)
        overrides = spec.obj("overrides", required=False) or Reader({}, "spec.overrides")
        limits = spec.obj("limits", required=False) or Reader({}, "spec.limits")
        lim = Limits(limits.duration("cooldown", 600.0, bounds=LONG),
                     limits.int("maxRemediations", 3, minimum=0),
                     limits.duration("window", 3600.0, bounds=LONG))
        if lim.cooldown > lim.window:
            raise ModelError("spec.limits.cooldown", "must not be longer than window")
        updates = spec.obj("stakeholderUpdates", required=False) or Reader({}, "spec.sU")
        cadence_r = updates.obj("cadence", required=False) or Reader({}, "spec.cadence")
        cadence = tuple((sev, cadence_r.duration(sev, DEFAULT_CADENCE[sev], bounds=SPAN))
                        for sev in SEVERITIES)
        channel = spec.obj("channel", required=False) or Reader({}, "spec.channel")
        ownership = spec.obj("ownershipRef", required=False)
        return cls(
            namespace=meta.str("namespace", "default"), name=meta.str("name"),
            uid=meta.str("uid", ""),
            runbook=spec.obj("runbookRef").str("name"),
            selector=LabelSelector.parse(targets.obj("selector")),
            namespace_selector=LabelSelector.parse(ns_selector) if ns_selector else None,
            severity=spec.str("severity", None, choices=SEVERITIES),
            mode=spec.str("mode", "dryRun", choices=MODES),
            overrides=tuple((o.str("name"), dict(o.data)) for o in overrides.items("conditions")),
            recovery=dict(overrides.raw("recovery", {})),
            after_release_window=overrides.duration("afterReleaseWindow", None, bounds=LONG),
            page_within=overrides.duration("pageWithin", None, bounds=SPAN),
            repage_after=overrides.duration("repageAfter", None, bounds=SPAN),
            escalation_rules=parse_rules(overrides, "escalationRules")
            if overrides.has("escalationRules") else None,
            limits=lim, cadence=cadence,
            updates_route=Route.parse(updates.obj("route")) if updates.has("route") else None,
            channel_route=Route.parse(channel.obj("route")) if channel.has("route") else None,
            channel_prefix=channel.str("prefix", "inc"),
            ownership=ownership.str("name") if ownership else None,
            paused_until=_timestamp(spec, "pausedUntil"),
            pause_reason=spec.str("pauseReason", ""), paused_by=spec.str("pausedBy", ""),
            alertmanager=AlertmanagerSettings.parse(spec.obj("alertmanager"))
            if spec.has("alertmanager") else AlertmanagerSettings(),
        )


def _timestamp(r: Reader, key: str) -> float | None:
    """An RFC 3339 timestamp field, in seconds since the epoch (None when unset)."""
    text = r.str(key, None)
    if text is None:
        return None
    try:
        return timeutil.parse(text)
    except ValueError:
        raise ModelError(f"{r.path}.{key}", f"{text!r} is not an RFC 3339 timestamp "
                                            f"(for example 2030-01-01T10:00:00Z)") from None


def effective_runbook(runbook: Runbook, policy: Policy) -> Runbook:
    """The runbook as this policy runs it: its overrides applied, checked like the original."""
    conditions = {c.name: c for c in runbook.trigger.conditions}
    for index, (name, fields) in enumerate(policy.overrides):
        path = f"spec.overrides.conditions[{index}]"
        if name not in conditions:
            raise ModelError(f"{path}.name", f"runbook {runbook.name} has no condition {name!r}"
                                             f" (it has {', '.join(conditions)})")
        conditions[name] = _override_condition(conditions[name], Reader(fields, path))
    recovery = runbook.recovery
    if policy.recovery:
        r = Reader(policy.recovery, "spec.overrides.recovery")
        recovery = replace(recovery, slo=r.duration("slo", recovery.slo, bounds=LONG),
                           stable_for=r.duration("stableFor", recovery.stable_for, bounds=SPAN))
        if recovery.stable_for >= recovery.slo:
            raise ModelError("spec.overrides.recovery.stableFor", "must be shorter than slo")
    trigger = replace(runbook.trigger, conditions=tuple(conditions.values()))
    if policy.after_release_window is not None:
        trigger = replace(trigger, after_release_window=policy.after_release_window)
    escalation = runbook.escalation
    if policy.page_within is not None:
        escalation = replace(escalation, page_within=policy.page_within)
    if policy.repage_after is not None:
        escalation = replace(escalation, repage_after=policy.repage_after)
    if policy.escalation_rules is not None:
        escalation = replace(escalation, rules=policy.escalation_rules)
    return replace(runbook, trigger=trigger, recovery=recovery, escalation=escalation,
                   severity=policy.severity or runbook.severity)


def _override_condition(condition: Condition, r: Reader) -> Condition:
    d = condition.detector
    if isinstance(d, Readiness):
        d = replace(d, consecutive_failures=r.int("consecutiveFailures", d.consecutive_failures,
                                                  minimum=1),
                    interval=r.duration("interval", d.interval, bounds=INTERVAL),
                    grace_period=r.duration("gracePeriod", d.grace_period, bounds=GRACE))
    elif isinstance(d, Alert):
        d = _parse_alert(r, d)
    elif isinstance(d, Threshold):
        above, below = r.float("above", None), r.float("below", None)
        if above is not None and below is not None:
            raise ModelError(r.path, "set at most one of above, below")
        if above is not None or below is not None:
            d = replace(d, above=above, below=below)
        d = replace(d, query=r.str("query", d.query),
                    sustain=r.duration("for", d.sustain, bounds=SPAN),
                    consecutive_failures=r.int("consecutiveFailures", d.consecutive_failures,
                                               minimum=1),
                    interval=r.duration("interval", d.interval, bounds=INTERVAL))
    else:
        d = replace(d, query=r.str("query", d.query),
                    window=r.duration("window", d.window, bounds=SPAN),
                    factor=r.float("factor", d.factor),
                    min_increase=r.float("minIncrease", d.min_increase),
                    interval=r.duration("interval", d.interval, bounds=INTERVAL))
        if d.factor <= 1:
            raise ModelError(f"{r.path}.factor", "must be greater than 1")
    return replace(condition, detector=d)


# -- ServiceOwnership -------------------------------------------------------------------------
@dataclass(frozen=True)
class Contact:
    name: str
    route: Route
    email: str = ""


@dataclass(frozen=True)
class Ownership:
    namespace: str
    name: str
    service: str
    roles: tuple[tuple[str, tuple[Contact, ...]], ...]

    def contacts(self, role: str) -> tuple[Contact, ...]:
        return dict(self.roles).get(role, ())

    @classmethod
    def parse(cls, body: dict) -> Ownership:
        meta = Reader(body.get("metadata"), "metadata")
        spec = Reader(body.get("spec"), "spec")
        roles = []
        for entry in spec.items("roles", required=True):
            contacts = tuple(Contact(c.str("name"), Route.parse(c.obj("route")),
                                     c.str("email", ""))
                             for c in entry.items("contacts", required=True))
            roles.append((entry.str("role", choices=ROLES), contacts))
        return cls(meta.str("namespace", "default"), meta.str("name"), spec.str("service"),
                   tuple(roles))
