"""All of the app's settings, read once from the environment.

Every setting is an environment variable with a documented default
(``SETTINGS_DOC``; a test keeps the table of docs/settings.md in step). A wrong value
raises ``SettingsError`` with a message naming the variable and what it
accepts; the CLI and the app module turn that into one line, never a
traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from flights_app.kafka_security import MECHANISMS, PROTOCOLS, KafkaSecurity

#: OpenSky's public API, the default source.
OPENSKY_API_URL = "https://opensky-network.org/api"
#: OpenSky's OAuth2 token endpoint (client credentials grant).
OPENSKY_TOKEN_PATH = "/auth/realms/opensky-network/protocol/openid-connect/token"
OPENSKY_TOKEN_URL = "https://auth.opensky-network.org" + OPENSKY_TOKEN_PATH

#: Credits a day OpenSky grants (2026): anonymous (per IP) and a standard account.
ANONYMOUS_DAILY_CREDITS = 400
AUTHENTICATED_DAILY_CREDITS = 4000
#: OpenSky's time resolution: polling faster only returns the same snapshot again.
ANONYMOUS_RESOLUTION_S = 10.0
AUTHENTICATED_RESOLUTION_S = 5.0
SECONDS_PER_DAY = 86400

EMBEDDED_BROKER_PORT = 9092
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value the app cannot use; the message says which and why."""


class Secret(str):
    """A string that never shows itself in a repr, a log line or a traceback."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True)
class BoundingBox:
    """A latitude/longitude box in degrees, as OpenSky's lamin/lomin/lamax/lomax."""

    lamin: float
    lomin: float
    lamax: float
    lomax: float

    @property
    def square_degrees(self) -> float:
        return (self.lamax - self.lamin) * (self.lomax - self.lomin)

    def as_query(self) -> dict[str, str]:
        return {k: repr(getattr(self, k)) for k in ("lamin", "lomin", "lamax", "lomax")}

    def contains(self, latitude: float, longitude: float) -> bool:
        return self.lamin <= latitude <= self.lamax and self.lomin <= longitude <= self.lomax


def credit_cost(bbox: BoundingBox | None) -> int:
    """Credits one ``/states/all`` call costs (OpenSky's table: by box area)."""
    if bbox is None:
        return 4
    area = bbox.square_degrees
    if area <= 25:
        return 1
    if area <= 100:
        return 2
    if area <= 400:
        return 3
    return 4


@dataclass(frozen=True)
class PollPlan:
    """How often the source polls, and why."""

    interval_s: float
    derived: bool
    #: Seconds until the daily credits run out at this interval, None if they last the day.
    credits_exhausted_after_s: float | None


def plan_polling(
    explicit_interval_s: float | None,
    authenticated: bool,
    bbox: BoundingBox | None,
    daily_credits: int,
) -> PollPlan:
    """Choose the poll interval so the daily credits last the day.

    The derived interval is never below OpenSky's time resolution (faster polls
    return the same snapshot). An explicit interval is kept as given; when it
    spends the credits before the day ends, the plan says after how long.
    ``daily_credits`` 0 means unlimited (a fake server, a private mirror).
    """
    resolution = AUTHENTICATED_RESOLUTION_S if authenticated else ANONYMOUS_RESOLUTION_S
    cost = credit_cost(bbox)
    if explicit_interval_s is None:
        if daily_credits <= 0:
            return PollPlan(resolution, True, None)
        interval = max(resolution, SECONDS_PER_DAY * cost / daily_credits)
        return PollPlan(interval, True, None)
    exhausted = None
    if daily_credits > 0:
        polls_per_day = SECONDS_PER_DAY / explicit_interval_s
        if polls_per_day * cost > daily_credits:
            exhausted = daily_credits / cost * explicit_interval_s
    return PollPlan(explicit_interval_s, False, exhausted)


