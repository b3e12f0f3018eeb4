"""A development set of the deployment's secrets: ``flights-app dev-secrets`` (``make secrets``).

    secrets/web-token                 the worker web server's bearer token (FLIGHTS_WEB_TOKEN_FILE)
    secrets/dashboard-users.json      the dashboard's login, {"ops": "<password>"} (FLIGHTS_DASHBOARD_AUTH_FILE)
    secrets/kafka-<user>-password     the SCRAM password of each Kafka principal (admin, worker, dashboard)
    secrets/kafka-ca.pem              the certificate authority the brokers and the clients trust (public)
    secrets/kafka-broker.pem          the brokers' private key and certificate, signed by that authority,
                                      for the names kafka, kafka-1..3, localhost and 127.0.0.1

Each secret is random, readable by its owner only, and never printed. An existing file is kept (a
rotation removes it first, see docs/deploy.md), so running it again changes nothing; the authority and
the brokers' certificate are made and kept as a pair. None is committed: the directory is in
.gitignore, and docker-compose.yml mounts the files as compose secrets.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from flights_app.embedded.broker import PRINCIPALS  # the Kafka principals: admin, worker, dashboard

#: The dashboard's user in the development set.
DASHBOARD_USER = "ops"
#: The brokers' certificate: its subject (the principal of the brokers' own TLS connections, a super
#: user) and the names it is valid for (the compose services, and loopback for a broker run here).
BROKER_SUBJECT = "kafka-broker"
BROKER_NAMES = ("kafka", "kafka-1", "kafka-2", "kafka-3", "localhost")
CERT_DAYS = 365

FILES: dict[str, Callable[[], str]] = {
    "web-token": lambda: secrets.token_urlsafe(32) + "\n",
    "dashboard-users.json": lambda: json.dumps({DASHBOARD_USER: secrets.token_urlsafe(18)}) + "\n",
    **{f"kafka-{user}-password": (lambda: secrets.token_urlsafe(24) + "\n") for user in PRINCIPALS},
}
CA_FILE, BROKER_FILE = "kafka-ca.pem", "kafka-broker.pem"


class SecretsError(RuntimeError):
    """The directory holds half of a pair; the message says what to remove."""


def _create(path: Path, text: str, mode: int = 0o600) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def tls_pair(names: tuple[str, ...] = BROKER_NAMES, days: int = CERT_DAYS) -> tuple[str, str]:
    """A new certificate authority (its certificate, PEM) and a broker's private key followed by its
    certificate chain (PEM, the form of Kafka's ``ssl.keystore.type=PEM``), valid for ``names`` and
    127.0.0.1, for TLS servers and clients (the brokers reach each other with it). The authority's
    private key is not kept: a new certificate means a new pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = name("flights-app development CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(name(BROKER_SUBJECT)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    ca_pem = ca.public_bytes(pem).decode()
    return ca_pem, key_pem + cert.public_bytes(pem).decode() + ca_pem


def write(directory: Path) -> list[tuple[Path, bool]]:
    """Write every missing file of the set into ``directory``; (path, written now) for each."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, make in FILES.items():
        path = directory / name
        if path.exists():
            out.append((path, False))
            continue
        _create(path, make())
        out.append((path, True))
    ca, broker = directory / CA_FILE, directory / BROKER_FILE
    if ca.exists() != broker.exists():
        there, missing = (ca, broker) if ca.exists() else (broker, ca)
        raise SecretsError(f"{there} is there but {missing} is not: they are made as a pair; "
                           f"remove {there.name} too to make a new pair")
    if ca.exists():
        return out + [(ca, False), (broker, False)]
    ca_pem, broker_pem = tls_pair()
    _create(broker, broker_pem)
    _create(ca, ca_pem, 0o644)  # a certificate: public
    return out + [(ca, True), (broker, True)]
