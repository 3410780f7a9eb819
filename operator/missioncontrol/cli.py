"""`missionctl`: run the operator, and the tools on-call engineers use beside it."""

from __future__ import annotations

import argparse
import os
import re
import sys

from . import __version__


def _run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        # kopf logs in through the kubernetes client's loader, which reads $KUBECONFIG when
        # the client is first imported: set it before anything imports the client.
        os.environ["KUBECONFIG"] = args.kubeconfig
    from . import durations
    from .main import Options, run
    from .webhook import WebhookOptions

    webhook = None
    if args.webhook_port:
        name = "mission-control-freeze" + (f"-{args.instance}" if args.instance else "")
        webhook = WebhookOptions(port=args.webhook_port, host=args.webhook_host,
                                 service=args.webhook_service,
                                 service_port=args.webhook_service_port, config_name=name,
                                 url=args.webhook_url, secret=args.webhook_secret,
                                 namespaces=tuple(args.namespace),
                                 cert_validity=durations.parse(args.webhook_cert_validity))
    from .signals.prometheus import Credentials, header_flag
    from .tenancy import default_protected, own_namespace

    if args.prometheus_password_file and args.prometheus_username is None:
        raise SystemExit("missionctl run: --prometheus-password-file needs --prometheus-username")
    try:
        extra = tuple(header_flag(h) for h in args.prometheus_header)
    except ValueError as exc:
        raise SystemExit(f"missionctl run: {exc}") from None
    credentials = Credentials(bearer_token_file=args.prometheus_bearer_token_file,
                              username=args.prometheus_username,
                              password_file=args.prometheus_password_file,
                              extra_headers=extra,
                              headers_file=args.prometheus_headers_file)

    from .alertreceiver import ReceiverOptions

    receiver = None
    if args.alertmanager_port:
        if not args.alertmanager_token_file:
            raise SystemExit("missionctl run: --alertmanager-port needs "
                             "--alertmanager-token-file (the receiver never runs without a "
                             "token)")
        if bool(args.alertmanager_tls_cert_file) != bool(args.alertmanager_tls_key_file):
            raise SystemExit("missionctl run: --alertmanager-tls-cert-file and "
                             "--alertmanager-tls-key-file go together")
        receiver = ReceiverOptions(port=args.alertmanager_port,
                                   token_file=args.alertmanager_token_file,
                                   tls_cert_file=args.alertmanager_tls_cert_file,
                                   tls_key_file=args.alertmanager_tls_key_file)
    protected = (default_protected(own_namespace()) if args.protected_namespaces is None
                 else tuple(n for n in (p.strip() for p in args.protected_namespaces.split(","))
                            if n))   # "--protected-namespaces=" protects none
    options = Options(
        protected_namespaces=protected,
        reference_namespaces=tuple(args.allow_reference_namespace),
        cluster_policy_namespaces=tuple(args.cluster_policy_namespace),
        namespaces=tuple(args.namespace), dry_run=args.dry_run,
        prometheus_url=args.prometheus_url, prometheus_credentials=credentials,
        prometheus_ca_file=args.prometheus_ca_file,
        kubeconfig=args.kubeconfig,
        liveness_port=args.liveness_port, metrics_port=args.metrics_port, webhook=webhook,
        tick=args.tick, redeliver_every=args.redeliver_every,
        delivery_expiry=args.delivery_expiry, standalone=args.peering is None,
        priority=args.priority,
        peering_name=args.peering or "mission-control", lease=args.lease,
        lease_duration=durations.parse(args.lease_duration), instance=args.instance,
        cluster_name=_cluster_name(args.cluster_name),
        alert_receiver=receiver, alertmanager_url=args.alertmanager_url)
    return run(options, verbose=args.verbose)


def _cluster_name(name: str) -> str:
    """A cluster name goes into dedup keys and channel names: a short DNS-label-like word."""
    name = name.strip()
    if name and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", name):
        raise SystemExit(f"missionctl run: --cluster-name {name!r}: use lowercase letters, "
                         f"digits, '-' and '.' (at most 63 characters), like prod-eu-1")
    return name


