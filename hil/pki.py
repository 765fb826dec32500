"""A throw-away certificate authority for TLS tests on loopback: CA, server and client certificates.

The server certificate names ``localhost`` and ``127.0.0.1`` so host-name verification passes on
loopback; every file is PEM and world-readable (mosquitto started as root reads them as user
``mosquitto``).  Never use these for anything but tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LoopbackPki", "make_pki"]


@dataclass(frozen=True, slots=True)
class LoopbackPki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                                        "edgegw tests")])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o644)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
    *, ca: bool, usage: list[x509.ObjectIdentifier], sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, name: str = "test") -> LoopbackPki:
    """A CA and one server and one client certificate signed by it, written into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{name} CA")
    ca = _issue(f"{name} CA", ca_key, ca_name, ca_key, ca=True, usage=[], sans=[])
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _issue("localhost", srv_key, ca_name, ca_key, ca=False, usage=[ExtendedKeyUsageOID.SERVER_AUTH],
                 sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _issue(f"{name}-client", cli_key, ca_name, ca_key, ca=False, usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
                 sans=[])
    return LoopbackPki(
        ca=_write(directory / f"{name}-ca.pem", ca.public_bytes(pem)),
        server_cert=_write(directory / f"{name}-server.pem", srv.public_bytes(pem)),
        server_key=_write(directory / f"{name}-server.key", _key_pem(srv_key)),
        client_cert=_write(directory / f"{name}-client.pem", cli.public_bytes(pem)),
        client_key=_write(directory / f"{name}-client.key", _key_pem(cli_key)),
    )
