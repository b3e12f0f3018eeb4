"""All of the app's settings, read once from the environment.

Every setting is an environment variable with a documented default
(``SETTINGS_DOC``; a test keeps the table of docs/settings.md in step). A wrong value
raises ``SettingsError`` with a message naming the variable and what it
accepts; the CLI and the app module turn that into one line, never a
traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
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
class AlertMail:
    """Where and how alerts are mailed (FLIGHTS_ALERT_SMTP_*; flights_app/notify.py sends them)."""

    host: str
    port: int
    security: str  # starttls, tls (implicit TLS, usually port 465) or none
    user: str | None
    password: Secret | None
    ca_file: Path | None
    sender: str
    recipients: tuple[str, ...]


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

    def number(self, name: str, default: float | None, lo: float, hi: float, *, unit: str = "",
               whole: bool = False) -> Any:
        """A number in lo..hi (``whole``: an integer; ``unit`` names what it counts in the messages)."""
        value = self.raw(name)
        if value is None:
            return default
        what = "a whole number" if whole else f"a number of {unit}" if unit else "a number"
        try:
            number = int(value) if whole else float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r} is not {what}") from None
        if not (math.isfinite(number) and lo <= number <= hi):
            span = f"{lo}..{hi}" if whole else f"{lo:g}..{hi:g}" + (f" {unit}" if unit else "")
            raise SettingsError(f"{name}={number if whole else value} is out of range: expected {span}")
        return number

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


def _dashboard_users(env: _Reader, name: str) -> Path | None:
    """The dashboard's users file, checked: a JSON object of user names and non-empty passwords."""
    path = _readable(env, name)
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


# ---- how one variable is read: each kind knows its default as shown to users ---------------------
Before = dict[str, Any]  # the settings read so far, by field name (a default may depend on them)


@dataclass(frozen=True)
class Int:
    default: int
    lo: int
    hi: int
    shown: str = ""

    def __call__(self, env: _Reader, name: str, before: Before) -> int:
        return env.number(name, self.default, self.lo, self.hi, whole=True)

    def __post_init__(self):
        object.__setattr__(self, "shown", self.shown or str(self.default))


def Port(default: int) -> Int:  # noqa: N802 - a kind of setting, like Int
    return Int(default, 1, 65535)


@dataclass(frozen=True)
class Measure:
    """A number of ``unit`` (seconds, hours) in lo..hi; None as default: unset means None."""

    default: float | None
    lo: float
    hi: float
    unit: str = "seconds"
    shown: str = ""

    def __call__(self, env: _Reader, name: str, before: Before) -> float | None:
        return env.number(name, self.default, self.lo, self.hi, unit=self.unit)

    def __post_init__(self):
        object.__setattr__(self, "shown", self.shown or f"{self.default:g}")


@dataclass(frozen=True)
class Fraction:
    default: float

    @property
    def shown(self) -> str:
        return f"{self.default:g}"

    def __call__(self, env: _Reader, name: str, before: Before) -> float:
        return env.number(name, self.default, 0, 1)


@dataclass(frozen=True)
class Choice:
    default: str
    choices: tuple[str, ...]

    @property
    def shown(self) -> str:
        return self.default

    def __call__(self, env: _Reader, name: str, before: Before) -> str:
        return env.choice(name, self.default, self.choices)


@dataclass(frozen=True)
class Flag:
    shown: str = "0"

    def __call__(self, env: _Reader, name: str, before: Before) -> bool:
        return env.flag(name)


@dataclass(frozen=True)
class Url:
    default: str
    shown: str = ""

    def __call__(self, env: _Reader, name: str, before: Before) -> str:
        return env.url(name, self.default)

    def __post_init__(self):
        object.__setattr__(self, "shown", self.shown or self.default)


