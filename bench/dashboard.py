"""The dashboard at the size of the sky: ``python -m bench.dashboard`` (also ``make bench-dashboard``).

For each number of aircraft, the dashboard is opened in headless Chromium and watched for a while
(90 s by default), and the table says what a person gets: the aircraft shown (markers plus the
density layer's count), the updates received per minute and the longest gap between two, the
browser's long tasks (the main thread blocked over 50 ms) and the share of time they block it, the
page's JS heap, and the dashboard process's CPU (share of one core) and RSS.

Two ways to feed it:
- ``stack``: ``flights-app up --source sim --aircraft N``, the whole system as a user starts it
  (the worker, the fake OpenSky, the history writer and the dashboard share the 2 cores);
- ``prepared``: a broker of its own and this process publishing what the worker would publish for N
  aircraft (each reporting every 10 s, moving; 1% flagged by the model; window records of the
  country dimension), so that the dashboard is measured without a worker taking the CPU.

The default plan: 12,000 and 20,000 aircraft on the stack, 40,000 prepared. ``--baseline DIR`` (a
checkout of other code, e.g. ``git worktree add /tmp/base <commit>``) runs each size twice, the
dashboard of that code then this one's, on the same feed's terms: the table shows both side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

from bench.pipeline import BenchError, cpu_s, rss_mb
from flights_app.embedded.broker import EmbeddedBroker, accepts_connections
from flights_app.topic_names import AGGREGATED, INVALID, PROCESSED
from tests.conftest import KAFKA_LIB
from tests.harness import PYTHON, Proc, free_port, free_port_pair, make_topics

CHROMIUM = os.environ.get("FLIGHTS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
BURST_GAP_S = 1.0
REPORT_EVERY_S = 10  # each aircraft's state interval in the prepared sky (OpenSky's anonymous cadence)
COUNTRIES = ("United States", "Germany", "United Kingdom", "France", "China", "Spain", "Canada", "Brazil",
             "India", "Japan", "Australia", "Italy", "Turkey", "Mexico", "Russian Federation", "Netherlands")

#: Installed in the page before it loads: every long task the browser reports.
OBSERVE = """window.__longtasks = [];
new PerformanceObserver(list => { for (const e of list.getEntries())
  window.__longtasks.push([performance.timeOrigin + e.startTime, e.duration]); })
  .observe({type: 'longtask', buffered: true});"""

#: What the map shows now: aircraft drawn as markers, aircraft counted in the density layer.
SHOWN = """() => { let markers = 0, density = 0;
  for (const m of Bokeh.documents[0]._all_models.values()) {
    if (m.type !== 'ColumnDataSource') continue;
    if (m.name === 'aircraft') for (const x of m.data.x) if (Number.isFinite(x)) markers++;
    if (m.name === 'density' && m.data.image) for (const img of m.data.image) for (const v of img) density += v;
  }
  return {markers, density}; }"""


class Sky:
    """``n`` aircraft flying straight at cruise, each reporting every REPORT_EVERY_S seconds."""

    def __init__(self, n: int, seed: int = 5):
        rng = np.random.default_rng(seed)
        self.n = n
        self.icao24 = [f"{0x300000 + i:06x}" for i in range(n)]
        self.callsign = [f"SKY{i:05d}" for i in range(n)]
        self.country = rng.integers(0, len(COUNTRIES), n)
        self.lat = rng.uniform(-55, 70, n)
        self.lon = rng.uniform(-180, 180, n)
        self.heading = rng.uniform(0, 360, n)
        self.speed = rng.uniform(120, 260, n)
        self.altitude = rng.uniform(0, 12000, n)
        self.slot = rng.integers(0, REPORT_EVERY_S, n)  # the second of the interval it reports in
        self.flagged = rng.random(n) < 0.01

    def due(self, second: int) -> np.ndarray:
        return np.flatnonzero(self.slot == second % REPORT_EVERY_S)

    def records(self, now: float) -> list[bytes]:
        """The states of the aircraft due this second, moved on by one interval, as scored records."""
        due = self.due(int(now))
        step = self.speed[due] * REPORT_EVERY_S / 111_000.0
        rad = np.radians(self.heading[due])
        self.lat[due] = np.clip(self.lat[due] + step * np.cos(rad), -55, 70)
        self.lon[due] = (self.lon[due] + step * np.sin(rad) / np.maximum(0.2, np.cos(np.radians(self.lat[due])))
                         + 180) % 360 - 180
        out = []
        when = int(now)
        for i in due.tolist():
            flagged = bool(self.flagged[i])
            state = {"icao24": self.icao24[i], "callsign": self.callsign[i],
                     "origin_country": COUNTRIES[self.country[i]], "time_position": when, "last_contact": when,
                     "longitude": round(float(self.lon[i]), 4), "latitude": round(float(self.lat[i]), 4),
                     "baro_altitude": round(float(self.altitude[i]), 1), "on_ground": False,
                     "velocity": round(float(self.speed[i]), 1), "true_track": round(float(self.heading[i]), 1),
                     "vertical_rate": 0.0, "geo_altitude": round(float(self.altitude[i]) + 40, 1),
                     "squawk": "7700" if flagged and i % 7 == 0 else "2000", "ingest_time": now}
            out.append(orjson.dumps({
                "state": state, "features": {}, "flight_phase": "cruise",
                "ml_anomaly_score": 0.93 if flagged else 0.2, "ml_is_anomaly": flagged,
                "anomaly_reason": "velocity far from typical" if flagged else None,
                "alerts": ["emergency squawk 7700"] if flagged and i % 7 == 0 else [], "data_faults": [],
                "model_version": "bench", "processed_time": now}))
        return out

    def windows(self, now: float, window_s: int = 600) -> list[bytes]:
        """The current window's record per country, as the worker republishes it."""
        start = int(now) // window_s * window_s
        counts = np.bincount(self.country, minlength=len(COUNTRIES))
        seconds = int(now) - start + 1
        return [orjson.dumps({"dimension": "country", "name": name, "window_start": start,
                              "window_end": start + window_s, "events": int(counts[c]) * seconds // REPORT_EVERY_S,
                              "aircraft": int(counts[c]), "velocity_min": 120.0, "velocity_mean": 190.0,
                              "velocity_max": 260.0, "altitude_min": 0.0, "altitude_mean": 6000.0,
                              "altitude_max": 12000.0, "anomalies": int(counts[c]) // 100, "final": False,
                              "late_events": 0, "emitted_at": now})
                for c, name in enumerate(COUNTRIES)]


