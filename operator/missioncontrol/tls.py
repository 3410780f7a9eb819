"""TLS material made with `cryptography`: a CA, serving and client certificates, and signing
keys. The operator uses it for its admission webhook; the test harness for the control plane."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)
# Backdated so a peer whose clock runs a little behind accepts a fresh certificate; short
# validities (tests) are backdated by a tenth of it instead, so that two thirds of the window
# still lie ahead.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Validity:
    span: datetime.timedelta = VALIDITY
    issued: datetime.datetime | None = None   # default: now

    def window(self) -> tuple[datetime.datetime, datetime.datetime]:
        now = self.issued or datetime.datetime.now(datetime.UTC)
        return now - min(BACKDATE, self.span / 10), now + self.span


def window(cert_pem: bytes) -> tuple[float, float]:
    """A certificate's validity as epoch seconds: (not before, not after)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def split_bundle(pem: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as its own PEM."""
    return [cert.public_bytes(serialization.Encoding.PEM)
            for cert in x509.load_pem_x509_certificates(pem)] if pem.strip() else []


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    # EC keys: generated in microseconds, accepted by every component here.
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    path.chmod(0o600)


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_ca(directory: Path, name: str = "mission-control-test-ca", *,
            validity: Validity = Validity()) -> KeyPair:
    key = _key()
    start, end = validity.window()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(directory / "ca.crt", directory / "ca.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair


@dataclass(frozen=True)
class Subject:
    """Who a certificate is for: a server (valid for `hosts`) or a client (`client=True`)."""
    common_name: str
    org: str | None = None
    hosts: tuple[str, ...] = ()
    client: bool = False


def issue(ca: KeyPair, directory: Path, stem: str, *, subject: Subject,
          validity: Validity = Validity()) -> KeyPair:
    """Issue a serving certificate (for `subject.hosts`) or a client certificate signed by
    `ca`."""
    common_name, org, hosts, client = (subject.common_name, subject.org, subject.hosts,
                                       subject.client)
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = _key()
    start, end = validity.window()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair


def make_signing_key(directory: Path, stem: str = "sa") -> KeyPair:
    """The service-account token signing key; `cert` holds the public key."""
    key = _key()
    pair = KeyPair(directory / f"{stem}.pub", directory / f"{stem}.key")
    pair.cert.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ))
    _write_key(key, pair.key)
    return pair
