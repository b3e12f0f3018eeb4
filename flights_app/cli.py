"""``flights-app``: the command line.

    flights-app up [--source auto|live|sim|replay FILE]   everything, on embedded defaults
    flights-app worker [faust worker options]             the Faust worker (= faust -A flights_app.app worker)
    flights-app broker [--port N]                         the embedded Kafka alone
    flights-app opensky-fake (--simulate N | --replay P)  the OpenSky-compatible fake server

A user's mistake (a bad setting, a busy port, a missing file) ends with one
line saying what is wrong and what to do, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from flights_app.embedded.broker import (
    PRINCIPALS,
    BrokerError,
    EmbeddedBroker,
    _die_with_parent,
    accepts_connections,
)
from flights_app.history import commands as history_commands
from flights_app.settings import SettingsError, load_settings

EXIT_USAGE = 2
#: Seconds to wait for a child to stop after SIGTERM before killing it.
STOP_GRACE_S = 30.0
PROBE_TIMEOUT_S = 5.0
SIM_AIRCRAFT = 400
SIM_POLL_INTERVAL_S = 5.0
REPLAY_POLL_INTERVAL_S = 1.0


def fail(message: str) -> SystemExit:
    print(f"flights-app: {message}", file=sys.stderr)
    return SystemExit(EXIT_USAGE)


def _settings():
    try:
        return load_settings()
    except SettingsError as error:
        raise fail(f"configuration error: {error}") from None


def _wait_for_signal() -> int:
    """Block until SIGINT or SIGTERM; return the signal number."""
    received: list[int] = []
    done = threading.Event()

    def handler(signum, _frame):
        received.append(signum)
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    done.wait()
    return received[0]


# -- worker -------------------------------------------------------------------------------

#: Our log level names (Python's) -> the names `faust worker -l` accepts.
FAUST_LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "error": "error", "critical": "crit"}


def cmd_worker(extra: list[str]) -> None:
    settings = _settings()
    from flights_app.app import app

    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in extra):
        extra = ["-l", FAUST_LOG_LEVELS[settings.log_level], *extra]
    sys.argv = ["flights-app", "worker", *extra]
    app.main()


# -- broker -------------------------------------------------------------------------------


def _embedded_broker(settings, port: int | None = None, data_dir: Path | None = None) -> EmbeddedBroker:
    return EmbeddedBroker(
        data_dir or settings.datadir / "kafka",
        port or settings.embedded_broker_port,
        heap_mb=settings.kafka_heap_mb,
        lib_dir=settings.kafka_lib,
        partitions=settings.topic_partitions,
        sasl=settings.embedded_broker_sasl,
    )


def cmd_broker(args: argparse.Namespace) -> None:
    settings = _settings()
    broker = _embedded_broker(settings, args.port, Path(args.data_dir) if args.data_dir else None)
    print(f"Starting the embedded Kafka on {broker.bootstrap} (data in {broker.data_dir}, log {broker.log_file})...",
          flush=True)
    try:
        broker.start()
    except BrokerError as error:
        raise fail(str(error)) from None
    print(f"Kafka is ready: FLIGHTS_BROKER={broker.url}   (Ctrl-C stops it)", flush=True)
    if broker.sasl:
        print(f"It asks for SCRAM-SHA-512 logins; the principals' passwords are in {broker.users_dir} "
              f"({', '.join(PRINCIPALS)}). The worker logs in with: "
              + " ".join(f"{k}={v}" for k, v in broker.login_settings("worker").items()), flush=True)
    try:
        _wait_for_signal()
    finally:
        print("Stopping the embedded Kafka...", flush=True)
        broker.stop()
        print("Stopped.", flush=True)


# -- fake OpenSky -------------------------------------------------------------------------


def cmd_opensky_fake(args: argparse.Namespace) -> None:
    from aiohttp import web

    from flights_app.fake_opensky.faults import FaultError
    from flights_app.fake_opensky.recordings import RecordingError, load_recording
    from flights_app.fake_opensky.server import (
        FakeState,
        ReplaySource,
        SimulatedSource,
        initial_faults,
        make_app,
    )
    from flights_app.fake_opensky.simulator import Simulator

    try:
        if args.replay:
            polls = load_recording(args.replay)
            source = ReplaySource(polls, pace=args.pace, speed=args.speed, loop=args.loop,
                                  shift_to_present=args.shift_to_present)
            what = f"replaying {len(polls)} polls from {args.replay} ({args.pace} pace, x{args.speed:g})"
        else:
            simulator = Simulator(args.simulate, seed=args.seed, epoch=time.time(), anomaly_rate=args.anomaly_rate)
            source = SimulatedSource(simulator)
            what = f"simulating {args.simulate} aircraft (seed {args.seed}, anomaly rate {args.anomaly_rate:g})"
        faults = initial_faults(args.fault or [], args.corrupt_rate)
    except (RecordingError, FaultError, ValueError) as error:
        raise fail(str(error)) from None
    if args.labels_out:
        Path(args.labels_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.labels_out).write_text("")
    state = FakeState(
        source=source, client_id=args.client_id, client_secret=args.client_secret,
        require_auth=args.require_auth, token_ttl_s=args.token_ttl, credits=args.credits,
        faults=faults, labels_out=Path(args.labels_out) if args.labels_out else None,
    )
    if not _port_free(args.host, args.port):
        raise fail(f"port {args.port} on {args.host} is already in use: choose another with --port")
    base = f"http://{args.host}:{args.port}"
    print(f"Fake OpenSky {what}\n  OPENSKY_URL={base}/api\n  OPENSKY_TOKEN_URL={base}/auth/realms/"
          "opensky-network/protocol/openid-connect/token", flush=True)
    logging.basicConfig(level=logging.WARNING)
    server = make_app(state)
    if isinstance(source, ReplaySource):
        reporter = ProgressReporter(lambda: replay_progress_line(source.progress()), "opensky-fake: ")

        async def report(_app) -> None:
            async def loop() -> None:
                while True:
                    await asyncio.sleep(1.0)
                    reporter.tick()

            task = asyncio.get_running_loop().create_task(loop())
            yield
            task.cancel()

        server.cleanup_ctx.append(report)
    web.run_app(server, host=args.host, port=args.port, print=None, access_log=None)


def _port_free(host: str, port: int) -> bool:
    from flights_app.embedded.broker import port_is_free

    try:
        return port_is_free(host, port)
    except OSError as error:
        raise fail(f"cannot bind {host}:{port}: {error}") from None


# -- train / evaluate ---------------------------------------------------------------------

#: The default model's training run: `make model` runs exactly this.
TRAIN_DEFAULTS = {"aircraft": 300, "minutes": 60.0, "seed": 1}
#: Where the team's real recordings are (../shared/data beside the clone).
DEFAULT_DATA = Path("../shared/data")


def _data_dir(args) -> Path | None:
    """The recordings folder, or None with ``--no-data``; a missing folder is a clear error."""
    if args.no_data:
        return None
    data = Path(args.data)
    if not data.is_dir():
        raise fail(f"no recordings at {data}: pass --data DIR (the shared data folder) or --no-data "
                   "for simulated traffic only")
    return data


def _rows(polls, desc: str, total: int | None = None):
    from tqdm import tqdm

    from ml import dataset

    with tqdm(total=total, desc=desc, unit="poll", disable=None) as bar:
        return list(dataset.feature_rows(polls, bar))


def cmd_train(args: argparse.Namespace) -> None:
    from ml import dataset, model

    if args.estimators < 1 or not 0 < args.budget < 1 or args.aircraft < 1 or args.minutes <= 0:
        raise fail("--estimators and --aircraft must be >= 1, --minutes > 0 and --budget within (0, 1)")
    data = _data_dir(args)
    rows: dict[str, list] = {"train": [], "calibrate": []}
    for source in dataset.training_sources(args.aircraft, args.minutes, args.seed, data):
        try:
            rows[source.purpose] += _rows(source.polls, source.name, source.steps)
        except (OSError, ValueError) as error:
            raise fail(f"cannot read {source.name} in {data}: {error}") from None
    train_rows, calibrate_rows = rows["train"], rows["calibrate"]
    source, calibration_source = dataset.describe_sources(args.aircraft, args.minutes, args.seed, data)
    X, C = dataset.clean_features(train_rows), dataset.clean_features(calibrate_rows)
    if len(X) < 100 or len(C) < 100:
        raise fail(f"only {len(X)} clean training and {len(C)} calibration states: too few")
    print(f"training on {len(X)} clean states ({source})", flush=True)
    params = {"n_estimators": args.estimators, "random_state": args.seed}
    pipeline, scale = model.train(X, **params)
    calibration = {**model.calibrate(pipeline, scale, C, args.budget), "calibration_source": calibration_source}
    print(f"threshold {calibration['threshold']:.4f} (a share {args.budget:g} of {len(C)} held-out clean states "
          f"above it), alert threshold {calibration['alert_threshold']:.4f} (none above it)", flush=True)
    manifest = model.save(pipeline, Path(args.out), scale=scale, calibration=calibration, training_rows=len(X),
                          source=source, params=params)
    print(f"model {manifest['version']} written to {args.out} (+ manifest {Path(args.out).with_suffix('.json').name}); "
          "measure it with `flights-app evaluate`")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from flights_app.pages import replace_between
    from ml import evaluate, model

    try:
        loaded = model.load(Path(args.model))
    except model.ModelError as error:
        raise fail(str(error)) from None
    data = _data_dir(args)
    report = evaluate.run(loaded, data, quick=args.quick, say=lambda line: print(line, file=sys.stderr, flush=True))
    tables = evaluate.markdown(report)
    print(tables)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.docs:
        try:
            replace_between(Path(args.docs), evaluate.DOC_START, evaluate.DOC_END, tables)
        except (OSError, ValueError) as error:
            raise fail(f"cannot write the report into {args.docs}: {error}") from None
        print(f"report written into {args.docs}", file=sys.stderr)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of the real recordings (default %(default)s)")
    parser.add_argument("--no-data", action="store_true", help="simulated traffic only")


# -- up -----------------------------------------------------------------------------------


def probe_opensky(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the API answers at all (even 401/429); else why it does not."""
    probe = f"{url.rstrip('/')}/states/all?lamin=0&lomin=0&lamax=0.1&lomax=0.1"
    try:
        with urllib.request.urlopen(probe, timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


class Child:
    """A process started by ``up``, stopped by SIGTERM and, if stuck, SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict):
        self.name = name
        # In its own session: a Ctrl-C in the terminal reaches `up` alone, which stops the children in
        # order (a child interrupted while it imports would only print a traceback).
        self.process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                                        start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            print(f"flights-app: {self.name} did not stop in {STOP_GRACE_S:.0f} s; killing it", file=sys.stderr)
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cmd_up(args: argparse.Namespace) -> None:
    # Ctrl-C stops everything from the first second, even when `up` was started with SIGINT ignored
    # (what a shell does to a command it runs in the background without job control, and Python then
    # keeps): once the worker has started, _stop_on_signal takes the signal over.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = _settings()
    env = dict(os.environ)
    broker: EmbeddedBroker | None = None
    children: list[Child] = []
    logins: dict[str, dict[str, str]] = {}  # service -> its Kafka login, with a SASL embedded broker
    me = [sys.executable, "-m", "flights_app.cli"]

    def stop_all() -> None:
        for child in reversed(children):
            child.stop()
        if broker is not None:
            print("flights-app: stopping the embedded Kafka...", flush=True)
            broker.stop()

    try:
        if settings.uses_embedded_broker:
            if accepts_connections("127.0.0.1", settings.embedded_broker_port):
                print(f"flights-app: using the Kafka already listening on 127.0.0.1:{settings.embedded_broker_port}")
            else:
                broker = _embedded_broker(settings)
                print(f"flights-app: starting the embedded Kafka on {broker.bootstrap} "
                      f"(log: {broker.log_file})...", flush=True)
                broker.start()
            env["FLIGHTS_BROKER"] = settings.broker_url
            if settings.embedded_broker_sasl:  # each service logs in as its own principal, with its ACLs
                secured = broker or _embedded_broker(settings)
                print(f"flights-app: the embedded Kafka asks for logins (passwords in {secured.users_dir}); "
                      "granting the worker and the dashboard their ACLs...", flush=True)
                secured.grant(settings.app_id, settings.topic_prefix)
                logins = {name: secured.login_settings(name) for name in ("worker", "dashboard")}

        source = args.source
        if source == "auto":
            why = probe_opensky(settings.opensky_url)
            if why is None:
                source = "live"
            else:
                print(f"flights-app: OpenSky at {settings.opensky_url} does not answer ({why}); "
                      "starting the bundled fake OpenSky server in simulator mode instead", flush=True)
                source = "sim"
        if source in ("sim", "replay"):
            port = _free_port()
            fake = [*me, "opensky-fake", "--port", str(port)]
            if source == "sim":
                fake += ["--simulate", str(args.aircraft), "--seed", "1",
                         "--labels-out", str(settings.datadir / "fake-opensky-labels.jsonl")]
            else:
                fake += ["--replay", args.replay_path, "--shift-to-present", "--loop"]
            children.append(Child("fake OpenSky", fake, env))
            env["OPENSKY_URL"] = f"http://127.0.0.1:{port}/api"
            env["OPENSKY_TOKEN_URL"] = f"http://127.0.0.1:{port}/auth/realms/opensky-network/protocol/openid-connect/token"
            env.setdefault("FLIGHTS_DAILY_CREDITS", "0")
            if "FLIGHTS_POLL_INTERVAL" not in os.environ:
                env["FLIGHTS_POLL_INTERVAL"] = str(SIM_POLL_INTERVAL_S if source == "sim" else REPLAY_POLL_INTERVAL_S)
            deadline = time.monotonic() + 30
            while not accepts_connections("127.0.0.1", port):
                if not children[-1].alive() or time.monotonic() > deadline:
                    raise fail("the fake OpenSky server did not start")
                time.sleep(0.1)
        print(f"flights-app: source = {source} ({env.get('OPENSKY_URL', settings.opensky_url)})", flush=True)

        children.append(Child("worker", [*me, "worker"], {**env, **logins.get("worker", {})}))
        children.append(Child("dashboard", [*me, "dashboard"], {**env, **logins.get("dashboard", {})}))
        children.append(Child("history writer", [*me, "history-writer"], {**env, **logins.get("worker", {})}))
        stop = _stop_on_signal()  # from here on Ctrl-C is a normal stop, before the line that says so
        print(f"flights-app: worker started; web endpoints on http://{settings.web_bind}:{settings.web_port}/; "
              f"dashboard on http://{settings.web_bind}:{settings.dashboard_port}/ (Ctrl-C stops everything)",
              flush=True)
        _supervise(children, stop, _replay_progress(port) if source == "replay" else None)
    except BrokerError as error:
        stop_all()
        raise fail(str(error)) from None
    except KeyboardInterrupt:  # Ctrl-C while starting (afterwards _stop_on_signal takes it)
        stop_all()
        print("flights-app: interrupted while starting; stopped.", flush=True)
        raise SystemExit(130) from None
    except BaseException:
        stop_all()
        raise
    stop_all()
    print("flights-app: stopped.", flush=True)


#: A replay's progress line, every this many seconds on a terminal, and once a minute in a log or a pipe.
PROGRESS_EVERY_S = {True: 15.0, False: 60.0}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def replay_progress_line(progress: dict) -> str | None:
    """One line saying how far a replay has got (the fake server's ``/_fake/stats`` ``replay``):
    polls served of the total, states per second so far, and the time the pass still takes."""
    polls, served, loop = progress["polls"], progress["served"], progress["loop"]
    if progress.get("finished"):
        return f"replay: all {polls} polls served; the recording is finished"
    if served == 0:
        return None
    line = f"replay: poll {served} of {polls} ({served / polls:.0%})"
    if progress.get("elapsed_s"):
        line += f", {progress['states'] / progress['elapsed_s']:,.0f} states/s"
    if progress.get("time_left_s") is not None:
        line += f", about {_duration(progress['time_left_s'])} left"
    return line + (f" (pass {loop} over the recording)" if loop > 1 else "")


class ProgressReporter:
    """Prints ``line()`` (None: nothing to say) when it changed, every PROGRESS_EVERY_S: often on a
    terminal, once a minute when the output is a log or a pipe."""

    def __init__(self, line, prefix: str, stream=None, clock=time.monotonic):
        self.line, self.prefix, self.clock = line, prefix, clock
        self.stream = stream or sys.stdout
        self.every = PROGRESS_EVERY_S[self.stream.isatty()]
        self.next = clock() + self.every
        self.last: str | None = None

    def tick(self) -> None:
        if self.clock() < self.next:
            return
        self.next = self.clock() + self.every
        text = self.line()
        if text is not None and text != self.last:
            print(f"{self.prefix}{text}", file=self.stream, flush=True)
            self.last = text


def _replay_progress(port: int):
    """A function giving the replay's progress line (None when the fake server does not answer)."""
    def line() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=2) as response:
                progress = json.load(response).get("replay")
        except (OSError, ValueError):
            return None
        return replay_progress_line(progress) if progress else None

    return line


def _stop_on_signal() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets, from now on."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _supervise(children: list[Child], stop: threading.Event, progress=None) -> None:
    """Return when ``stop`` is set (Ctrl-C / SIGTERM), or when any child exits on its own; report
    ``progress()`` (a replay's line) as ProgressReporter does."""
    reporter = ProgressReporter(progress, "flights-app: ") if progress is not None else None
    while not stop.wait(0.5):
        if reporter is not None:
            reporter.tick()
        for child in children:
            if not child.alive():
                print(f"flights-app: the {child.name} exited with code {child.process.returncode}; "
                      "stopping the rest", file=sys.stderr, flush=True)
                return


# -- probe (container health checks) ------------------------------------------------------


def cmd_probe(args: argparse.Namespace) -> None:
    """Exit 0 if ``args.url`` answers 2xx within the timeout; else one line saying why, exit 1.
    (The image has no curl; the compose file's health checks run this.)"""
    import urllib.error
    import urllib.request

    if not args.url.startswith(("http://", "https://")):
        raise fail(f"{args.url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise fail(f"{args.url}: {getattr(error, 'reason', error)}") from None
    if not 200 <= status < 300:
        raise fail(f"{args.url}: HTTP {status}")


def cmd_dev_secrets(args: argparse.Namespace) -> None:
    """Write the missing files of a development set of secrets; say which, never what they hold."""
    from flights_app import dev_secrets

    try:
        written = dev_secrets.write(Path(args.out))
    except OSError as error:
        raise fail(f"cannot write secrets into {args.out}: {error.strerror or error}") from None
    except dev_secrets.SecretsError as error:
        raise fail(str(error)) from None
    for path, now in written:
        who = "public" if path.name == dev_secrets.CA_FILE else "owner-only"
        print(f"flights-app: {path} {f'written ({who})' if now else 'kept (remove it to make a new one)'}")
    print(f"flights-app: the dashboard's user is {dev_secrets.DASHBOARD_USER!r}; its password is in "
          f"{Path(args.out) / 'dashboard-users.json'}")


# -- main ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flights-app", description="Real-time flight tracking on Faust.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the broker (if embedded), the source and the worker")
    up.add_argument("--source", choices=("auto", "live", "sim", "replay"), default="auto",
                    help="auto: the real OpenSky if it answers, else the simulator (default)")
    up.add_argument("replay_path", nargs="?", metavar="FILE", help="recording to replay with --source replay")
    up.add_argument("--aircraft", type=int, default=SIM_AIRCRAFT, help="simulated aircraft (default %(default)s)")

    sub.add_parser("worker", help="the Faust worker; other options go to `faust worker`", add_help=False)

    sub.add_parser("dashboard", help="the live Panel dashboard over the output topics "
                                     "(FLIGHTS_WEB_BIND, FLIGHTS_DASHBOARD_PORT)")
    broker = sub.add_parser("broker", help="run the embedded Kafka broker alone")
    broker.add_argument("--port", type=int, help="client port (default FLIGHTS_EMBEDDED_BROKER_PORT, 9092)")
    broker.add_argument("--data-dir", help="storage directory (default $FLIGHTS_DATADIR/kafka)")

    from ml.model import DEFAULT_MODEL

    train = sub.add_parser("train", help="fit the anomaly model (StandardScaler + IsolationForest)")
    train.add_argument("--aircraft", type=int, default=TRAIN_DEFAULTS["aircraft"])
    train.add_argument("--minutes", type=float, default=TRAIN_DEFAULTS["minutes"])
    train.add_argument("--seed", type=int, default=TRAIN_DEFAULTS["seed"])
    train.add_argument("--estimators", type=int, default=200)
    train.add_argument("--budget", type=float, default=0.001,
                       help="share of held-out clean states the model may flag (default %(default)s)")
    train.add_argument("--out", default=str(DEFAULT_MODEL), help="model file (default %(default)s)")
    _add_data_options(train)

    evaluate = sub.add_parser("evaluate", help="the model, the rules and both on labelled and real traffic")
    evaluate.add_argument("--model", default=str(DEFAULT_MODEL))
    evaluate.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    evaluate.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    evaluate.add_argument("--docs", metavar="PAGE", help="write the report's tables into PAGE between its "
                          "<!-- evaluate:start --> and <!-- evaluate:end --> markers")
    _add_data_options(evaluate)

    fake = sub.add_parser("opensky-fake", help="run the OpenSky-compatible fake server")
    what = fake.add_mutually_exclusive_group(required=True)
    what.add_argument("--simulate", type=int, metavar="N", help="simulate N aircraft")
    what.add_argument("--replay", metavar="PATH", help="replay a recording (file, directory or zip)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8081)
    fake.add_argument("--seed", type=int, default=1)
    fake.add_argument("--anomaly-rate", type=float, default=0.01,
                      help="share of airborne states with an injected anomaly")
    fake.add_argument("--labels-out", metavar="FILE", help="append anomaly labels here as JSON lines")
    fake.add_argument("--pace", choices=("clock", "request"), default="clock",
                      help="replay: move on with the clock at the recorded cadence (from the first request on), "
                           "or one poll per request")
    fake.add_argument("--speed", type=float, default=1.0, help="replay: cadence multiplier")
    fake.add_argument("--loop", action="store_true", help="replay: start again at the end (times keep increasing)")
    fake.add_argument("--shift-to-present", action="store_true", help="replay: move timestamps to now")
    fake.add_argument("--client-id", help="accept only this OAuth2 client (default: any)")
    fake.add_argument("--client-secret", help="its secret")
    fake.add_argument("--require-auth", action="store_true", help="refuse anonymous calls")
    fake.add_argument("--token-ttl", type=float, default=1800.0, help="token lifetime, seconds")
    fake.add_argument("--credits", type=int, default=0, help="credits per reset period; 0 = unlimited")
    fake.add_argument("--fault", action="append", metavar="KIND[:ARG]",
                      help="queue a fault for the next request (repeatable): 429:S 500 502 503 slow:S "
                           "malformed truncated big empty duplicate future past disconnect")
    fake.add_argument("--corrupt-rate", type=float, default=0.0, help="share of rows with a corrupted field")
    dev = sub.add_parser("dev-secrets", help="write a development set of the deployment's secrets (make secrets)")
    dev.add_argument("--out", default="secrets", help="directory (default %(default)s)")
    history_commands.add_parsers(sub)
    probe = sub.add_parser("probe", help="exit 0 if the URL answers 2xx (container health checks)")
    probe.add_argument("url")
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds (default %(default)s)")
    return parser


def cmd_dashboard() -> None:
    settings = _settings()
    if settings.dashboard_problem() is not None:
        raise fail(f"configuration error: {settings.dashboard_problem()}")
    import panel as pn

    from web.dashboard import app as dashboard_app
    from web.dashboard.app import create

    address, port = settings.web_bind, settings.dashboard_port
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the feed says Offline and why, once per attempt
    login = {}
    if settings.dashboard_auth_file is not None:  # Panel's login page; the session cookie signed anew each start
        login = {"basic_auth": str(settings.dashboard_auth_file), "cookie_secret": secrets.token_urlsafe(32),
                 "basic_login_template": str(Path(dashboard_app.__file__).with_name("templates") / "login.html")}
    print(f"flights-app: dashboard on http://{address}:{port}/"
          f"{' (login: the users of FLIGHTS_DASHBOARD_AUTH_FILE)' if login else ''} (Ctrl-C stops it)", flush=True)
    pn.serve({"/": create}, address=address, port=port, show=False, title="flights-app",
             websocket_origin=[f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}",
                               *settings.dashboard_origins], **login)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":  # everything after goes to Faust's own worker command
        return cmd_worker(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "up":
        if args.source == "replay" and not args.replay_path:
            raise fail("--source replay needs a recording: flights-app up --source replay FILE")
        if args.replay_path and args.source != "replay":
            raise fail(f"a FILE ({args.replay_path}) only goes with --source replay")
        if args.replay_path and not Path(args.replay_path).exists():
            raise fail(f"{args.replay_path}: no such file or directory")
        cmd_up(args)
    elif args.command == "dashboard":
        cmd_dashboard()
    elif args.command == "broker":
        cmd_broker(args)
    elif args.command == "opensky-fake":
        cmd_opensky_fake(args)
    elif args.command == "train":
        cmd_train(args)
    elif args.command == "evaluate":
        cmd_evaluate(args)
    elif args.command == "probe":
        cmd_probe(args)
    elif args.command == "dev-secrets":
        cmd_dev_secrets(args)
    elif args.command == "history-writer":
        history_commands.cmd_history_writer(_settings())
    elif args.command == "history":
        history_commands.cmd_history(_settings(), args, fail)


if __name__ == "__main__":
    main()
