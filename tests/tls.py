"""A throwaway certificate authority and a server certificate it signed."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Extension = tuple[x509.ExtensionType, bool]


@dataclass(frozen=True)
class Certificates:
    """Where `write_certificates` put its files.

    `trust_dir` holds `ca.crt` alone, in the layout of podman's and skopeo's
    `--cert-dir`. The server's key must stay out of it: those clients read
    any `*.key` there as a client key and fail without its `*.cert`.
    """

    trust_dir: Path
    ca: Path
    cert: Path
    key: Path


def write_certificates(directory: Path) -> Certificates:
    """A CA, and a server certificate for 127.0.0.1 and localhost it signed."""
    files = Certificates(
        trust_dir=directory / "trust",
        ca=directory / "trust" / "ca.crt",
        cert=directory / "server.crt",
        key=directory / "server.key",
    )
    files.trust_dir.mkdir(parents=True, exist_ok=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Dockyard test CA")
    ca = _sign(ca_name, ca_key, ca_name, ca_key, _CA_EXTENSIONS)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _sign(_name("localhost"), server_key, ca_name, ca_key, _SERVER_EXTENSIONS)

    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[Extension],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    # Key identifiers too: Python 3.13's strict verification asks for them.
    subject_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    issuer_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(
        issuer_key.public_key()
    )
    for extension, critical in [(subject_id, False), (issuer_id, False), *extensions]:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


_CA_EXTENSIONS: list[Extension] = [
    (x509.BasicConstraints(ca=True, path_length=0), True),
    (_key_usage(signs_certificates=True), True),
]

_SERVER_EXTENSIONS: list[Extension] = [
    (x509.BasicConstraints(ca=False, path_length=None), True),
    (_key_usage(signs_certificates=False), True),
    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    (
        x509.SubjectAlternativeName(
            [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.DNSName("localhost"),
            ]
        ),
        False,
    ),
]
