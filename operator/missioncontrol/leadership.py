"""Exactly one replica acts: the holder of a coordination.k8s.io Lease runs the guard and
incident daemons; every other replica stands by (it still serves the freeze webhook, from
freezeindex.py) and says so in its log and in the `missioncontrol_leader` metric.

On by default, so that a Deployment scaled to two by mistake never doubles an action. The
rules are client-go's leader election:
- a replica takes the Lease when it is free (no holder: released on a clean stop) or when the
  holder has not renewed it for `duration`, measured on this replica's own clock from the moment
  it saw the record change (so clocks across nodes need not agree);
- the holder renews every `duration / 3`, and stops acting when it could not renew for
  `duration * 2 / 3`: it stops before anyone else may start;
- every write carries the Lease's resourceVersion, so of two replicas taking it at once one
  wins.
All progress lives in object status, so a new leader resumes where the last one stopped."""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from . import metrics
from .kube import ApiException, Conflict, Kube, NotFound, typed

log = logging.getLogger("missioncontrol.leadership")

DURATION = 15.0
_POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def identity() -> str:
    """The pod's name (its hostname) and the process: unique per replica, and stable across a
    container restart in the same pod (PID 1 again), which then takes its Lease straight back."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def default_namespace(watched: tuple[str, ...]) -> str:
    """The pod's own namespace in a cluster; else the first watched namespace; else default."""
    try:
        return _POD_NAMESPACE.read_text().strip()
    except OSError:
        return watched[0] if watched else "default"


@dataclass
class Leadership:
    kube: Kube
    namespace: str
    name: str
    me: str = field(default_factory=identity)
    duration: float = DURATION
    clock: Callable[[], float] = time.monotonic
    holder: str | None = None          # as last seen
    _renewed: float | None = None       # our clock when we last held it for sure
    _seen: tuple | None = None          # (holder, renewTime) last seen, and when
    _seen_at: float = 0.0

    def __post_init__(self) -> None:
        self.api = client.CoordinationV1Api(self.kube.api)
        # Its own thread: a renewal must never queue behind the operator's other API calls in
        # the shared pool, or a busy leader would lose the Lease for being busy.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        metrics.LEADER.labels(self.me).set(0)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except ApiException as exc:   # our own thread, not Kube.call: type the answer here
            answer = typed(exc)
            if answer is not exc:
                raise answer from exc
            raise

    async def _read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = await self._call(fn, *args, _preload_content=False, **kwargs)
        return json.loads(response.data)

    @property
    def leading(self) -> bool:
        return self._renewed is not None and self.clock() - self._renewed < self.duration * 2 / 3

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- the loop -------------------------------------------------------------------------------
    async def keep(self) -> None:
        """Try to take or renew the Lease every `duration / 3` until cancelled."""
        was = False
        while True:
            try:
                await self.attempt()
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                log.warning("lease %s: API %s %s", self.ref, exc.status, exc.reason)
            except Exception as exc:  # noqa: BLE001 - a failed attempt only delays us
                log.warning("lease %s: %s", self.ref, exc)
            now = self.leading
            if now != was:
                metrics.LEADER.labels(self.me).set(1 if now else 0)
                if now:
                    log.info("leading: %s holds lease %s and acts", self.me, self.ref)
                else:
                    log.warning("standby: %s lost lease %s, stops acting", self.me, self.ref)
            was = now
            await asyncio.sleep(self.duration / 3)

    async def attempt(self) -> bool:
        """One try to take or renew the Lease; whether we hold it now."""
        timeout = max(1.0, self.duration / 3)
        try:
            lease = await self._read(self.api.read_namespaced_lease, self.name,
                                         self.namespace, _request_timeout=timeout)
        except NotFound:
            return await self._write(None, timeout)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        record = (holder, spec.get("renewTime"))
        if record != self._seen:
            self._seen, self._seen_at = record, self.clock()
        if holder != self.holder:
            if holder and holder != self.me:
                log.info("standby: lease %s is held by %s; %s stands by (serving the freeze "
                         "webhook only)", self.ref, holder, self.me)
            self.holder = holder
        ttl = float(spec.get("leaseDurationSeconds") or self.duration)
        if holder and holder != self.me and self.clock() - self._seen_at < ttl:
            self._renewed = None
            return False
        return await self._write(lease, timeout)

    async def _write(self, lease: Mapping[str, Any] | None, limit: float) -> bool:
        now = _micro(datetime.datetime.now(datetime.UTC))
        spec = dict((lease or {}).get("spec") or {})
        mine = spec.get("holderIdentity") == self.me
        if not mine:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        spec.update(holderIdentity=self.me, leaseDurationSeconds=max(1, round(self.duration)),
                    renewTime=now)
        started = self.clock()
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             **({"resourceVersion": lease["metadata"]["resourceVersion"]}
                                if lease else {}),
                             "labels": {"app.kubernetes.io/managed-by": "mission-control"}},
                "spec": spec}
        try:
            if lease is None:
                await self._call(self.api.create_namespaced_lease, self.namespace, body,
                                     _request_timeout=limit)
            else:
                await self._call(self.api.replace_namespaced_lease, self.name,
                                     self.namespace, body, _request_timeout=limit)
        except Conflict:   # someone else wrote it first
            self._renewed = None
            return False
        # Counted from before the write: the others count from when they saw it, later.
        self._renewed = started
        self.holder = self.me
        return True

    async def release(self) -> None:
        """On a clean stop: hand the Lease over at once instead of making the next leader wait
        out its duration."""
        if not self.leading:
            return
        self._renewed = None
        metrics.LEADER.labels(self.me).set(0)
        try:
            lease = await self._read(self.api.read_namespaced_lease, self.name,
                                         self.namespace, _request_timeout=3)
            if (lease.get("spec") or {}).get("holderIdentity") != self.me:
                return
            lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1,
                                 renewTime=_micro(datetime.datetime.now(datetime.UTC)))
            await self._call(self.api.replace_namespaced_lease, self.name, self.namespace,
                                 lease, _request_timeout=3)
            log.info("released lease %s", self.ref)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            log.warning("lease %s: could not release it (%s); it expires in %.0fs", self.ref,
                        exc, self.duration)

    # -- what the daemons ask -------------------------------------------------------------------
    async def wait_leading(self, stopped: Any) -> bool:
        """Until this replica leads (True) or the daemon is stopped (False)."""
        while not stopped:
            if self.leading:
                return True
            await stopped.wait(0.5)
        return False

    def tenure(self, stopped: Any) -> Tenure:
        return Tenure(self, stopped)