@dataclass(frozen=True)
class Custom:
    """Read by ``read(env, name, before)``: for the settings whose parsing or default is their own."""

    read: Callable[[_Reader, str, Before], Any]
    shown: str = "unset"

    def __call__(self, env: _Reader, name: str, before: Before) -> Any:
        return self.read(env, name, before)


def _optional(parse: Callable[[str], Any]) -> Custom:
    """Unset is None; a value is ``parse(value)``."""
    return Custom(lambda env, name, before: parse(env.raw(name)) if env.raw(name) else None)


def _pattern(default: str, shown: str = "") -> Custom:
    def read(env: _Reader, name: str, before: Before) -> str:
        value = env.raw(name) or default
        if value and not _APP_ID_RE.match(value):
            raise SettingsError(f"{name}={value!r}: use letters, digits, '.', '_' or '-'")
        return value
    return Custom(read, shown or default)


def _path(default: str | Path, shown: str) -> Custom:
    return Custom(lambda env, name, before: Path(env.raw(name) or default).absolute(), shown)


def _store(env: _Reader, name: str, before: Before) -> str:
    store = env.raw(name) or "rocksdb://"
    if store not in ("rocksdb://", "memory://"):
        raise SettingsError(f"{name}={store!r}: expected rocksdb:// or memory://")
    return store


def _web_bind(env: _Reader, name: str, before: Before) -> str:
    bind = env.raw(name) or "127.0.0.1"
    if not re.match(r"^[A-Za-z0-9.:\-]+$", bind):
        raise SettingsError(f"{name}={bind!r} is not an address")
    return bind


def _web_host(env: _Reader, name: str, before: Before) -> str:
    # Faust tells the other workers this host (table routing): a wildcard bind is no address to reach.
    bind = before["web_bind"]
    host = env.raw(name) or (socket.gethostname() if bind in ("0.0.0.0", "::") else bind)
    if not _HOST_RE.match(host):
        raise SettingsError(f"{name}={host!r} is not a host name or address")
    return host


def _web_token(env: _Reader, name: str, before: Before) -> Secret | None:
    token = _token_file(env, name)
    if token is None and not is_loopback(before["web_bind"]):
        raise SettingsError(f"FLIGHTS_WEB_BIND={before['web_bind']} is beyond loopback: set {name} to a file "
                            "holding the bearer token the worker's web server will require")
    return token


def _origins(env: _Reader, name: str, before: Before) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in (env.raw(name) or "").split(",") if o.strip())
    for origin in origins:
        if not _ORIGIN_RE.match(origin):
            raise SettingsError(f"{name}: {origin!r} is not host or host:port")
    return origins


def _worker_id(env: _Reader, name: str, before: Before) -> str | None:
    # Kafka's static group membership (KIP-345): a worker restarted with the same id within the session
    # timeout gets its partitions back without a rebalance of the whole group. The same host, data
    # directory (one worker's tables: RocksDB locks it) and web address is the same worker. The address
    # is always part of the id: the group hands a returning member its previous assignment, which names
    # its web address, and Faust refuses an assignment made for another address.
    raw = env.raw(name)
    if raw is not None and raw.strip().lower() == "none":
        return None
    if raw and not re.match(r"^[A-Za-z0-9._:\-]{1,160}$", raw):
        raise SettingsError(f"{name}={raw!r} must be letters, digits and . _ : - (at most 160), or none")
    host = socket.gethostname()
    address = f"{before['web_host']}:{before['web_port']}"
    where = f"{host}:{Path(before['datadir']).resolve()}:{address}"
    return f"{raw or 'worker-' + host[:40]}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def _worker_url(env: _Reader, name: str, before: Before) -> str:
    return env.url(name, _local_url(before["web_bind"], before["web_port"]))


def _map_tiles(env: _Reader, name: str, before: Before) -> str:
    return env.url(name, "") if env.raw(name) else ""


def _topic_partitions(env: _Reader, name: str, before: Before) -> int:
    # A laptop's embedded broker gains nothing from more partitions than cores; a cluster's
    # partitions bound how many workers share the work.
    return env.number(name, 4 if before["broker"] is None else 8, 1, 1000, whole=True)


