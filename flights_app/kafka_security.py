"""How the app's Kafka clients log in: one description, handed to Faust and to aiokafka alike.

    PLAINTEXT        no TLS, no login (the embedded broker's default, on loopback)
    SASL_PLAINTEXT   a SCRAM (or PLAIN) login without TLS (the embedded broker with FLIGHTS_EMBEDDED_BROKER_SASL=1)
    SASL_SSL         a login over TLS, the server checked against FLIGHTS_KAFKA_CA_FILE (else the system's CAs)
    SSL              TLS without a login

The password is read from a file and kept as a ``Secret``: it never shows in a repr, a log line or
an error. A refused login is told apart from a broker that cannot be reached (``refusal``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's clients (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.user,
                           sasl_plain_password=self.password)
        return options

    def faust_credentials(self):
        """``broker_credentials`` of the Faust app (None: plaintext)."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(username=self.user, password=self.password, mechanism=self.mechanism,
                                         ssl_context=self.ssl_context())
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def describe(self) -> str:
        """What a log line may say about the login (never the password)."""
        if self.sasl:
            return f"{self.protocol}, {self.mechanism} as {self.user!r}"
        return self.protocol


def refusal(error: BaseException, security: KafkaSecurity, bootstrap: str) -> str | None:
    """One line saying the broker refused this client's login or its TLS, or None for any other error."""
    from aiokafka.errors import (
        KafkaConnectionError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    if isinstance(error, SaslAuthenticationFailed):
        return (f"Kafka at {bootstrap} refused the login of {security.user!r} ({security.mechanism}): wrong user "
                "or password (FLIGHTS_KAFKA_USER, FLIGHTS_KAFKA_PASSWORD_FILE)")
    if isinstance(error, KafkaConnectionError) and not security.sasl:
        return (f"Kafka at {bootstrap} closed the connection before answering: it may require a login or TLS "
                "(FLIGHTS_KAFKA_SECURITY_PROTOCOL, FLIGHTS_KAFKA_USER, FLIGHTS_KAFKA_PASSWORD_FILE)")
    if isinstance(error, UnsupportedSaslMechanismError):
        return (f"Kafka at {bootstrap} does not accept {security.mechanism} logins "
                "(FLIGHTS_KAFKA_SASL_MECHANISM)")
    if isinstance(error, ssl.SSLError):
        return f"TLS with Kafka at {bootstrap} failed ({error.reason or error}): check FLIGHTS_KAFKA_CA_FILE"
    return None


async def login_problem(bootstrap: str, security: KafkaSecurity, timeout_s: float = 15.0) -> str | None:
    """Connect to the first server of ``bootstrap`` (``host:port,...``) as ``security`` says: one line if
    it refuses this client (its login, its TLS, or a plaintext client at a secured listener); None if
    it lets the client in, or cannot be reached (the caller waits for it)."""
    import asyncio

    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    options = security.client_options()
    try:
        conn = await asyncio.wait_for(create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000),
                                                  **options), timeout_s)
    except (OSError, TimeoutError):
        return None
    except Exception as error:  # noqa: BLE001 - aiokafka's errors: a refusal, or nothing to say
        return refusal(error, security, bootstrap)
    try:
        await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)  # a plaintext client at a SASL listener
        return None
    except (OSError, TimeoutError):
        return None
    except Exception as error:  # noqa: BLE001
        return refusal(error, security, bootstrap)
    finally:
        conn.close()