class Tenure:
    """A daemon's `stopped` flag that also trips when this replica stops leading, so a loop
    written against kopf's DaemonStopped (`while not stopped`, `await stopped.wait(t)`) ends
    its work at the next check."""

    def __init__(self, leadership: Leadership, stopped: Any) -> None:
        self.leadership, self.stopped = leadership, stopped

    def __bool__(self) -> bool:
        return bool(self.stopped) or not self.leadership.leading

    @property
    def lost(self) -> bool:
        """Ended by the lost lease, not by kopf."""
        return not self.stopped and not self.leadership.leading

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - kopf's API
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self:
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                break
            await self.stopped.wait(left)
        return bool(self)


async def standby(memo: Any, stopped: Any, kind: str, body: Mapping[str, Any], *,
                  missed: Callable[[Any], None] | None = None) -> dict | None:
    """A daemon's first words: wait until this replica leads, then the object as it is now (a
    live read: the last leader's writes may not have reached our watch yet; the watched body if
    the read fails). None when the daemon is stopped meanwhile, or the object is gone."""
    metadata = body["metadata"]
    if not await memo.leadership.wait_leading(stopped):
        return None
    try:
        # Through an outage (a lease lost to one is taken back as the API server returns, when
        # it may still refuse a call or two): wait at the API client's pace, never fail the
        # daemon into kopf's 60 s backoff.
        return await memo.kube.patiently(
            lambda: memo.kube.get(kind, metadata["namespace"], metadata["name"]), missed=missed)
    except ApiException as exc:
        log.warning("%s %s/%s: cannot read it after taking over (API %s): going on from the "
                    "watched copy", kind, metadata["namespace"], metadata["name"], exc.status)
        return {key: dict(body.get(key) or {}) for key in ("metadata", "spec", "status")} | {
            "apiVersion": body.get("apiVersion"), "kind": body.get("kind")}


def _micro(moment: datetime.datetime) -> str:
    """A Lease's MicroTime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