def _version(_: argparse.Namespace) -> int:
    print(f"missionctl {__version__}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from .show import render_runbook_command

    return render_runbook_command(args.source, namespace=args.namespace,
                                  kubeconfig=args.kubeconfig)


def _postmortem(args: argparse.Namespace) -> int:
    from .show import postmortem_command

    return postmortem_command(args.source, namespace=args.namespace, kubeconfig=args.kubeconfig)


def _prometheus_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument("--prometheus-url", default=os.environ.get("PROMETHEUS_URL"),
                     help="the Prometheus to query (default: $PROMETHEUS_URL); without it, "
                          "every PromQL signal is unknown")
    # Credentials are files, never arguments: a process's arguments are visible to anyone on
    # the node, and a mounted Secret is updated in place when it is rotated.
    auth = run.add_mutually_exclusive_group()
    auth.add_argument("--prometheus-bearer-token-file", default=None, metavar="FILE",
                      help="send the token in FILE as a bearer token to Prometheus (re-read "
                           "at every query, so a rotated token is used at once)")
    auth.add_argument("--prometheus-username", default=None,
                      help="basic auth to Prometheus as this user, with the password in "
                           "--prometheus-password-file")
    run.add_argument("--prometheus-password-file", default=None, metavar="FILE",
                     help="the basic-auth password (re-read at every query)")
    run.add_argument("--prometheus-header", action="append", default=[], metavar="NAME=VALUE",
                     help="a header sent with every query, like X-Scope-OrgID=team-a for a "
                          "multi-tenant Mimir or Cortex (repeat); for a secret value use "
                          "--prometheus-headers-file")
    run.add_argument("--prometheus-headers-file", default=None, metavar="FILE",
                     help="headers sent with every query, one `Name: value` a line (a mounted "
                          "Secret; re-read at every query)")
    run.add_argument("--prometheus-ca-file", default=None, metavar="FILE",
                     help="the CA bundle an https Prometheus is verified with (default: the "
                          "system's CAs; TLS is always verified)")


def _alertmanager_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument("--alertmanager-port", type=int, default=0, metavar="PORT",
                     help="serve Alertmanager's webhook receiver at :PORT/alertmanager, for "
                          "`alert` trigger conditions (0: off; needs "
                          "--alertmanager-token-file)")
    run.add_argument("--alertmanager-token-file", default=None, metavar="FILE",
                     help="the bearer token Alertmanager must send (http_config.authorization;"
                          " a mounted Secret, re-read at every request)")
    run.add_argument("--alertmanager-tls-cert-file", default=None, metavar="FILE",
                     help="serve the receiver over HTTPS with this certificate (and "
                          "--alertmanager-tls-key-file); default: HTTP")
    run.add_argument("--alertmanager-tls-key-file", default=None, metavar="FILE",
                     help="the private key of --alertmanager-tls-cert-file")
    run.add_argument("--alertmanager-url", default=os.environ.get("ALERTMANAGER_URL"),
                     metavar="URL",
                     help="the Alertmanager whose silences a policy with "
                          "spec.alertmanager.respectSilences consults (default: "
                          "$ALERTMANAGER_URL; a policy's spec.alertmanager.url wins)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="missionctl", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="a namespace to watch (repeat); default: all namespaces")
    run.add_argument("--protected-namespaces", default=None, metavar="NS,NS,...",
                     help="namespaces never guarded, frozen, patched, scaled, created in or "
                          "read Secrets from, whatever a policy selects (default: "
                          "kube-system,kube-public,kube-node-lease and the operator's own; "
                          "'' for none)")
    run.add_argument("--allow-reference-namespace", action="append", default=[],
                     metavar="NS", help="a namespace any policy may refer to besides its own "
                                        "(replaySample.namespace); repeat")
    run.add_argument("--cluster-policy-namespace", action="append", default=[], metavar="NS",
                     help="a namespace whose policies may select namespaces "
                          "(namespaceSelector); repeat; default: none")
    run.add_argument("--dry-run", action="store_true",
                     help="treat every policy as dryRun: record planned steps, change nothing")
    _prometheus_flags(run)
    _alertmanager_flags(run)
    run.add_argument("--kubeconfig", default=None,
                     help="default: in-cluster credentials, else $KUBECONFIG")
    run.add_argument("--liveness-port", type=int, default=8080,
                     help="serve kopf's liveness probe at :PORT/healthz (0: off)")
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="serve Prometheus metrics at :PORT/metrics (0: off)")
    run.add_argument("--webhook-port", type=int, default=9443,
                     help="serve the deploy-freeze admission webhook on PORT (0: no freeze "
                          "enforcement)")
    run.add_argument("--webhook-host", default="127.0.0.1",
                     help="the address the API server calls the webhook at (URL mode)")
    run.add_argument("--webhook-service", default=None, metavar="NAMESPACE/NAME",
                     help="reach the webhook through this Service instead of a URL")
    run.add_argument("--webhook-service-port", type=int, default=443,
                     help="the port of that Service (it forwards to --webhook-port)")
    run.add_argument("--webhook-url", default=None, metavar="URL",
                     help="URL mode behind a load balancer: the URL the API server calls "
                          "(default: https://WEBHOOK_HOST:WEBHOOK_PORT/freeze)")
    run.add_argument("--webhook-cert-validity", default="720h", metavar="DURATION",
                     help="validity of each webhook certificate made; renewed at two thirds "
                          "of it (default 720h: 30 days)")
    run.add_argument("--webhook-secret", default=None, metavar="NAMESPACE/NAME",
                     help="keep the webhook's certificate in this Secret, so that every "
                          "replica serves the same one (made by the first to start)")
    run.add_argument("--cluster-name", default=os.environ.get("MISSIONCONTROL_CLUSTER_NAME", ""),
                     metavar="NAME",
                     help="this cluster's name in a fleet (env MISSIONCONTROL_CLUSTER_NAME): in "
                          "every page, update, channel name, webhook payload, PagerDuty dedup "
                          "key and source, and postmortem, so two clusters never share an alert")
    run.add_argument("--instance", default="",
                     help="a suffix for cluster-wide names (the webhook configuration), so "
                          "several operators can share a cluster")
    run.add_argument("--tick", type=float, default=2.0,
                     help="seconds between rounds of each open incident")
    run.add_argument("--redeliver-every", type=float, default=60.0, metavar="SECONDS",
                     help="seconds between deliveries of a page or all-clear that failed, "
                          "also after the incident resolved")
    run.add_argument("--delivery-expiry", type=float, default=86400.0, metavar="SECONDS",
                     help="give up a notification not delivered within this long of its "
                          "first attempt (the all-clear: of the resolution)")
    run.add_argument("--lease", default=None, metavar="NAMESPACE/NAME",
                     help="the coordination.k8s.io Lease that picks the one replica that acts "
                          "(default: the pod's namespace, else the first --namespace, else "
                          "default; named mission-control[-INSTANCE])")
    run.add_argument("--lease-duration", default="15s", metavar="DURATION",
                     help="a leader that stops renewing the Lease is replaced after this long")
    run.add_argument("--peering", default=None, metavar="NAME",
                     help="also use kopf peering NAME (not needed: the Lease decides who acts)")
    run.add_argument("--priority", type=int, default=0,
                     help="kopf peering priority (peered replicas need distinct priorities)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)

    runbook = sub.add_parser("runbook", help="runbook tools")
    runbook_sub = runbook.add_subparsers(dest="runbook_command", required=True)
    render = runbook_sub.add_parser("render", help="print a runbook as Markdown")
    render.add_argument("source", help="a Runbook YAML file, or the name of a Runbook")
    render.add_argument("-n", "--namespace", default="default")
    render.add_argument("--kubeconfig", default=None)
    render.set_defaults(func=_render)

    postmortem = sub.add_parser("postmortem", help="render an incident's postmortem as Markdown")
    postmortem.add_argument("source", help="an Incident's name (or a YAML file holding one)")
    postmortem.add_argument("-n", "--namespace", default="default")
    postmortem.add_argument("--kubeconfig", default=None)
    postmortem.set_defaults(func=_postmortem)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sys.exit(args.func(args))