@dataclass(frozen=True)
class Settings:
    """The app's configuration. Build it with ``load_settings()``."""

    app_id: str
    broker: str | None
    embedded_broker_port: int
    store: str
    datadir: Path
    web_bind: str
    web_host: str
    web_port: int
    dashboard_port: int
    dashboard_origins: tuple[str, ...]
    worker_url: str
    map_tiles: str
    map_outline: Path
    topic_partitions: int
    topic_replication: int
    topic_prefix: str
    standby_replicas: int
    retention_hours: float
    session_timeout_s: float
    opensky_url: str
    opensky_token_url: str
    opensky_client_id: str | None
    opensky_client_secret: Secret | None = field(repr=False)
    opensky_timeout_s: float
    poll: PollPlan
    daily_credits: int
    bbox: BoundingBox | None
    backoff_max_s: float
    kafka_lib: Path
    kafka_heap_mb: int
    log_level: str
    kafka_compression: str
    kafka_linger_ms: int
    model_path: Path
    score_batch_max: int
    score_batch_within_s: float
    alert_score: float
    model_watch_s: float
    model_reload_endpoint: bool
    faust_untested: bool
    alert_webhook: str | None
    window_s: int
    window_grace_s: float
    window_expiry_s: int
    watermark_idle_s: float
    aggregate_flush_s: float
    web_token: Secret | None = field(default=None, repr=False)
    dashboard_auth_file: Path | None = None
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    embedded_broker_sasl: bool = False

    @property
    def authenticated(self) -> bool:
        return bool(self.opensky_client_id and self.opensky_client_secret)

    @property
    def broker_url(self) -> str:
        """The broker the app talks to: the configured one, or the embedded default."""
        return self.broker or f"kafka://127.0.0.1:{self.embedded_broker_port}"

    @property
    def bootstrap_servers(self) -> str:
        """The broker as Kafka clients take it: ``host:port,host:port``."""
        return self.broker_url.removeprefix("kafka://").replace(";", ",")

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker is None

    def dashboard_problem(self) -> str | None:
        """Why the dashboard must not start (None: it may): bound beyond loopback without a login."""
        if self.dashboard_auth_file is None and not is_loopback(self.web_bind):
            return (f"FLIGHTS_WEB_BIND={self.web_bind} is beyond loopback: set FLIGHTS_DASHBOARD_AUTH_FILE (a JSON "
                    "file of users and passwords) so the dashboard asks for a login")
        return None

    def topic_name(self, base: str) -> str:
        return f"{self.topic_prefix}{base}"