def _client_secret(env: _Reader, name: str, before: Before) -> Secret | None:
    secret = env.raw(name)
    if bool(before["opensky_client_id"]) != bool(secret):
        missing = name if before["opensky_client_id"] else "OPENSKY_CLIENT_ID"
        raise SettingsError(f"OpenSky credentials are incomplete: {missing} is not set")
    return Secret(secret) if secret else None


def _daily_credits(env: _Reader, name: str, before: Before) -> int:
    default = AUTHENTICATED_DAILY_CREDITS if before["opensky_client_id"] else ANONYMOUS_DAILY_CREDITS
    return env.number(name, default, 0, 10_000_000, whole=True)


def _reload_endpoint(env: _Reader, name: str, before: Before) -> bool:
    enabled = env.flag(name)
    if enabled and before["web_token"] is None:
        raise SettingsError(f"{name}=1 needs FLIGHTS_WEB_TOKEN_FILE: POST /model/reload always asks for the bearer "
                            "token")
    return enabled


def setting(name: str, read, doc: str, *, main: bool = False, shown: str | None = None, secret: bool = False):
    """A field of ``Settings`` read from the environment variable ``name``: how (``read``, which knows the
    default), what it means (``doc``: docs/settings.md, and the README's table when ``main``)."""
    var = Var(name, read, read.shown if shown is None else shown, doc, main)
    return field(repr=not secret, metadata={"var": var})


@dataclass(frozen=True)
class Var:
    name: str
    read: Callable[[_Reader, str, Before], Any]
    shown: str
    doc: str
    main: bool


