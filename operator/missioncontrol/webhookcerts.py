"""The freeze webhook's certificate: made, shared by every replica through a Secret
(--webhook-secret), and renewed before it expires with no moment in which the API server
refuses to call the webhook.

Renewal takes two steps, because the API server and the replicas learn of it at different
times:
1. stage (at two thirds of the serving certificate's validity): a new CA and serving
   certificate are made; the new CA joins the trusted bundle (the Secret's `ca.crt`, then the
   webhook configuration's caBundle) while every replica still serves the old certificate;
2. promote (once the configuration has held that bundle for `settle` seconds): the new
   certificate becomes `tls.crt`, and each replica serves it from its next read of the Secret.
The old CA stays in the bundle until it expires, so a replica that has not re-read the Secret
yet is still trusted. A certificate found too close to its end for the two steps is replaced at
once; one found past its renewal point (a replica starting after a long outage) is staged.

`step` and `apply` are the pure decisions; `Keeper` does the I/O, one round every `reread`."""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import shutil
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from . import labels, metrics, tls
from .kube import ApiException, Conflict, Kube, NotFound

log = logging.getLogger("missioncontrol.webhook")

STAGED_AT = labels.CERTIFICATE_STAGED_AT
Fresh = tuple[bytes, bytes, bytes]   # a new CA, a serving certificate it signed, and its key


@dataclass(frozen=True)
class Timing:
    validity: float   # seconds a new certificate is valid

    @property
    def reread(self) -> float:
        """How often each replica reads the Secret (and reloads a changed certificate)."""
        return min(60.0, max(1.0, self.validity / 30))

    @property
    def settle(self) -> float:
        """How long the webhook configuration holds a new CA before certificates it signed are
        served: the API server picks up a changed configuration within about a second."""
        return max(2.0, 2 * self.reread)


@dataclass(frozen=True)
class Material:
    bundle: bytes                 # every CA the API server should trust (PEM, concatenated)
    cert: bytes                   # the serving certificate
    key: bytes
    next_cert: bytes | None = None   # staged: its CA is in the bundle, not served yet
    next_key: bytes | None = None
    staged_at: float | None = None


def renew_at(cert: bytes) -> float:
    start, end = tls.window(cert)
    return start + (end - start) * 2 / 3


def expires(cert: bytes | None) -> float:
    """Epoch seconds; 0 for a certificate that cannot be read (treated as expired)."""
    if not cert:
        return 0.0
    try:
        return tls.window(cert)[1]
    except ValueError:
        return 0.0


def step(material: Material | None, *, now: float, timing: Timing) -> str:
    """What the shared certificate needs now: create, replace, stage, promote, prune, keep."""
    if material is None:
        return "create"
    staged = material.next_cert is not None and expires(material.next_cert) > now + timing.settle
    if expires(material.cert) <= now + timing.settle:
        # Too late for two steps. A staged certificate is trusted already: serve it.
        return "promote" if staged else "replace"
    if staged:
        return "promote" if now >= (material.staged_at or 0) + timing.settle else "keep"
    if now >= renew_at(material.cert):
        return "stage"
    if live_cas(material.bundle, now) != tls.split_bundle(material.bundle):
        return "prune"
    return "keep"


def apply(action: str, material: Material | None, fresh: Fresh | None, *,
          now: float) -> Material:
    """The Secret's next content after `action` (`fresh` for create, replace and stage)."""
    kept = live_cas(material.bundle, now) if material else []
    if action in ("create", "replace", "stage"):
        if fresh is None:
            raise ValueError(f"{action} needs a fresh certificate")
        ca, cert, key = fresh
        bundle = b"".join(dict.fromkeys([*kept, ca]))
        if action == "stage" and material is not None:
            return Material(bundle, material.cert, material.key, cert, key, now)
        return Material(bundle, cert, key)
    if material is None:
        raise ValueError(f"nothing to {action}")
    if action == "promote":
        return Material(b"".join(kept), material.next_cert, material.next_key)
    if action == "prune":
        return replace(material, bundle=b"".join(kept))
    return material


def live_cas(bundle: bytes, now: float) -> list[bytes]:
    try:
        cas = tls.split_bundle(bundle)
    except ValueError:
        return []
    return [ca for ca in dict.fromkeys(cas) if tls.window(ca)[1] > now]


def make(hosts: tuple[str, ...], validity: float, *, now: float | None = None) -> Fresh:
    directory = Path(tempfile.mkdtemp(prefix="missioncontrol-ca-"))
    span = tls.Validity(datetime.timedelta(seconds=validity),
                        None if now is None else datetime.datetime.fromtimestamp(now, datetime.UTC))
    try:
        ca = tls.make_ca(directory, "mission-control-webhook-ca", validity=span)
        serving = tls.issue(ca, directory, "webhook",
                            subject=tls.Subject(hosts[-1], hosts=hosts), validity=span)
        return ca.cert.read_bytes(), serving.cert.read_bytes(), serving.key.read_bytes()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- where the material lives ------------------------------------------------------------------
class Store(Protocol):
    shared: bool

    async def read(self) -> tuple[Material | None, str | None]: ...

    async def write(self, material: Material, version: str | None) -> bool: ...


class MemoryStore:
    """One replica without --webhook-secret: the certificate lives in this process only."""

    shared = False

    def __init__(self) -> None:
        self.material: Material | None = None

    async def read(self) -> tuple[Material | None, str | None]:
        return self.material, None

    async def write(self, material: Material, version: str | None) -> bool:
        self.material = material
        return True