#: name -> (default shown to users, what it means). The README's table comes from here.
SETTINGS_DOC: dict[str, tuple[str, str]] = {
    "FLIGHTS_APP_ID": ("flights-app", "Faust application id (consumer group, changelog topic prefix)"),
    "FLIGHTS_BROKER": ("unset", "Kafka bootstrap servers, `kafka://host:port[;host:port]`; unset starts the embedded "
                                "broker"),
    "FLIGHTS_EMBEDDED_BROKER_PORT": ("9092", "port of the embedded broker (its controller uses the next port)"),
    "FLIGHTS_STORE": ("rocksdb://", "Faust table store (`rocksdb://` with the rocksdict driver, or `memory://`)"),
    "FLIGHTS_DATADIR": ("./var", "where tables, the embedded broker's logs and data live"),
    "FLIGHTS_WEB_BIND": ("127.0.0.1", "address the Faust web server and the dashboard bind to"),
    "FLIGHTS_WEB_HOST": ("the bind address", "host name other workers use to reach this worker's web server (its "
                         "container's host name when bound to 0.0.0.0)"),
    "FLIGHTS_WEB_PORT": ("6066", "Faust web server port (table inspection, stats)"),
    "FLIGHTS_WEB_TOKEN_FILE": ("unset", "file holding the bearer token of the worker's web server (16+ characters): "
                               "required when it binds beyond loopback (then every path but `/health` and "
                               "`/metrics` needs it) and for `POST /model/reload`"),
    "FLIGHTS_DASHBOARD_AUTH_FILE": ("unset", "JSON file `{\"user\": \"password\", ...}`: the dashboard asks for a "
                                             "login "
                                    "(Panel's basic authentication); required when it binds beyond loopback"),
    "FLIGHTS_DASHBOARD_PORT": ("5006", "Panel dashboard port"),
    "FLIGHTS_DASHBOARD_ORIGINS": ("unset", "more `host[:port]` (comma-separated) a browser may open the dashboard as, "
                                  "e.g. behind a proxy"),
    "FLIGHTS_WORKER_URL": ("this machine's worker", "the worker web server the dashboard asks for health and window "
                           "stats (any worker answers for all)"),
    "FLIGHTS_MAP_TILES": ("", "map tile URL template ({z}/{x}/{y}), used when it answers; empty: the offline land "
                              "outline"),
    "FLIGHTS_MAP_OUTLINE": ("./.maps/land-110m.json", "the offline land outline (`make install` fetches it)"),
    "FLIGHTS_TOPIC_PARTITIONS": ("4 / 8", "partitions of the app's topics (embedded broker / a cluster); "
                                 "bounds the number of useful workers"),
    "FLIGHTS_TOPIC_REPLICATION": ("1", "replication factor of the app's topics"),
    "FLIGHTS_TOPIC_PREFIX": ("empty", "prefix for every topic name (isolates test runs)"),
    "FLIGHTS_RETENTION_HOURS": ("168", "how long the app's topics keep records (changelogs are compacted instead)"),
    "FLIGHTS_STANDBY_REPLICAS": ("1", "standby copies of each table partition kept by other workers (fast failover)"),
    "FLIGHTS_SESSION_TIMEOUT": ("60", "seconds without a heartbeat before a worker's partitions go to the others "
                                "(how long a crashed worker's partitions wait)"),
    "OPENSKY_URL": (OPENSKY_API_URL, "OpenSky REST API base URL"),
    "OPENSKY_TOKEN_URL": ("OpenSky's auth server", "OAuth2 token endpoint (client credentials)"),
    "OPENSKY_CLIENT_ID": ("unset", "OAuth2 client id; anonymous without it"),
    "OPENSKY_CLIENT_SECRET": ("unset", "OAuth2 client secret (never logged)"),
    "OPENSKY_TIMEOUT": ("20", "seconds one OpenSky request may take"),
    "FLIGHTS_POLL_INTERVAL": ("derived", "seconds between polls; derived so the daily credits last the day"),
    "FLIGHTS_DAILY_CREDITS": ("400 / 4000", "credits a day (anonymous / authenticated); 0 = unlimited"),
    "FLIGHTS_BBOX": ("unset (global)", "`lamin,lomin,lamax,lomax` in degrees"),
    "FLIGHTS_BACKOFF_MAX": ("300", "longest wait in seconds between failed polls"),
    "FLIGHTS_KAFKA_LIB": ("./.kafka/lib", "where `make install` puts the embedded Kafka's jars"),
    "FLIGHTS_KAFKA_HEAP_MB": ("512", "embedded broker's JVM heap"),
    "FLIGHTS_KAFKA_COMPRESSION": ("zstd", "compression of what the worker produces: none, gzip, lz4 or zstd"),
    "FLIGHTS_KAFKA_LINGER_MS": ("5", "how long the worker's producer gathers records into a batch, ms"),
    "FLIGHTS_KAFKA_SECURITY_PROTOCOL": ("PLAINTEXT", "how the worker and the dashboard reach Kafka: PLAINTEXT, "
                                        "SASL_PLAINTEXT, SASL_SSL or SSL"),
    "FLIGHTS_KAFKA_SASL_MECHANISM": ("SCRAM-SHA-512", "the SASL login: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"),
    "FLIGHTS_KAFKA_USER": ("unset", "the SASL user (principal) of this service; required with SASL_*"),
    "FLIGHTS_KAFKA_PASSWORD_FILE": ("unset", "file holding that user's password (never logged); required with SASL_*"),
    "FLIGHTS_KAFKA_CA_FILE": ("the system's CAs",
                              "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL)"),
    "FLIGHTS_EMBEDDED_BROKER_SASL": ("0", "1: the embedded broker requires SCRAM-SHA-512 logins with ACLs; `up` logs "
                                     "the worker and the dashboard in as their own principals"),
    "FLIGHTS_LOG_LEVEL": ("info", "log level of the worker"),
    "FLIGHTS_FAUST_UNTESTED": ("0", "1 runs the worker on a faust-streaming version it was not tested with"),
    "FLIGHTS_MODEL": ("ml/models/default.joblib", "anomaly model (its arrays `.npz` and manifest `.json` beside it)"),
    "FLIGHTS_SCORE_BATCH": ("1000", "most states the scorer takes at once"),
    "FLIGHTS_SCORE_WITHIN": ("0.05", "longest a message waits for its batch to fill, seconds"),
    "FLIGHTS_ALERT_SCORE": ("0", "model anomalies go to flight-alerts from the model's alert_threshold "
                            "(in its manifest) or from this score, whichever is higher; data faults never do"),
    "FLIGHTS_MODEL_WATCH": ("5", "seconds between checks of the model file for a new version; 0 = never"),
    "FLIGHTS_MODEL_RELOAD_ENDPOINT": ("0", "1 enables `POST /model/reload` on the Faust web server"),
    "FLIGHTS_WINDOW": ("600", "tumbling window size, seconds of event time"),
    "FLIGHTS_WINDOW_GRACE": ("60", "how late (event time) a state may arrive and still count in its window"),
    "FLIGHTS_WINDOW_EXPIRY": ("3600", "how long windows are kept after they close, seconds"),
    "FLIGHTS_WATERMARK_IDLE": ("10", "a partition that sent nothing for this long (wall clock, s) stops holding "
                               "the event-time watermark back"),
    "FLIGHTS_AGGREGATE_FLUSH": ("5", "at most one flight-aggregated-data record per key per this many seconds"),
    "FLIGHTS_ALERT_WEBHOOK": ("unset", "URL that gets each alert as a JSON POST (retried, at most one per aircraft a "
                                       "minute)"),
}