async def publish(bootstrap: str, prefix: str, sky: Sky, stop: threading.Event) -> None:
    """Every aircraft's state once at once (the last REPORT_EVERY_S seconds), then each second's states
    as the second comes."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=4 << 20)
    await producer.start()
    try:
        async def send(now: float) -> None:
            for value in sky.records(now):
                await producer.send(prefix + PROCESSED, value)
            if int(now) % 5 == 0:
                for value in sky.windows(now):
                    await producer.send(prefix + AGGREGATED, value)

        now = time.time()
        for back in range(REPORT_EVERY_S, 0, -1):  # every aircraft once, before the dashboard opens
            await send(now - back)
        await producer.flush()
        while not stop.is_set():
            now = time.time()
            await send(now)
            await asyncio.sleep(max(0.0, math.floor(now) + 1 - time.time()))
    finally:
        await producer.stop()


def watch(url: str, seconds: float, expected: int, say) -> dict:
    """Open ``url`` in headless Chromium, wait for the map to show aircraft, then measure ``seconds``."""
    from playwright.sync_api import sync_playwright

    updates: list[float] = []

    def on_socket(ws) -> None:
        def frame(payload) -> None:
            if isinstance(payload, str) and '"msgtype":"PATCH-DOC"' in payload.replace(" ", ""):
                updates.append(time.time())
        ws.on("framereceived", frame)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--enable-precise-memory-info"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.add_init_script(OBSERVE)
            page.on("websocket", on_socket)
            page.goto(url)
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60000)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                shown = page.evaluate(SHOWN)
                if shown["markers"] + shown["density"] >= 0.9 * expected:
                    break
                page.wait_for_timeout(1000)
            say(f"  page loaded, showing {shown}; measuring {seconds:.0f} s")
            page.wait_for_timeout(5000)  # the first draws are not the steady state
            start = time.time()
            page.wait_for_timeout(seconds * 1000)
            end = time.time()
            shown = page.evaluate(SHOWN)
            tasks = [(t / 1000, d) for t, d in page.evaluate("() => window.__longtasks")]
            heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : null")
        finally:
            browser.close()
    within = [d for t, d in tasks if start <= t <= end]
    # a refresh sends several messages at once: an update is a burst of them, apart from the last by 1 s
    messages = [t for t in updates if start <= t <= end]
    arrived = [t for k, t in enumerate(messages) if k == 0 or t - messages[k - 1] >= BURST_GAP_S]
    gaps = [b - a for a, b in zip([start, *arrived], [*arrived, end], strict=True)]
    return {"shown": shown["markers"] + int(shown["density"]), "markers": shown["markers"],
            "density": int(shown["density"]), "updates_per_min": round(len(arrived) * 60 / (end - start), 1),
            "longest_gap_s": round(max(gaps), 1), "long_tasks": len(within),
            "blocked_share": round(sum(within) / 1000 / (end - start), 3),
            "longest_task_ms": round(max(within, default=0.0)), "js_heap_mb": round(heap / 2**20, 1) if heap else None,
            "seconds": round(end - start, 1)}


def _dashboard_pid(parent: int) -> int | None:
    """The ``flights-app dashboard`` process among ``parent``'s children (``up`` starts it)."""
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            cmdline = (status.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == parent and b"dashboard" in cmdline:
            return int(status.parent.name)
    return None


def measure(pid: int, url: str, seconds: float, expected: int, say) -> dict:
    cpu, started = cpu_s(pid), time.monotonic()
    seen = watch(url, seconds, expected, say)
    used = (cpu_s(pid) - cpu) / (time.monotonic() - started)
    return {**seen, "dashboard_cpu_cores": round(used, 2), **rss_mb(pid)}


def _app(code: Path | None, *args: str) -> list[str]:
    """The command line of ``flights-app ARGS`` with the app's code from ``code`` (None: this checkout's)."""
    if code is None:
        return [PYTHON, "-m", "flights_app.cli", *args]
    return [PYTHON, "-c", f"import sys; sys.path.insert(0, {str(code)!r}); from flights_app.cli import main; main()",
            *args]


def run_prepared(n: int, seconds: float, tmp: Path, say, code: Path | None = None) -> dict:
    broker = EmbeddedBroker(tmp / "kafka", free_port_pair(), lib_dir=KAFKA_LIB, heap_mb=768, partitions=4)
    broker.start()
    stop, dashboard = threading.Event(), None
    prefix = f"d{uuid.uuid4().hex[:6]}-"
    try:
        asyncio.run(make_topics(broker.bootstrap, [prefix + t for t in (PROCESSED, AGGREGATED, INVALID)], 4))
        sky = Sky(n)
        feeder = threading.Thread(target=lambda: asyncio.run(publish(broker.bootstrap, prefix, sky, stop)),
                                  daemon=True)
        feeder.start()
        port = free_port()
        env = {**os.environ, "FLIGHTS_BROKER": broker.url, "FLIGHTS_TOPIC_PREFIX": prefix,
               "FLIGHTS_DASHBOARD_PORT": str(port), "FLIGHTS_WEB_PORT": str(free_port()),
               "FLIGHTS_DATADIR": str(tmp / "dashboard"), "FLIGHTS_LOG_LEVEL": "warning"}
        dashboard = Proc("dashboard", _app(code, "dashboard"), env, tmp / "dashboard.log")
        _wait_listening(dashboard, port)
        return {"aircraft": n, "feed": "prepared", **measure(dashboard.process.pid, f"http://127.0.0.1:{port}/",
                                                             seconds, n, say)}
    finally:
        stop.set()
        if dashboard is not None:
            dashboard.stop()
        broker.stop()


def run_stack(n: int, seconds: float, tmp: Path, say, code: Path | None = None) -> dict:
    port, broker_port = free_port(), free_port_pair()
    env = {**os.environ, "FLIGHTS_DASHBOARD_PORT": str(port), "FLIGHTS_WEB_PORT": str(free_port()),
           "FLIGHTS_HISTORY_PORT": str(free_port()), "FLIGHTS_EMBEDDED_BROKER_PORT": str(broker_port),
           "FLIGHTS_DATADIR": str(tmp / "up"), "FLIGHTS_HISTORY_DIR": str(tmp / "history"),
           "FLIGHTS_APP_ID": f"bench-{uuid.uuid4().hex[:6]}", "FLIGHTS_LOG_LEVEL": "warning"}
    log = open(tmp / "up.log", "wb")
    up = subprocess.Popen(_app(code, "up", "--source", "sim", "--aircraft", str(n)),  # its children: cwd's code
                          env=env, cwd=code, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        pid = None
        while time.monotonic() < deadline and up.poll() is None:
            pid = pid or _dashboard_pid(up.pid)
            if pid and accepts_connections("127.0.0.1", port):
                break
            time.sleep(0.5)
        else:
            raise BenchError(f"flights-app up did not start its dashboard:\n{(tmp / 'up.log').read_text()[-3000:]}")
        return {"aircraft": n, "feed": "stack", **measure(pid, f"http://127.0.0.1:{port}/", seconds, n, say)}
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        log.close()


def _wait_listening(proc: Proc, port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not accepts_connections("127.0.0.1", port):
        if not proc.alive() or time.monotonic() > deadline:
            raise BenchError(f"the dashboard did not start:\n{proc.tail()}")
        time.sleep(0.2)


COLUMNS = (("aircraft", "aircraft", "{:,}"), ("feed", "feed", "{}"), ("code", "code", "{}"), ("shown", "shown", "{:,}"),
           ("updates_per_min", "updates/min", "{}"), ("longest_gap_s", "longest gap s", "{}"),
           ("long_tasks", "long tasks", "{}"), ("blocked_share", "blocked", "{:.1%}"),
           ("longest_task_ms", "longest task ms", "{}"), ("js_heap_mb", "JS heap MB", "{}"),
           ("dashboard_cpu_cores", "dashboard CPU (cores)", "{}"), ("peak_rss_mb", "dashboard peak RSS MB", "{}"))


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) if row.get(key) is not None else "-"
                                       for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def _head(checkout: Path) -> str:
    """The commit a checkout is at, short (or its folder's name when git cannot say)."""
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return checkout.name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="12000:stack,20000:stack,40000:prepared",
                        help="sizes and feeds, e.g. 12000:stack,40000:prepared (default: the issue's plan)")
    parser.add_argument("--seconds", type=float, default=90, help="how long each size is watched (default 90)")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="a checkout of other code: each size measured with its dashboard first, then this one's")
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "web" / "dashboard" / "app.py").exists():
        print(f"bench.dashboard: --baseline {args.baseline}: not a checkout of flights-app", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"bench.dashboard: no Chromium at {CHROMIUM} (make install, or set FLIGHTS_CHROMIUM)", file=sys.stderr)
        return 2
    try:
        plan = [(int(size), feed) for size, feed in (part.split(":") for part in args.plan.split(","))]
        if any(feed not in ("stack", "prepared") or size <= 0 for size, feed in plan):
            raise ValueError
    except ValueError:
        print(f"bench.dashboard: --plan {args.plan!r}: expected SIZE:stack|prepared[,...]", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    rows = []
    here = _head(Path(__file__).resolve().parent.parent)
    codes = [(args.baseline.resolve(), _head(args.baseline)), (None, here)] if args.baseline else [(None, here)]
    for size, feed in plan:
        for code, name in codes:
            say(f"dashboard: {size:,} aircraft, {feed}, code {name}")
            with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
                runner = run_stack if feed == "stack" else run_prepared
                rows.append({**runner(size, args.seconds, Path(tmp), say, code), "code": name})
            say(json.dumps(rows[-1]))
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
