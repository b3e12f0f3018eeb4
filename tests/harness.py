"""Real processes for integration tests: the fake OpenSky server, workers, and a topic reader.

Everything waits on a condition with a deadline, and everything started is stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A port whose successor is free too (the embedded broker's controller)."""
    for _ in range(100):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of ports")


class WorkerDied(AssertionError):
    """Raised from inside a wait: no point waiting longer."""


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except WorkerDied:
            raise
        except Exception as error:  # the condition may fail while things start
            last_error = error
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}" +
                         (f" (last error: {last_error!r})" if last_error else ""))


async def async_wait_until(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05):
    """``wait_until`` inside an event loop: the loop runs while the condition is polled."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(interval_s)
    return result


def http_json(url: str, body: dict | None = None, timeout_s: float = 5.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, str, dict | list | str]:
    """(status, content type, body: decoded JSON when it is JSON) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status, ctype, raw = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        status, ctype, raw = error.code, error.headers.get_content_type(), error.read()
    text = raw.decode()
    return status, ctype, json.loads(text) if ctype == "application/json" else text


class Proc:
    """A child process with its output in a file, stopped by SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def agent_stacks(self, timeout_s: float = 15.0, most_chars: int = 8000) -> str:
        """Where each asyncio task running the app's code waits now (the worker logs it on SIGUSR1:
        flights_app/worker.py): evidence for a test that timed out waiting on a worker."""
        if not self.alive():
            return "(not running)"
        start = len(self.log_text())
        self.process.send_signal(signal.SIGUSR1)
        try:
            wait_until(lambda: "tasks listed (kill -USR1)" in self.log_text()[start:], timeout_s,
                       "the worker's task dump", 0.2)
        except AssertionError:  # a partial dump is still evidence
            pass
        text = self.log_text()[start:]
        ours = [line.split("] ", 3)[-1] for line in text.splitlines()
                if " waits at: " in line and any(f"{ROOT}/{package}/" in line for package in ("agents", "tables"))
                or "] consumer: " in line or "consumer thread task" in line and "aiokafka" in line]
        return "\n".join(line.replace(str(ROOT) + "/", "") for line in ours)[:most_chars] \
            or "(no task waits in the app's code)"

    stopped = False  # set when the test stopped it on purpose

    def stop(self, timeout_s: float = 30.0) -> int:
        self.stopped = True
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        self.stopped = True
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def discard(self) -> None:
        """At a test's end: killed with everything it started (nothing a clean stop gives is needed)."""
        self.kill()
        self._log.close()