@dataclass(frozen=True)
class Settings:
    """The app's configuration, one environment variable per field (in the order they are read and
    documented). Build it with ``load_settings()``."""

    app_id: str = setting("FLIGHTS_APP_ID", _pattern("flights-app"),
                          "Faust application id (consumer group, changelog topic prefix)")
    broker: str | None = setting("FLIGHTS_BROKER", _optional(parse_broker),
                                 "Kafka bootstrap servers, `kafka://host:port[;host:port]`; unset starts the "
                                 "embedded broker", main=True)
    embedded_broker_port: int = setting("FLIGHTS_EMBEDDED_BROKER_PORT", Port(EMBEDDED_BROKER_PORT),
                                        "port of the embedded broker (its controller uses the next port)")
    store: str = setting("FLIGHTS_STORE", Custom(_store, "rocksdb://"),
                         "Faust table store (`rocksdb://` with the rocksdict driver, or `memory://`)")
    datadir: Path = setting("FLIGHTS_DATADIR", _path("var", "./var"),
                            "where tables, the embedded broker's logs and data live")
    web_bind: str = setting("FLIGHTS_WEB_BIND", Custom(_web_bind, "127.0.0.1"),
                            "address the Faust web server and the dashboard bind to", main=True)
    web_host: str = setting("FLIGHTS_WEB_HOST", Custom(_web_host, "the bind address"),
                            "host name other workers use to reach this worker's web server (its container's host "
                            "name when bound to 0.0.0.0)")
    web_port: int = setting("FLIGHTS_WEB_PORT", Port(6066), "Faust web server port (table inspection, stats)")
    web_token: Secret | None = setting(
        "FLIGHTS_WEB_TOKEN_FILE", Custom(_web_token),
        "file holding the bearer token of the worker's web server (16+ characters): required when it binds beyond "
        "loopback (then every path but `/health` and `/metrics` needs it) and for `POST /model/reload`",
        main=True, secret=True)
    dashboard_port: int = setting("FLIGHTS_DASHBOARD_PORT", Port(5006), "Panel dashboard port", main=True)
    dashboard_auth_file: Path | None = setting(
        "FLIGHTS_DASHBOARD_AUTH_FILE", Custom(lambda env, name, before: _dashboard_users(env, name)),
        "JSON file `{\"user\": \"password\", ...}`: the dashboard asks for a login (Panel's basic authentication); "
        "required when it binds beyond loopback", main=True)
    dashboard_origins: tuple[str, ...] = setting(
        "FLIGHTS_DASHBOARD_ORIGINS", Custom(_origins),
        "more `host[:port]` (comma-separated) a browser may open the dashboard as, e.g. behind a proxy")
    dashboard_render: str = setting(
        "FLIGHTS_DASHBOARD_RENDER", Choice("canvas", ("canvas", "webgl")),
        "how the browser draws the map and the scatter charts: canvas, or webgl (faster with a GPU; slower "
        "without one, where Chromium renders WebGL in software: docs/performance.md)")
    worker_url: str = setting("FLIGHTS_WORKER_URL", Custom(_worker_url, "this machine's worker"),
                              "the worker web server the dashboard asks for health and window stats (any worker "
                              "answers for all)")
    map_tiles: str = setting("FLIGHTS_MAP_TILES", Custom(_map_tiles, ""),
                             "map tile URL template ({z}/{x}/{y}), used when it answers; empty: the offline land "
                             "outline")
    map_outline: Path = setting("FLIGHTS_MAP_OUTLINE",
                                _path(PROJECT_ROOT / ".maps" / "land-110m.json", "./.maps/land-110m.json"),
                                "the offline land outline (`make install` fetches it)")
    topic_partitions: int = setting("FLIGHTS_TOPIC_PARTITIONS", Custom(_topic_partitions, "4 / 8"),
                                    "partitions of the app's topics (embedded broker / a cluster); bounds the number "
                                    "of useful workers", main=True)
    topic_replication: int = setting("FLIGHTS_TOPIC_REPLICATION", Int(1, 1, 10),
                                     "replication factor of the app's topics")
    topic_prefix: str = setting("FLIGHTS_TOPIC_PREFIX", _pattern("", "empty"),
                                "prefix for every topic name (isolates test runs)")
    retention_hours: float = setting("FLIGHTS_RETENTION_HOURS", Measure(168.0, 0.01, 87600, "hours"),
                                     "how long the app's topics keep records (changelogs are compacted instead)")
    standby_replicas: int = setting("FLIGHTS_STANDBY_REPLICAS", Int(1, 0, 10),
                                    "standby copies of each table partition kept by other workers (fast failover)")
    session_timeout_s: float = setting("FLIGHTS_SESSION_TIMEOUT", Measure(60.0, 6, 90),
                                       "seconds without a heartbeat before a worker's partitions go to the others "
                                       "(how long a crashed worker's partitions wait)")
    worker_id: str | None = setting("FLIGHTS_WORKER_ID", Custom(_worker_id, "from the host"),
                                    "the worker's static member id in its Kafka group (with a hash of the host, "
                                    "FLIGHTS_DATADIR and the web address): restarted within "
                                    "FLIGHTS_SESSION_TIMEOUT with all three unchanged, it keeps its partitions "
                                    "without a rebalance; `none`: a dynamic member (every restart rebalances)")
    opensky_url: str = setting("OPENSKY_URL", Url(OPENSKY_API_URL), "OpenSky REST API base URL", main=True)
    opensky_token_url: str = setting("OPENSKY_TOKEN_URL", Url(OPENSKY_TOKEN_URL, "OpenSky's auth server"),
                                     "OAuth2 token endpoint (client credentials)")
    opensky_client_id: str | None = setting("OPENSKY_CLIENT_ID", Custom(lambda env, name, before: env.raw(name)),
                                            "OAuth2 client id; anonymous without it", main=True)
    opensky_client_secret: Secret | None = setting("OPENSKY_CLIENT_SECRET", Custom(_client_secret),
                                                   "OAuth2 client secret (never logged)", main=True, secret=True)
    catch_up_max: int = setting("FLIGHTS_CATCH_UP_MAX", Int(60, 0, 720),
                                "past polls a new source leader fetches at most (OpenSky's `time` parameter, "
                                "authenticated only, within the last hour): the poll times missed since the last "
                                "poll published; 0: none")
    opensky_timeout_s: float = setting("OPENSKY_TIMEOUT", Measure(20.0, 0.1, 600),
                                       "seconds one OpenSky request may take")
    poll_interval_s: float | None = setting("FLIGHTS_POLL_INTERVAL", Measure(None, 0.01, SECONDS_PER_DAY,
                                                                              shown="derived"),
                                            "seconds between polls; derived so the daily credits last the day",
                                            main=True)
    daily_credits: int = setting("FLIGHTS_DAILY_CREDITS", Custom(_daily_credits, "400 / 4000"),
                                 "credits a day (anonymous / authenticated); 0 = unlimited")
    bbox: BoundingBox | None = setting("FLIGHTS_BBOX", _optional(parse_bbox),
                                       "`lamin,lomin,lamax,lomax` in degrees", shown="unset (global)", main=True)
    backoff_max_s: float = setting("FLIGHTS_BACKOFF_MAX", Measure(300.0, 0.1, SECONDS_PER_DAY),
                                   "longest wait in seconds between failed polls")
    kafka_lib: Path = setting("FLIGHTS_KAFKA_LIB", _path(PROJECT_ROOT / ".kafka" / "lib", "./.kafka/lib"),
                              "where `make install` puts the embedded Kafka's jars")
    kafka_heap_mb: int = setting("FLIGHTS_KAFKA_HEAP_MB", Int(512, 128, 16384), "embedded broker's JVM heap")
    kafka_compression: str = setting("FLIGHTS_KAFKA_COMPRESSION", Choice("zstd", _COMPRESSIONS),
                                     "compression of what the worker produces: none, gzip, lz4 or zstd")
    kafka_linger_ms: int = setting("FLIGHTS_KAFKA_LINGER_MS", Int(5, 0, 1000),
                                   "how long the worker's producer gathers records into a batch, ms")
    kafka_security_protocol: str = setting("FLIGHTS_KAFKA_SECURITY_PROTOCOL", Choice("PLAINTEXT", PROTOCOLS),
                                           "how the worker and the dashboard reach Kafka: PLAINTEXT, SASL_PLAINTEXT, "
                                           "SASL_SSL or SSL", main=True)
    kafka_sasl_mechanism: str = setting("FLIGHTS_KAFKA_SASL_MECHANISM", Choice("SCRAM-SHA-512", MECHANISMS),
                                        "the SASL login: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", main=True)
    kafka_user: str | None = setting("FLIGHTS_KAFKA_USER", Custom(lambda env, name, before: env.raw(name)),
                                     "the SASL user (principal) of this service; required with SASL_*", main=True)
    kafka_password_file: Path | None = setting(
        "FLIGHTS_KAFKA_PASSWORD_FILE", Custom(lambda env, name, before: _readable(env, name)),
        "file holding that user's password (never logged); required with SASL_*", main=True)
    kafka_ca_file: Path | None = setting(
        "FLIGHTS_KAFKA_CA_FILE", Custom(lambda env, name, before: _readable(env, name), "the system's CAs"),
        "PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL)", main=True)
    embedded_broker_sasl: bool = setting("FLIGHTS_EMBEDDED_BROKER_SASL", Flag(),
                                         "1: the embedded broker requires SCRAM-SHA-512 logins with ACLs; `up` logs "
                                         "the worker and the dashboard in as their own principals", main=True)
    log_level: str = setting("FLIGHTS_LOG_LEVEL", Choice("info", _LOG_LEVELS), "log level of the worker")
    faust_untested: bool = setting("FLIGHTS_FAUST_UNTESTED", Flag(),
                                   "1 runs the worker on a faust-streaming version it was not tested with")
    model_path: Path = setting("FLIGHTS_MODEL",
                               _path(PROJECT_ROOT / "ml" / "models" / "default.joblib", "ml/models/default.joblib"),
                               "anomaly model (its arrays `.npz` and manifest `.json` beside it)", main=True)
    score_batch_max: int = setting("FLIGHTS_SCORE_BATCH", Int(4000, 1, 100_000),
                                   "most states the scorer takes at once")
    score_batch_within_s: float = setting("FLIGHTS_SCORE_WITHIN", Measure(0.05, 0.001, 60),
                                          "longest a message waits for its batch to fill, seconds")
    alert_score: float = setting("FLIGHTS_ALERT_SCORE", Fraction(0.0),
                                 "model anomalies go to flight-alerts from the model's alert_threshold (in its "
                                 "manifest) or from this score, whichever is higher; data faults never do")
    model_watch_s: float = setting("FLIGHTS_MODEL_WATCH", Measure(5.0, 0, SECONDS_PER_DAY),
                                   "seconds between checks of the model file for a new version; 0 = never")
    model_reload_endpoint: bool = setting("FLIGHTS_MODEL_RELOAD_ENDPOINT", Custom(_reload_endpoint, "0"),
                                          "1 enables `POST /model/reload` on the Faust web server")
    window_s: int = setting("FLIGHTS_WINDOW", Int(600, 1, 86400), "tumbling window size, seconds of event time",
                            main=True)
    window_grace_s: float = setting("FLIGHTS_WINDOW_GRACE", Measure(60.0, 0, 86400),
                                    "how late (event time) a state may arrive and still count in its window")
    window_expiry_s: int = setting("FLIGHTS_WINDOW_EXPIRY", Int(3600, 1, 30 * 86400),
                                   "how long windows are kept after they close, seconds")
    watermark_idle_s: float = setting("FLIGHTS_WATERMARK_IDLE", Measure(10.0, 0.1, 86400),
                                      "a partition of flight-raw-data with nothing waiting that had no batch for this "
                                      "long (wall clock, s) says it is idle and stops holding the event-time watermark "
                                      "back (one nobody consumes holds it)")
    aggregate_flush_s: float = setting("FLIGHTS_AGGREGATE_FLUSH", Measure(5.0, 0.05, 3600),
                                       "at most one flight-aggregated-data record per key per this many seconds")
    alert_webhook: str | None = setting("FLIGHTS_ALERT_WEBHOOK",
                                        Custom(lambda env, name, before: env.url(name, "") if env.raw(name) else None),
                                        "URL that gets each alert as a JSON POST (retried, at most one per aircraft a "
                                        "minute)", main=True)
    alert_format: str = setting("FLIGHTS_ALERT_FORMAT", Choice("json", ("json", "slack")),
                                "the webhook's body: each alert as JSON, or as a Slack incoming-webhook message")
    alert_smtp_host: str | None = setting("FLIGHTS_ALERT_SMTP_HOST", Custom(lambda env, name, before: env.raw(name)),
                                          "SMTP server that mails each alert (same queue and limits as the "
                                          "webhook); unset: no e-mail")
    alert_smtp_port: int = setting("FLIGHTS_ALERT_SMTP_PORT", Port(587), "that server's port")
    alert_smtp_security: str = setting("FLIGHTS_ALERT_SMTP_SECURITY", Choice("starttls", ("starttls", "tls", "none")),
                                       "starttls, tls (implicit, port 465) or none (only without a login, or on "
                                       "loopback)")
    alert_smtp_user: str | None = setting("FLIGHTS_ALERT_SMTP_USER", Custom(lambda env, name, before: env.raw(name)),
                                          "the SMTP login's user (with FLIGHTS_ALERT_SMTP_PASSWORD_FILE)")
    alert_smtp_password_file: Path | None = setting(
        "FLIGHTS_ALERT_SMTP_PASSWORD_FILE", Custom(lambda env, name, before: _readable(env, name)),
        "file holding the SMTP login's password (never logged)")
    alert_smtp_ca_file: Path | None = setting(
        "FLIGHTS_ALERT_SMTP_CA_FILE", Custom(lambda env, name, before: _readable(env, name), "the system's CAs"),
        "PEM file of the CA that signed the SMTP server's certificate")
    alert_smtp_from: str | None = setting("FLIGHTS_ALERT_SMTP_FROM", Custom(lambda env, name, before: _addresses(
                                              env, name, most=1)[0] if env.raw(name) else None),
                                          "the alerts' sender address")
    alert_smtp_to: tuple[str, ...] = setting("FLIGHTS_ALERT_SMTP_TO", Custom(lambda env, name, before: _addresses(
                                                 env, name) if env.raw(name) else ()),
                                             "who gets the alerts: addresses, comma-separated")
    history_dir: Path = setting("FLIGHTS_HISTORY_DIR", Custom(lambda env, name, before: Path(
                                    env.raw(name) or Path(before["datadir"]) / "history").absolute(),
                                    "$FLIGHTS_DATADIR/history (./var/history)"),
                                "where the history writer keeps scored states, window records and alerts as "
                                "Parquet (docs/history.md); any local or mounted path")
    history_days: int = setting("FLIGHTS_HISTORY_DAYS", Int(30, 1, 3650),
                                "days of history kept (older hours are deleted)")
    history_flush_s: float = setting("FLIGHTS_HISTORY_FLUSH", Measure(10.0, 0.05, 3600),
                                     "the history writer writes a partition's records at least this often, seconds "
                                     "(or once 20,000 wait)")
    history_commit_delay_s: float = setting("FLIGHTS_HISTORY_COMMIT_DELAY", Measure(0.0, 0, 60),
                                            "for crash tests: seconds the history writer waits between writing a "
                                            "range's files and committing it")
    history_port: int = setting("FLIGHTS_HISTORY_PORT", Port(6068),
                                "port of the history writer's `/metrics` and `/health` (bound to FLIGHTS_WEB_BIND)")
    history_max_hours: int = setting("FLIGHTS_HISTORY_MAX_HOURS", Int(24, 1, 24 * 3650),
                                     "longest time range one history query may ask for, hours")
    # Derived from the settings above (no variable of their own).
    poll: PollPlan = field(default=None)  # type: ignore[assignment]
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    alert_mail: AlertMail | None = None

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