_APP_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_HOSTPORT_RE = re.compile(r"^[A-Za-z0-9.\-_]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]{1,253}$|^\[?[0-9a-fA-F:]+\]?$")
_ORIGIN_RE = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_COMPRESSIONS = ("none", "gzip", "lz4", "zstd")


class _Reader:
    """Reads one variable at a time, turning bad values into SettingsError."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r} is not a whole number") from None
        if not lo <= number <= hi:
            raise SettingsError(f"{name}={number} is out of range: expected {lo}..{hi}")
        return number

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, 1, 65535)

    def _measure(self, name: str, default: float | None, lo: float, hi: float, unit: str) -> float | None:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r} is not a number of {unit}") from None
        if not math.isfinite(number) or not lo <= number <= hi:
            raise SettingsError(f"{name}={value} is out of range: expected {lo:g}..{hi:g} {unit}")
        return number

    def seconds(self, name: str, default: float | None, lo: float, hi: float) -> float | None:
        return self._measure(name, default, lo, hi, "seconds")

    def hours(self, name: str, default: float, lo: float, hi: float) -> float:
        return self._measure(name, default, lo, hi, "hours")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of ``choices``, matched without regard to case (they are all lower or all upper case)."""
        value = self.raw(name) or default
        value = value.upper() if choices[0].isupper() else value.lower()
        if value not in choices:
            raise SettingsError(f"{name}={value!r}: expected one of {', '.join(choices)}")
        return value

    def flag(self, name: str) -> bool:
        value = (self.raw(name) or "0").lower()
        if value not in ("0", "1", "true", "false", "yes", "no"):
            raise SettingsError(f"{name}={value!r}: expected 1 or 0")
        return value in ("1", "true", "yes")


    def fraction(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r} is not a number") from None
        if not 0 <= number <= 1:
            raise SettingsError(f"{name}={value} is out of range: expected 0..1")
        return number

    def url(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SettingsError(f"{name}={value!r} is not an http(s) URL")
        return value.rstrip("/")


def parse_broker(value: str) -> str:
    """Normalise ``kafka://h:p;h:p`` (or a bare ``h:p,h:p``) and check every server."""
    body = value[len("kafka://"):] if value.startswith("kafka://") else value
    if "://" in body:
        raise SettingsError(f"FLIGHTS_BROKER={value!r}: only the kafka:// scheme is supported")
    servers = [s.strip() for s in re.split(r"[;,]", body) if s.strip()]
    if not servers:
        raise SettingsError(f"FLIGHTS_BROKER={value!r} names no server")
    for server in servers:
        if not _HOSTPORT_RE.match(server) or not 0 < int(server.rsplit(":", 1)[1]) < 65536:
            raise SettingsError(
                f"FLIGHTS_BROKER={value!r}: {server!r} is not host:port "
                "(expected e.g. kafka://127.0.0.1:9092)"
            )
    return "kafka://" + ";".join(servers)


def parse_bbox(value: str) -> BoundingBox:
    parts = [p.strip() for p in value.split(",")]
    try:
        lamin, lomin, lamax, lomax = (float(p) for p in parts)
    except ValueError:
        raise SettingsError(
            f"FLIGHTS_BBOX={value!r} must be four numbers: lamin,lomin,lamax,lomax"
        ) from None
    if not (-90 <= lamin < lamax <= 90):
        raise SettingsError(f"FLIGHTS_BBOX={value!r}: need -90 <= lamin < lamax <= 90")
    if not (-180 <= lomin < lomax <= 180):
        raise SettingsError(f"FLIGHTS_BBOX={value!r}: need -180 <= lomin < lomax <= 180")
    return BoundingBox(lamin, lomin, lamax, lomax)


def _local_url(bind: str, port: int) -> str:
    host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


#: The shortest bearer token the worker accepts.
MIN_TOKEN_LENGTH = 16


def is_loopback(bind: str) -> bool:
    """Whether a server bound to ``bind`` is reachable from this machine only."""
    return bind == "localhost" or bind == "::1" or bind.startswith("127.")


def _readable(env: _Reader, name: str) -> Path | None:
    value = env.raw(name)
    if value is None:
        return None
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise SettingsError(f"{name}={value}: no such file")
    return path


def _token_file(env: _Reader, name: str) -> Secret | None:
    """The token a file holds (surrounding white space dropped); never shown in an error."""
    path = _readable(env, name)
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{name}={path}: cannot read it ({type(error).__name__})") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise SettingsError(f"{name}={path}: the token must be one word of at least {MIN_TOKEN_LENGTH} characters")
    return Secret(token)


def _kafka_security(env: _Reader) -> KafkaSecurity:
    """The Kafka login settings, checked; the password read from its file."""
    protocol = env.choice("FLIGHTS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", PROTOCOLS)
    mechanism = env.choice("FLIGHTS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", MECHANISMS)
    user = env.raw("FLIGHTS_KAFKA_USER")
    password_file = _readable(env, "FLIGHTS_KAFKA_PASSWORD_FILE")
    ca_file = _readable(env, "FLIGHTS_KAFKA_CA_FILE")
    password = None
    if protocol.startswith("SASL_"):
        if user is None or password_file is None:
            raise SettingsError(f"FLIGHTS_KAFKA_SECURITY_PROTOCOL={protocol} needs FLIGHTS_KAFKA_USER and "
                                "FLIGHTS_KAFKA_PASSWORD_FILE")
        try:
            password = Secret(password_file.read_text().strip())
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"FLIGHTS_KAFKA_PASSWORD_FILE={password_file}: cannot read it "
                                f"({type(error).__name__})") from None
        if not password:
            raise SettingsError(f"FLIGHTS_KAFKA_PASSWORD_FILE={password_file} is empty")
    elif user is not None or password_file is not None:
        raise SettingsError(f"FLIGHTS_KAFKA_USER and FLIGHTS_KAFKA_PASSWORD_FILE need a SASL_ protocol "
                            f"(FLIGHTS_KAFKA_SECURITY_PROTOCOL is {protocol})")
    return KafkaSecurity(protocol, mechanism, user, password, ca_file)


