"""The command line as a user meets it: clear one-line errors, and `up` starting and stopping everything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flights_app.embedded.broker import BrokerError, EmbeddedBroker
from flights_app.history.store import HistoryStore
from tests.conftest import KAFKA_LIB
from tests.harness import ROOT, Proc, free_port, free_port_pair, wait_until

FLIGHTS_APP = [sys.executable, "-m", "flights_app.cli"]


def run(argv, env_extra=None, env=None, timeout=60):
    env = dict(os.environ if env is None else env)
    env.update(env_extra or {})
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def assert_one_clear_line(result, *words):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("argv", [
    FLIGHTS_APP + ["worker"],
    [sys.executable, "-m", "faust", "-A", "flights_app.app", "worker", "-l", "info"],
])
def test_a_bad_setting_stops_the_worker_with_one_line(argv):
    result = run(argv, {"FLIGHTS_WEB_PORT": "sixty"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "configuration error: FLIGHTS_WEB_PORT='sixty' is not a whole number" in result.stderr


def test_up_names_what_is_missing():
    assert_one_clear_line(run(FLIGHTS_APP + ["up", "--source", "replay"]), "--source replay needs a recording")
    assert_one_clear_line(run(FLIGHTS_APP + ["up", "--source", "replay", "/nonexistent.zip"]), "no such file")
    assert_one_clear_line(run(FLIGHTS_APP + ["up"], {"FLIGHTS_BBOX": "north"}), "FLIGHTS_BBOX")


def test_fake_server_refuses_a_bad_recording_and_a_busy_port(tmp_path):
    assert_one_clear_line(run(FLIGHTS_APP + ["opensky-fake", "--replay", str(tmp_path)]), "holds no")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(FLIGHTS_APP + ["opensky-fake", "--simulate", "3", "--port", str(port)])
    assert_one_clear_line(result, f"port {port}", "already in use")
    assert_one_clear_line(run(FLIGHTS_APP + ["opensky-fake", "--simulate", "3", "--fault", "boom"]), "unknown fault")


def test_broker_on_a_busy_port_says_which_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(FLIGHTS_APP + ["broker", "--port", str(port), "--data-dir", str(tmp_path)],
                     {"FLIGHTS_KAFKA_LIB": str(KAFKA_LIB)})
    assert_one_clear_line(result, f"port {port}", "already in use")


def test_broker_without_java_says_what_to_install(tmp_path):
    env = {k: v for k, v in os.environ.items()}
    env["PATH"] = str(Path(sys.executable).parent)  # no java on this PATH
    result = run(FLIGHTS_APP + ["broker", "--port", str(free_port()), "--data-dir", str(tmp_path)], env=env)
    assert_one_clear_line(result, "Java is not installed", "apt-get install openjdk-17-jre-headless")


def test_embedded_broker_keeps_its_topics_across_a_restart(tmp_path):
    """Storage is formatted once; a second start reuses it."""
    broker = EmbeddedBroker(tmp_path / "kafka", free_port_pair(), lib_dir=KAFKA_LIB)
    broker.start()
    try:
        import asyncio

        from aiokafka import AIOKafkaProducer

        async def produce():
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await producer.start()
            await producer.send_and_wait("kept", b"hello")
            await producer.stop()

        asyncio.run(produce())
        broker.stop()
        assert not broker.running
        broker.start()
        assert [v for _, v in read_topic_raw(broker.bootstrap, "kept")] == [b"hello"]
    finally:
        broker.stop()
    with pytest.raises(BrokerError, match="already in use"):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", broker.port))
            busy.listen()
            broker.start()


def read_topic_raw(bootstrap, topic):
    import asyncio

    from aiokafka import AIOKafkaConsumer

    async def read():
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id=None, consumer_timeout_ms=1000)
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=10000)
            return [(r.key, r.value) for records in batch.values() for r in records]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def processes_with_marker(marker: str) -> list[int]:
    """Pids whose environment carries ``marker`` (everything `up` started inherits it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_up_on_embedded_defaults_shows_states_and_ctrl_c_stops_everything(tmp_path):
    """The newcomer's path: no broker, no internet. `up` starts Kafka, the simulator, the worker and the
    dashboard; states flow with count lines; Ctrl-C stops every process it started."""
    marker = f"FLIGHTS_UP_TEST_{os.getpid()}_{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLIGHTS_", "OPENSKY_"))}
    env.update({
        marker: "1",
        "FLIGHTS_DATADIR": str(tmp_path / "var"),
        "FLIGHTS_EMBEDDED_BROKER_PORT": str(free_port_pair()),
        "FLIGHTS_WEB_PORT": str(web_port := free_port()),
        "FLIGHTS_DASHBOARD_PORT": str(dashboard_port := free_port()),
        "FLIGHTS_HISTORY_PORT": str(free_port()),
        "FLIGHTS_KAFKA_LIB": str(KAFKA_LIB),
        "OPENSKY_URL": f"http://127.0.0.1:{free_port()}/api",  # nothing listens: like an offline machine
    })
    up = Proc("up", FLIGHTS_APP + ["up"], env, tmp_path / "up.log")
    try:
        wait_until(lambda: re.search(r"poll \S+ .*: \d+ states -> [1-9]\d* valid", up.log_text()), 90,
                   "a poll line with valid states")
        text = up.log_text()
        assert "does not answer" in text and "starting the bundled fake OpenSky server in simulator mode" in text
        assert len(processes_with_marker(marker)) >= 5  # up, the fake server, the worker, the dashboard, the
        # history writer (+ Kafka); the scored states reach the history
        wait_until(lambda: HistoryStore(tmp_path / "var" / "history").files("states"), 90,
                   "a history file of scored states")
        icao24, when = _a_state_in_the_history(tmp_path / "var" / "history")
        track = _web_json(f"http://127.0.0.1:{web_port}/history/aircraft/{icao24}/?from={when - 1}&to={when + 1}")
        assert track[0] == 200 and when in [row["event_time"] for row in track[1]["rows"]], track
        refused = _web_json(f"http://127.0.0.1:{web_port}/history/area/?bbox=1,2,3&at=now")
        assert refused[0] == 400 and "lamin,lomin,lamax,lomax" in refused[1]["error"], refused
        # a page is a new dashboard session, built in seconds (8-13 s beside another test's stack): one
        # request waits for it, rather than several given up on, each building another
        wait_until(lambda: "flights-app: live air traffic" in urllib.request.urlopen(
            f"http://127.0.0.1:{dashboard_port}/", timeout=60).read().decode(), 120, "the dashboard page")
        up.process.send_signal(signal.SIGINT)
        up.process.wait(90)
        assert up.process.returncode == 0, up.tail()
        wait_until(lambda: not processes_with_marker(marker), 30, "every process `up` started to exit")
        assert "flights-app: stopped." in up.log_text()
        asked = run(FLIGHTS_APP + ["history", "aircraft", icao24, "--from", str(when), "--to", str(when + 1),
                                   "--csv", str(tmp_path / "track.csv")], env=env)
        assert asked.returncode == 0 and f"{icao24}," in (tmp_path / "track.csv").read_text(), asked.stderr
        assert_one_clear_line(run(FLIGHTS_APP + ["history", "aircraft", icao24, "--from", "yesterday", "--to",
                                                 "now"], env=env), "expected Unix seconds or ISO 8601")
    finally:
        up.kill()
        for pid in processes_with_marker(marker):
            os.kill(pid, signal.SIGKILL)