#: Every setting's variable, in the order they are read and documented.
VARIABLES: tuple[tuple[str, Var], ...] = tuple((f.name, f.metadata["var"]) for f in fields(Settings)
                                               if "var" in f.metadata)
#: name -> (default shown to users, what it means): docs/settings.md's table and the README's come from here.
SETTINGS_DOC: dict[str, tuple[str, str]] = {var.name: (var.shown, var.doc) for _, var in VARIABLES}


def settings_table(main_only: bool = False) -> str:
    """The table of docs/settings.md (``main_only``: the README's)."""
    rows = [f"| `{var.name}` | {var.shown} | {var.doc} |" for _, var in VARIABLES if var.main or not main_only]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def _password(name: str, path: Path) -> Secret:
    """The password a file holds (surrounding white space dropped), never shown in an error."""
    try:
        password = Secret(path.read_text().strip())
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{name}={path}: cannot read it ({type(error).__name__})") from None
    if not password:
        raise SettingsError(f"{name}={path} is empty")
    return password


def _kafka_security(values: Before) -> KafkaSecurity:
    """The Kafka login, checked; the password read from its file."""
    protocol, user, password_file = (values["kafka_security_protocol"], values["kafka_user"],
                                     values["kafka_password_file"])
    password = None
    if protocol.startswith("SASL_"):
        if user is None or password_file is None:
            raise SettingsError(f"FLIGHTS_KAFKA_SECURITY_PROTOCOL={protocol} needs FLIGHTS_KAFKA_USER and "
                                "FLIGHTS_KAFKA_PASSWORD_FILE")
        password = _password("FLIGHTS_KAFKA_PASSWORD_FILE", password_file)
    elif user is not None or password_file is not None:
        raise SettingsError(f"FLIGHTS_KAFKA_USER and FLIGHTS_KAFKA_PASSWORD_FILE need a SASL_ protocol "
                            f"(FLIGHTS_KAFKA_SECURITY_PROTOCOL is {protocol})")
    return KafkaSecurity(protocol, values["kafka_sasl_mechanism"], user, password, values["kafka_ca_file"])