def _dashboard_users(env: _Reader) -> Path | None:
    """The dashboard's users file, checked: a JSON object of user names and non-empty passwords."""
    path = _readable(env, "FLIGHTS_DASHBOARD_AUTH_FILE")
    if path is None:
        return None
    try:
        users = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SettingsError(f"FLIGHTS_DASHBOARD_AUTH_FILE={path}: not a JSON file ({type(error).__name__})") from None
    if not (isinstance(users, dict) and users and all(isinstance(u, str) and u and isinstance(p, str) and p
                                                      for u, p in users.items())):
        raise SettingsError(f"FLIGHTS_DASHBOARD_AUTH_FILE={path}: expected a JSON object of user names and "
                            'passwords, e.g. {"ops": "a long password"}')
    return path


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise SettingsError on the first bad one."""
    env = _Reader(os.environ if environ is None else environ)

    app_id = env.raw("FLIGHTS_APP_ID") or "flights-app"
    if not _APP_ID_RE.match(app_id):
        raise SettingsError(f"FLIGHTS_APP_ID={app_id!r}: use letters, digits, '.', '_' or '-'")
    topic_prefix = env.raw("FLIGHTS_TOPIC_PREFIX") or ""
    if topic_prefix and not _APP_ID_RE.match(topic_prefix):
        raise SettingsError(f"FLIGHTS_TOPIC_PREFIX={topic_prefix!r}: use letters, digits, '.', '_' or '-'")

    broker_raw = env.raw("FLIGHTS_BROKER")
    broker = parse_broker(broker_raw) if broker_raw else None

    store = env.raw("FLIGHTS_STORE") or "rocksdb://"
    if store not in ("rocksdb://", "memory://"):
        raise SettingsError(f"FLIGHTS_STORE={store!r}: expected rocksdb:// or memory://")

    client_id = env.raw("OPENSKY_CLIENT_ID")
    client_secret_raw = env.raw("OPENSKY_CLIENT_SECRET")
    if bool(client_id) != bool(client_secret_raw):
        missing = "OPENSKY_CLIENT_SECRET" if client_id else "OPENSKY_CLIENT_ID"
        raise SettingsError(f"OpenSky credentials are incomplete: {missing} is not set")
    client_secret = Secret(client_secret_raw) if client_secret_raw else None
    authenticated = bool(client_id)

    bbox_raw = env.raw("FLIGHTS_BBOX")
    bbox = parse_bbox(bbox_raw) if bbox_raw else None
    default_credits = AUTHENTICATED_DAILY_CREDITS if authenticated else ANONYMOUS_DAILY_CREDITS
    daily_credits = env.integer("FLIGHTS_DAILY_CREDITS", default_credits, 0, 10_000_000)
    explicit_interval = env.seconds("FLIGHTS_POLL_INTERVAL", None, 0.01, SECONDS_PER_DAY)
    poll = plan_polling(explicit_interval, authenticated, bbox, daily_credits)

    log_level = env.choice("FLIGHTS_LOG_LEVEL", "info", _LOG_LEVELS)
    compression = env.choice("FLIGHTS_KAFKA_COMPRESSION", "zstd", _COMPRESSIONS)

    web_bind = env.raw("FLIGHTS_WEB_BIND") or "127.0.0.1"
    if not re.match(r"^[A-Za-z0-9.:\-]+$", web_bind):
        raise SettingsError(f"FLIGHTS_WEB_BIND={web_bind!r} is not an address")
    # Faust tells the other workers this host (table routing): a wildcard bind is no address to reach.
    web_host = env.raw("FLIGHTS_WEB_HOST") or (socket.gethostname() if web_bind in ("0.0.0.0", "::") else web_bind)
    if not _HOST_RE.match(web_host):
        raise SettingsError(f"FLIGHTS_WEB_HOST={web_host!r} is not a host name or address")
    origins = tuple(o.strip() for o in (env.raw("FLIGHTS_DASHBOARD_ORIGINS") or "").split(",") if o.strip())
    for origin in origins:
        if not _ORIGIN_RE.match(origin):
            raise SettingsError(f"FLIGHTS_DASHBOARD_ORIGINS: {origin!r} is not host or host:port")

    web_token = _token_file(env, "FLIGHTS_WEB_TOKEN_FILE")
    loopback = is_loopback(web_bind)
    if web_token is None and not loopback:
        raise SettingsError(f"FLIGHTS_WEB_BIND={web_bind} is beyond loopback: set FLIGHTS_WEB_TOKEN_FILE to a file "
                            "holding the bearer token the worker's web server will require")
    model_reload_endpoint = env.flag("FLIGHTS_MODEL_RELOAD_ENDPOINT")
    if model_reload_endpoint and web_token is None:
        raise SettingsError("FLIGHTS_MODEL_RELOAD_ENDPOINT=1 needs FLIGHTS_WEB_TOKEN_FILE: "
                            "POST /model/reload always asks for the bearer token")
    dashboard_auth_file = _dashboard_users(env)  # required beyond loopback: by the dashboard (dashboard_problem)

    kafka_security = _kafka_security(env)

    return Settings(
        app_id=app_id,
        broker=broker,
        embedded_broker_port=env.port("FLIGHTS_EMBEDDED_BROKER_PORT", EMBEDDED_BROKER_PORT),
        store=store,
        datadir=Path(env.raw("FLIGHTS_DATADIR") or "var").absolute(),
        web_bind=web_bind,
        web_host=web_host,
        web_port=env.port("FLIGHTS_WEB_PORT", 6066),
        dashboard_port=env.port("FLIGHTS_DASHBOARD_PORT", 5006),
        dashboard_origins=origins,
        worker_url=env.url("FLIGHTS_WORKER_URL", _local_url(web_bind, env.port("FLIGHTS_WEB_PORT", 6066))),
        map_tiles=env.url("FLIGHTS_MAP_TILES", "") if env.raw("FLIGHTS_MAP_TILES") else "",
        map_outline=Path(env.raw("FLIGHTS_MAP_OUTLINE") or PROJECT_ROOT / ".maps" / "land-110m.json").absolute(),
        # A laptop's embedded broker gains nothing from more partitions than cores; a cluster's
        # partitions bound how many workers share the work.
        topic_partitions=env.integer("FLIGHTS_TOPIC_PARTITIONS", 4 if broker is None else 8, 1, 1000),
        topic_replication=env.integer("FLIGHTS_TOPIC_REPLICATION", 1, 1, 10),
        topic_prefix=topic_prefix,
        retention_hours=env.hours("FLIGHTS_RETENTION_HOURS", 168.0, 0.01, 87600),
        standby_replicas=env.integer("FLIGHTS_STANDBY_REPLICAS", 1, 0, 10),
        session_timeout_s=env.seconds("FLIGHTS_SESSION_TIMEOUT", 60.0, 6, 90),
        opensky_url=env.url("OPENSKY_URL", OPENSKY_API_URL),
        opensky_token_url=env.url("OPENSKY_TOKEN_URL", OPENSKY_TOKEN_URL),
        opensky_client_id=client_id,
        opensky_client_secret=client_secret,
        opensky_timeout_s=env.seconds("OPENSKY_TIMEOUT", 20.0, 0.1, 600),
        poll=poll,
        daily_credits=daily_credits,
        bbox=bbox,
        backoff_max_s=env.seconds("FLIGHTS_BACKOFF_MAX", 300.0, 0.1, SECONDS_PER_DAY),
        kafka_lib=Path(env.raw("FLIGHTS_KAFKA_LIB") or PROJECT_ROOT / ".kafka" / "lib").absolute(),
        kafka_heap_mb=env.integer("FLIGHTS_KAFKA_HEAP_MB", 512, 128, 16384),
        log_level=log_level,
        kafka_compression=compression,
        kafka_linger_ms=env.integer("FLIGHTS_KAFKA_LINGER_MS", 5, 0, 1000),
        model_path=Path(env.raw("FLIGHTS_MODEL") or PROJECT_ROOT / "ml" / "models" / "default.joblib").absolute(),
        score_batch_max=env.integer("FLIGHTS_SCORE_BATCH", 1000, 1, 100_000),
        score_batch_within_s=env.seconds("FLIGHTS_SCORE_WITHIN", 0.05, 0.001, 60),
        alert_score=env.fraction("FLIGHTS_ALERT_SCORE", 0.0),
        model_watch_s=env.seconds("FLIGHTS_MODEL_WATCH", 5.0, 0, SECONDS_PER_DAY),
        model_reload_endpoint=model_reload_endpoint,
        web_token=web_token,
        dashboard_auth_file=dashboard_auth_file,
        kafka_security=kafka_security,
        embedded_broker_sasl=env.flag("FLIGHTS_EMBEDDED_BROKER_SASL"),
        faust_untested=env.flag("FLIGHTS_FAUST_UNTESTED"),
        window_s=env.integer("FLIGHTS_WINDOW", 600, 1, 86400),
        window_grace_s=env.seconds("FLIGHTS_WINDOW_GRACE", 60.0, 0, 86400),
        window_expiry_s=env.integer("FLIGHTS_WINDOW_EXPIRY", 3600, 1, 30 * 86400),
        watermark_idle_s=env.seconds("FLIGHTS_WATERMARK_IDLE", 10.0, 0.1, 86400),
        aggregate_flush_s=env.seconds("FLIGHTS_AGGREGATE_FLUSH", 5.0, 0.05, 3600),
        alert_webhook=env.url("FLIGHTS_ALERT_WEBHOOK", "") if env.raw("FLIGHTS_ALERT_WEBHOOK") else None,
    )