def _a_state_in_the_history(root) -> tuple[str, float]:
    """The (icao24, event time) of one state the history writer has kept."""
    import pyarrow.parquet as pq

    table = pq.read_table(HistoryStore(root).files("states")[0], columns=["icao24", "event_time"])
    return table["icao24"][0].as_py(), table["event_time"][0].as_py()


def _web_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_train_writes_a_calibrated_model_and_evaluate_writes_its_report(tmp_path):
    out, report_path, page = tmp_path / "m.joblib", tmp_path / "report.json", tmp_path / "page.md"
    trained = run(FLIGHTS_APP + ["train", "--aircraft", "20", "--minutes", "3", "--estimators", "20", "--no-data",
                                 "--budget", "0.01", "--out", str(out)], timeout=300)
    assert trained.returncode == 0, trained.stderr
    import json

    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["training_rows"] > 100 and manifest["params"]["n_estimators"] == 20
    assert manifest["false_alarm_budget"] == 0.01 and manifest["threshold"] < manifest["alert_threshold"]
    assert len(manifest["residual_scale"]) == len(manifest["features"])
    page.write_text("# page\n\n<!-- evaluate:start -->\nSTALE-CONTENT\n<!-- evaluate:end -->\n\nafter\n")
    evaluated = run(FLIGHTS_APP + ["evaluate", "--model", str(out), "--quick", "--no-data", "--json", str(report_path),
                                   "--docs", str(page)], timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(report_path.read_text())  # the sections on real data: the shipped model's test
    assert "simulated" in report and "unusual" not in report
    assert set(report["simulated"]["by_kind"]) == {"speed_spike", "altitude_jump", "position_jump",
                                                   "emergency_squawk", "frozen_position", "impossible_vertical_rate"}
    assert report["simulated"]["overall"]["rules"]["recall"] > 0.9  # the rules catch what physics says
    for method in ("model", "rules", "both"):
        assert method in evaluated.stdout
    text = page.read_text()
    assert "STALE-CONTENT" not in text and text.endswith("<!-- evaluate:end -->\n\nafter\n")
    assert "| speed spike |" in text
    assert_one_clear_line(run(FLIGHTS_APP + ["evaluate", "--model", str(out), "--data", str(tmp_path / "none")]),
                          "no recordings at")


def test_evaluate_refuses_a_model_without_its_manifest(tmp_path):
    (tmp_path / "m.joblib").write_bytes(b"not a model")
    assert_one_clear_line(run(FLIGHTS_APP + ["evaluate", "--model", str(tmp_path / "m.joblib")]),
                          "missing: a model is only loaded with its manifest")


def test_every_log_level_the_settings_accept_starts_the_worker_command():
    from flights_app.cli import FAUST_LOG_LEVELS
    from flights_app.settings import _LOG_LEVELS

    assert set(FAUST_LOG_LEVELS) == set(_LOG_LEVELS)
    result = run(FLIGHTS_APP + ["worker", "--help"], {"FLIGHTS_LOG_LEVEL": "warning"})
    assert result.returncode == 0 and "Usage" in result.stdout


@pytest.mark.parametrize("point, said", [
    ("flights-app: starting the embedded Kafka", "flights-app: interrupted while starting; stopped."),
    # The worker and the dashboard have just been spawned: they are importing their modules.
    ("flights-app: worker started;", "flights-app: stopped."),
])
def test_ctrl_c_while_up_is_starting_stops_everything_without_a_traceback(tmp_path, point, said):
    """Ctrl-C in a terminal interrupts the whole foreground process group, here at two points of `up`'s
    start-up (while Kafka starts; while the worker and dashboard import): `up` stops what it started,
    says so in one line, and every process and port it started is gone. Also when it was started with
    SIGINT ignored (a shell's background command: the CI run that found this ignored the Ctrl-C)."""
    marker = f"FLIGHTS_UP_TEST_{os.getpid()}_{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLIGHTS_", "OPENSKY_"))}
    ports = {"FLIGHTS_EMBEDDED_BROKER_PORT": free_port_pair(), "FLIGHTS_WEB_PORT": free_port(),
             "FLIGHTS_DASHBOARD_PORT": free_port(), "FLIGHTS_HISTORY_PORT": free_port()}
    env.update({marker: "1", "FLIGHTS_DATADIR": str(tmp_path / "var"), "FLIGHTS_KAFKA_LIB": str(KAFKA_LIB),
                "OPENSKY_URL": f"http://127.0.0.1:{free_port()}/api", **{k: str(v) for k, v in ports.items()}})
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen(FLIGHTS_APP + ["up"], env=env, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True,  # its own process group, as in a terminal
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        wait_until(lambda: point in log.read_text(), 60, f"up to say {point!r}")
        os.killpg(up.pid, signal.SIGINT)
        up.wait(60)
        text = log.read_text()
        assert up.returncode == (130 if "interrupted" in said else 0), text
        assert "Traceback" not in text and said in text, text
        wait_until(lambda: not processes_with_marker(marker), 30, "every process `up` started to exit")
        for name, port in ports.items():
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} {port} still accepts connections"
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        for pid in processes_with_marker(marker):
            os.kill(pid, signal.SIGKILL)