class SecretStore:
    """The Secret every replica reads; writes carry its resourceVersion, so of two replicas
    renewing at once one wins and the other reads what it wrote."""

    shared = True

    def __init__(self, kube: Kube, ref: str) -> None:
        self.kube = kube
        self.namespace, self.name = ref.split("/", 1)

    async def read(self) -> tuple[Material | None, str | None]:
        try:
            secret = await self.kube.json(self.kube.core.read_namespaced_secret, self.name,
                                          self.namespace, _request_timeout=10)
        except NotFound:
            return None, None
        return from_secret(secret), secret["metadata"]["resourceVersion"]

    async def write(self, material: Material, version: str | None) -> bool:
        body = to_secret(material, namespace=self.namespace, name=self.name, version=version)
        core = self.kube.core
        try:
            if version is None:
                await self.kube.call(core.create_namespaced_secret, self.namespace, body,
                                     _request_timeout=10)
            else:
                await self.kube.call(core.replace_namespaced_secret, self.name,
                                     self.namespace, body, _request_timeout=10)
        except Conflict:   # another replica wrote first: read theirs
            return False
        return True


_KEYS = {"ca.crt": "bundle", "tls.crt": "cert", "tls.key": "key", "next.crt": "next_cert",
         "next.key": "next_key"}


def to_secret(material: Material, *, namespace: str, name: str, version: str | None) -> dict:
    data = {key: base64.b64encode(getattr(material, field)).decode()
            for key, field in _KEYS.items() if getattr(material, field) is not None}
    metadata = {"name": name, "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "mission-control"}}
    if material.staged_at is not None:
        metadata["annotations"] = {STAGED_AT: f"{material.staged_at:.3f}"}
    if version is not None:
        metadata["resourceVersion"] = version
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": metadata, "data": data}


def from_secret(secret: dict) -> Material:
    """A Secret with missing or unreadable parts yields material that `step` replaces."""
    data = secret.get("data") or {}
    fields = {}
    for key, field in _KEYS.items():
        try:
            fields[field] = base64.b64decode(data[key]) if data.get(key) else None
        except ValueError:
            fields[field] = None
    staged = ((secret.get("metadata") or {}).get("annotations") or {}).get(STAGED_AT)
    try:
        staged_at = float(staged) if staged else None
    except ValueError:
        staged_at = None
    return Material(fields["bundle"] or b"", fields["cert"] or b"", fields["key"] or b"",
                    fields["next_cert"], fields["next_key"], staged_at)


# -- serving -----------------------------------------------------------------------------------
class Serving:
    """The TLS context the webhook server answers with. Loading a new certificate into the
    same context takes effect from the next handshake, without restarting the server."""

    def __init__(self) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.directory = Path(tempfile.mkdtemp(prefix="missioncontrol-webhook-"))
        self.cert: bytes | None = None

    def load(self, material: Material) -> None:
        certfile, keyfile = self.directory / "tls.crt", self.directory / "tls.key"
        keyfile.touch(mode=0o600)
        certfile.write_bytes(material.cert)
        keyfile.write_bytes(material.key)
        self.context.load_cert_chain(str(certfile), str(keyfile))
        self.cert = material.cert
        metrics.WEBHOOK_CERT_EXPIRY.set(expires(material.cert))

    def close(self) -> None:
        """The key was only for this process: leave nothing behind."""
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Keeper:
    """One replica's part in keeping the shared certificate: each round reads the store, makes
    sure the webhook configuration trusts its bundle, takes the step `step` asks for (any
    replica may; the store settles races), and serves what the store holds."""
    store: Store
    serving: Serving
    trust: Callable[[bytes], Awaitable[None]]   # make the webhook configuration trust a bundle
    hosts: tuple[str, ...]
    timing: Timing
    clock: Callable[[], float] = time.time

    async def round(self) -> Material:
        material, version = await self.store.read()
        if material is not None:
            await self.trust(material.bundle)
        action = step(material, now=self.clock(), timing=self.timing)
        if action != "keep":
            fresh = (await asyncio.to_thread(make, self.hosts, self.timing.validity,
                                             now=self.clock())
                     if action in ("create", "replace", "stage") else None)
            new = apply(action, material, fresh, now=self.clock())
            if await self.store.write(new, version):
                metrics.WEBHOOK_CERT_RENEWALS.labels(action).inc()
                log.info("webhook certificate: %s (serving certificate valid until %s)",
                         _DONE[action], _iso(expires(new.cert)))
                material = new
            else:
                material, _ = await self.store.read()
            if material is None:
                raise RuntimeError("the webhook certificate Secret vanished while renewing it")
            await self.trust(material.bundle)
        if material.cert != self.serving.cert:
            if self.serving.cert is not None:
                log.info("webhook certificate: serving the renewed certificate (valid until "
                         "%s)", _iso(expires(material.cert)))
            self.serving.load(material)
        return material

    async def keep(self) -> None:
        """Rounds until cancelled; a failed round is retried at the next one (the certificate
        served meanwhile is the last good one)."""
        while True:
            await asyncio.sleep(self.timing.reread)
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                log.warning("webhook certificate: round failed: API %s %s", exc.status,
                            exc.reason)
            except Exception:  # noqa: BLE001 - keep serving; try again next round
                log.exception("webhook certificate: round failed")


_DONE = {"create": "created", "replace": "replaced (the old one was expired or about to be)",
         "stage": "renewal staged: the new CA is trusted, the old certificate still served",
         "promote": "renewed certificate promoted", "prune": "expired CAs dropped from the bundle"}


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")