_ADDRESS_RE = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+$")


def _addresses(env: _Reader, name: str, most: int = 100) -> tuple[str, ...]:
    addresses = tuple(a.strip() for a in (env.raw(name) or "").split(",") if a.strip())
    for address in addresses:
        if not _ADDRESS_RE.match(address):
            raise SettingsError(f"{name}: {address[:60]!r} is not an e-mail address (user@example.org)")
    if not addresses or len(addresses) > most:
        raise SettingsError(f"{name}: expected {'one address' if most == 1 else f'1 to {most} addresses'}")
    return addresses


def _alert_mail(values: Before) -> AlertMail | None:
    """The alerts' e-mail, checked (None when FLIGHTS_ALERT_SMTP_HOST is unset); the password read from its file."""
    host, user, password_file = (values["alert_smtp_host"], values["alert_smtp_user"],
                                 values["alert_smtp_password_file"])
    if host is None:
        given = [n for n, k in (("USER", "alert_smtp_user"), ("PASSWORD_FILE", "alert_smtp_password_file"),
                                ("FROM", "alert_smtp_from"), ("TO", "alert_smtp_to")) if values[k]]
        if given:
            raise SettingsError(f"FLIGHTS_ALERT_SMTP_{given[0]} is set but FLIGHTS_ALERT_SMTP_HOST is not")
        return None
    if not values["alert_smtp_from"] or not values["alert_smtp_to"]:
        raise SettingsError("FLIGHTS_ALERT_SMTP_HOST needs FLIGHTS_ALERT_SMTP_FROM and FLIGHTS_ALERT_SMTP_TO")
    if (user is None) != (password_file is None):
        raise SettingsError("FLIGHTS_ALERT_SMTP_USER and FLIGHTS_ALERT_SMTP_PASSWORD_FILE go together")
    if user is not None and values["alert_smtp_security"] == "none" and not is_loopback(host):
        raise SettingsError(f"FLIGHTS_ALERT_SMTP_SECURITY=none would send the SMTP password to {host} in clear: "
                            "use starttls or tls")
    password = None if password_file is None else _password("FLIGHTS_ALERT_SMTP_PASSWORD_FILE", password_file)
    return AlertMail(host, values["alert_smtp_port"], values["alert_smtp_security"], user, password,
                     values["alert_smtp_ca_file"], values["alert_smtp_from"], values["alert_smtp_to"])


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting, in order; raise SettingsError on the first bad one."""
    env = _Reader(os.environ if environ is None else environ)
    values: Before = {}
    for field_name, var in VARIABLES:
        values[field_name] = var.read(env, var.name, values)
    authenticated = bool(values["opensky_client_id"])
    poll = plan_polling(values["poll_interval_s"], authenticated, values["bbox"], values["daily_credits"])
    return Settings(**values, poll=poll, kafka_security=_kafka_security(values), alert_mail=_alert_mail(values))


if __name__ == "__main__":  # python -m flights_app.settings: write the settings tables of the docs
    from flights_app.pages import replace_between

    replace_between(PROJECT_ROOT / "docs" / "settings.md", "<!-- settings:start -->", "<!-- settings:end -->",
                    settings_table())
    replace_between(PROJECT_ROOT / "README.md", "<!-- settings:start -->", "<!-- settings:end -->",
                    settings_table(main_only=True))