class FakeOpenSky(Proc):
    def __init__(self, tmp: Path, *args: str):
        self.port = free_port()
        super().__init__("fake-opensky", [PYTHON, "-m", "flights_app.cli", "opensky-fake", "--port",
                                          str(self.port), *args], dict(os.environ), tmp / "fake-opensky.log")
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: self._up(), 30, "the fake OpenSky server to listen")

    def _up(self) -> bool:
        if not self.alive():
            raise AssertionError(f"fake OpenSky exited:\n{self.tail()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def api_url(self) -> str:
        return f"{self.base}/api"

    @property
    def token_url(self) -> str:
        return f"{self.base}/auth/realms/opensky-network/protocol/openid-connect/token"

    def stats(self) -> dict:
        return http_json(f"{self.base}/_fake/stats")

    def labels(self) -> list[dict]:
        return http_json(f"{self.base}/_fake/labels")

    def control(self, **body) -> dict:
        return http_json(f"{self.base}/_fake/control", body)


class TestApp:
    """A fresh app id, topic prefix and data directory: one test's own app on the shared broker."""

    __test__ = False  # not a pytest test class

    def __init__(self, tmp: Path, broker_url: str, **env: str):
        tag = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.prefix = f"t{tag}-"
        self.broker_url = broker_url
        self.env = dict(os.environ)
        self.env.update({
            "FLIGHTS_BROKER": broker_url,
            "FLIGHTS_APP_ID": f"test-{tag}",
            "FLIGHTS_TOPIC_PREFIX": self.prefix,
            "FLIGHTS_DAILY_CREDITS": "0",
            "FLIGHTS_LOG_LEVEL": "info",
            # A killed worker's partitions go to its successor after 15 s instead of 60.
            "FLIGHTS_SESSION_TIMEOUT": "15",
            "FLIGHTS_TOPIC_PARTITIONS": "4",
        })
        self.env.update(env)
        self.workers: list[Proc] = []

    def topic(self, base: str) -> str:
        return self.prefix + base

    @property
    def partitions(self) -> int:
        """The partitions of each of the app's topics."""
        return int(self.env["FLIGHTS_TOPIC_PARTITIONS"])

    def start_worker(self, name: str = "worker", **env: str) -> Proc:
        worker_env = dict(self.env)
        worker_env.setdefault("FLIGHTS_DATADIR", str(self.tmp / name))
        worker_env.setdefault("FLIGHTS_WEB_PORT", str(free_port()))
        worker_env.update(env)
        worker = Proc(name, [PYTHON, "-m", "flights_app.cli", "worker"], worker_env, self.tmp / f"{name}.log")
        worker.web_port = int(worker_env["FLIGHTS_WEB_PORT"])
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def discard(self) -> None:
        for worker in self.workers:
            worker.discard()

    def check_workers(self) -> None:
        for worker in self.workers:
            if not worker.stopped and not worker.alive():
                raise WorkerDied(f"{worker.name} exited with {worker.process.returncode}:\n{worker.tail()}")

    @property
    def bootstrap(self) -> str:
        return self.broker_url.removeprefix("kafka://")


#: bootstrap -> the aiokafka login options a test's reads of that broker use (a broker with SASL).
LOGINS: dict[str, dict] = {}


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[tuple[str | None, dict]]:
    """Every record now on ``topic`` (all partitions), as (key, decoded JSON value)."""
    return asyncio.run(read_topic_async(bootstrap, topic, timeout_s))


async def read_topic_async(bootstrap: str, topic: str, timeout_s: float = 30.0, places: bool = False):
    """``read_topic`` inside a running event loop; with ``places``, each record as (key, value,
    partition, offset)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None, **LOGINS.get(bootstrap, {}))
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout_s
        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} took longer than {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            for records in batches.values():
                for r in records:
                    key = r.key.decode() if r.key is not None else None
                    out.append((key, _decoded(r.value), r.partition, r.offset) if places else (key, _decoded(r.value)))
        return out
    finally:
        await consumer.stop()


def read_states(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[tuple[str, dict]]:
    """Every state now on ``flight-raw-data``'s ``topic``, as (icao24, state): batch records
    (flights_app.batches) unpacked, single states as they are."""
    out = []
    for key, value in read_topic(bootstrap, topic, timeout_s):
        if isinstance(value, dict) and value.get("kind") == "states":
            out += [(state["icao24"], state) for state in value["states"]]
        else:
            out.append((key, value))
    return out


def _decoded(value: bytes | None):
    """A record's JSON value; None for a tombstone; the text itself when it is not JSON."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value.decode("utf-8", errors="replace")


def topic_size(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (sum of its partitions' end offsets), without reading them."""
    async def size() -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                return 0
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(size())


async def group_offsets(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int | None, int]]:
    """Per partition of ``topic``: the consumer group ``group``'s committed offset (None: none) and the
    partition's end offset."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: (await consumer.committed(tp), ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


def committed_lags(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Per partition of ``topic``: how many records the consumer group ``group`` has not committed."""
    offsets = asyncio.run(group_offsets(bootstrap, group, topic))
    return {p: end - (committed or 0) for p, (committed, end) in offsets.items()}


def committed_lag(bootstrap: str, group: str, topic: str) -> int:
    """How many records of ``topic`` the consumer group ``group`` has not committed (all partitions)."""
    return sum(committed_lags(bootstrap, group, topic).values())


async def make_topics(bootstrap: str, names: list[str], partitions: int = 2) -> None:
    """Topics ``names`` on the broker at ``bootstrap``, ``partitions`` each, replication 1."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    finally:
        await admin.close()
