"""Application certificates and the server trust list (the PKI directory of an OPC UA client).

Layout of ``pki_dir`` (the same idea as the OPC Foundation stacks, so operators recognise it)::

    own/cert.der            the gateway's application instance certificate
    own/private/key.pem     its private key (0600)
    trusted/*.der           server certificates the operator accepted
    rejected/*.der          server certificates that were refused, for the operator to inspect and move

The ApplicationUri the gateway presents is read from the certificate's URI SAN, so the two can never
disagree (a mismatch is a classic cause of BadCertificateUriInvalid).  Built on ``cryptography``
directly rather than asyncua's generator, which maps subject names through a private table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "AppCertificate",
    "Pki",
    "application_uri_of",
    "create_certificate",
    "thumbprint",
    "validity_problem",
]


@dataclass(frozen=True, slots=True)
class AppCertificate:
    cert_path: Path
    key_path: Path
    application_uri: str


def thumbprint(der: bytes) -> str:
    """SHA-1 thumbprint, as OPC UA tools display it (identification only, not security)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def application_uri_of(der: bytes) -> str | None:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def validity_problem(der: bytes, now: dt.datetime | None = None) -> str | None:
    """Why a certificate must not be used now (expired / not yet valid), or None.

    An expired server certificate is an operator alarm with a clear message, not a retry storm.
    """
    cert = x509.load_der_x509_certificate(der)
    now = now or dt.datetime.now(dt.UTC)
    if now > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None


def create_certificate(
    cert_path: Path,
    key_path: Path,
    *,
    application_uri: str,
    common_name: str = "edgegw",
    organization: str = "edgegw",
    hostnames: tuple[str, ...] = (),
    days: int = 3650,
    server: bool = False,
    key_size: int = 2048,
) -> AppCertificate:
    """A self-signed application instance certificate (Part 6 §6.2.2) with the right URI SAN."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    sans += [x509.DNSName(h) for h in (hostnames or (socket.gethostname(), "localhost"))]
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    not_before = min(now - dt.timedelta(minutes=5), not_after - dt.timedelta(days=1))
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
    return AppCertificate(cert_path, key_path, application_uri)


class Pki:
    """The gateway's own certificate and the list of trusted server certificates."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.own_cert = self.root / "own" / "cert.der"
        self.own_key = self.root / "own" / "private" / "key.pem"
        self.trusted = self.root / "trusted"
        self.rejected = self.root / "rejected"

    def create_own(self, application_uri: str, **kw: object) -> AppCertificate:
        return create_certificate(self.own_cert, self.own_key, application_uri=application_uri, **kw)  # type: ignore[arg-type]

    def own(self) -> AppCertificate | None:
        if not (self.own_cert.is_file() and self.own_key.is_file()):
            return None
        uri = application_uri_of(self.own_cert.read_bytes())
        return AppCertificate(self.own_cert, self.own_key, uri or "urn:edgegw:client")

    def trusted_certificates(self) -> list[bytes]:
        if not self.trusted.is_dir():
            return []
        out = []
        for p in sorted(self.trusted.iterdir()):
            if p.suffix.lower() in (".der", ".crt", ".cer", ".pem") and p.is_file():
                data = p.read_bytes()
                if data.startswith(b"-----BEGIN"):
                    data = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
                out.append(data)
        return out

    def is_trusted(self, der: bytes) -> bool:
        return der in self.trusted_certificates()

    def known_for_uri(self, application_uri: str | None) -> bool:
        """Whether some trusted certificate already speaks for this ApplicationUri (TOFU pinning)."""
        if application_uri is None:
            return False
        return any(application_uri_of(c) == application_uri for c in self.trusted_certificates())

    def trust(self, der: bytes) -> Path:
        self.trusted.mkdir(parents=True, exist_ok=True)
        path = self.trusted / f"{thumbprint(der)}.der"
        path.write_bytes(der)
        return path

    def reject(self, der: bytes) -> Path:
        self.rejected.mkdir(parents=True, exist_ok=True)
        path = self.rejected / f"{thumbprint(der)}.der"
        path.write_bytes(der)
        return path
