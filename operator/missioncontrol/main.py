"""The operator's entry point: one place that builds the runtime, sets kopf up and
registers every handler module."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import kopf
from aiohttp import web
from prometheus_client import start_http_server

from . import alertreceiver, guard, metrics, tenancy, timeutil, webhook, webhookcerts
from .alerts import AlertStore
from .engine import Engine
from .freezeindex import FreezeIndex
from .handlers import freeze
from .kube import Kube, load_client
from .leadership import DURATION, Leadership, default_namespace
from .signals.prometheus import Credentials, Prometheus
from .watchcache import WatchCache
from .webhook import WebhookOptions

log = logging.getLogger("missioncontrol")


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...] = ()
    dry_run: bool = False
    prometheus_url: str | None = None
    prometheus_credentials: Credentials = field(default_factory=Credentials)
    prometheus_ca_file: str | None = None   # verify an https Prometheus against this bundle
    kubeconfig: str | None = None
    liveness_port: int = 8080
    metrics_port: int = 9090
    webhook: WebhookOptions | None = field(default_factory=WebhookOptions)
    tick: float = 2.0
    redeliver_every: float = 60.0
    delivery_expiry: float = 86400.0
    standalone: bool = True
    priority: int = 0
    peering_name: str = "mission-control"
    protected_namespaces: tuple[str, ...] = tenancy.SYSTEM_NAMESPACES
    reference_namespaces: tuple[str, ...] = ()
    cluster_policy_namespaces: tuple[str, ...] = ()
    lease: str | None = None          # "namespace/name"; default: see lease_ref
    lease_duration: float = DURATION
    instance: str = ""
    cluster_name: str = ""            # --cluster-name: which cluster of a fleet this is
    alert_receiver: alertreceiver.ReceiverOptions | None = None   # --alertmanager-port
    alertmanager_url: str | None = None   # --alertmanager-url: whose silences policies consult

    @property
    def lease_ref(self) -> tuple[str, str]:
        if self.lease:
            namespace, name = self.lease.split("/", 1)
            return namespace, name
        return (default_namespace(self.namespaces),
                "mission-control" + (f"-{self.instance}" if self.instance else ""))


def register() -> None:
    """Importing a handler module registers its kopf handlers."""
    from .handlers import automation, catalogue, incidents, policies, startup, state  # noqa: F401


def build_memo(options: Options) -> kopf.Memo:
    kube = Kube(load_client(options.kubeconfig))
    metrics.SECONDS_SINCE_API_SUCCESS.set_function(kube.health.seconds_since_success)
    prometheus = (Prometheus(options.prometheus_url, credentials=options.prometheus_credentials,
                             ca_file=options.prometheus_ca_file)
                  if options.prometheus_url else None)
    memo = kopf.Memo()
    memo.options = options
    memo.kube = kube
    memo.alerts = AlertStore() if options.alert_receiver is not None else None
    memo.guard = guard.Context(kube, prometheus, timeutil.wall, options.dry_run,
                               alerts=memo.alerts, alertmanager_url=options.alertmanager_url)
    memo.engine = Engine(kube, prometheus, timeutil.wall, _post_event,
                         force_dry_run=options.dry_run, tick=options.tick,
                         redeliver_every=options.redeliver_every,
                         delivery_expiry=options.delivery_expiry,
                         cluster=options.cluster_name)
    namespace, name = options.lease_ref
    memo.leadership = Leadership(kube, namespace, name, duration=options.lease_duration)
    return memo


def _post_event(body: dict, kind: str, reason: str, message: str) -> None:
    kopf.event(body, type=kind, reason=reason, message=message)


def run(options: Options, *, verbose: bool = False) -> int:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    register()
    rules = tenancy.configure(protected=options.protected_namespaces,
                              reference_namespaces=options.reference_namespaces,
                              cluster_policy_namespaces=options.cluster_policy_namespaces,
                              watched=options.namespaces)
    log.info("protected namespaces: %s; cluster-policy namespaces: %s",
             ", ".join(sorted(rules.protected)) or "none",
             ", ".join(sorted(rules.cluster_policy_namespaces)) or "none")
    if options.metrics_port:
        start_http_server(options.metrics_port, addr="0.0.0.0")
        log.info("metrics on :%d/metrics", options.metrics_port)
    asyncio.run(operate(options))
    return 0


async def operate(options: Options) -> None:
    """The Lease, the freeze webhook and kopf, side by side; on the way out the Lease is
    handed over at once, so a standby takes over without waiting for it to expire."""
    memo = build_memo(options)
    # The guard reads the cluster from watches: listed (beside the Lease and the webhook's
    # start) before kopf starts the first pass.
    cache = memo.guard.cache = WatchCache(memo.kube, options.namespaces).start()
    liveness = (f"http://0.0.0.0:{options.liveness_port}/healthz"
                if options.liveness_port else None)
    lease = asyncio.create_task(memo.leadership.keep(), name="leader lease")
    try:
        async with contextlib.AsyncExitStack() as stack:
            if options.webhook is not None:
                await stack.enter_async_context(_freeze_webhook(memo.kube, options))
            if options.alert_receiver is not None:
                await stack.enter_async_context(_alert_receiver(memo, options.alert_receiver))
            if not await cache.wait_synced(30):
                log.warning("the watch cache is not synced yet: guard passes wait for it")
            await kopf.operator(clusterwide=not options.namespaces,
                                namespaces=list(options.namespaces),
                                liveness_endpoint=liveness, memo=memo)
    finally:
        cache.stop()
        lease.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lease
        await memo.leadership.release()


@contextlib.asynccontextmanager
async def _alert_receiver(memo: kopf.Memo,
                          receiver: alertreceiver.ReceiverOptions) -> AsyncIterator[None]:
    """Every replica receives Alertmanager's notifications; the leader's guard acts on them
    (see alertreceiver.py for how a standby hands a notification on)."""
    application = alertreceiver.app(memo.alerts, token_file=receiver.token_file,
                                    clock=timeutil.wall,
                                    leading=lambda: memo.leadership.leading)
    runner = await alertreceiver.serve(receiver, application)
    log.info("Alertmanager receiver on :%d%s (%s)", receiver.port, alertreceiver.PATH,
             "https" if receiver.tls_cert_file else "http")
    try:
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _freeze_webhook(kube: Kube, options: Options) -> AsyncIterator[None]:
    """Every replica serves the freeze webhook, leader or not: from its own cache of open
    incidents, with the certificate all replicas share and renew."""
    hook = options.webhook
    store = (webhookcerts.SecretStore(kube, hook.secret) if hook.secret
             else webhookcerts.MemoryStore())

    async def trust(bundle: bytes) -> None:
        await webhook.trust(kube, hook, bundle, now=time.time(), keep_others=store.shared)

    serving = webhookcerts.Serving()
    keeper = webhookcerts.Keeper(store, serving, trust, webhook.hosts(hook),
                                 webhookcerts.Timing(hook.cert_validity))
    index = FreezeIndex(kube, options.namespaces).start()
    runner: web.AppRunner | None = None
    renewing: asyncio.Task | None = None
    try:
        await keeper.round()   # a certificate to serve, and the configuration trusting it
        await index.wait_synced(10)
        runner = await webhook.serve(hook, serving.context, freeze.app(index))
        renewing = asyncio.create_task(keeper.keep(), name="webhook certificate")
        log.info("freeze webhook %s installed, serving on :%d", hook.config_name, hook.port)
        yield
    finally:
        if renewing:
            renewing.cancel()
        if runner:
            await runner.cleanup()
        index.stop()
        serving.close()
