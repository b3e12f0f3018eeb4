"""Benchmarks on a real broker: the raw aiokafka ceiling, the pipeline's throughput,
latency at fixed input rates, memory, and scale-out.

Every measurement starts a fresh app id and topics on one embedded broker, and
every worker it starts is stopped (``Bench.close``), pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.workload import Workload, encode, shifted
from flights_app.batches import pack
from flights_app.embedded.broker import EmbeddedBroker
from flights_app.records import event_time_of
from flights_app.topic_names import AGGREGATED, PROCESSED, RAW
from tests.harness import PYTHON, Proc, free_port, free_port_pair, http_json, make_topics

KAFKA_LIB = Path(__file__).resolve().parent.parent / ".kafka" / "lib"
WINDOW_S = 600
#: The fixed-rate runs send what is due this often, as one batch per partition: a source polling ten
#: times a second (OpenSky's feeds poll every 1 to 10 s, so their batches are larger).
SEND_EVERY_S = 0.1
#: How often the throughput runs look at the scored count.
PROBE_S = 0.1


class BenchError(RuntimeError):
    """A run that did not finish or did not give the right answer: its figures are not reported."""


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 1)}


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> dict:
    """Resident and peak resident memory of a process, MiB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


async def end_offsets(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> int:
    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    return sum(ends.values())


class Bench:
    """One embedded broker for the whole run, and the workers started on it."""

    def __init__(self, tmp: Path, partitions: int = 4):
        self.tmp = tmp
        self.partitions = partitions
        self.broker = EmbeddedBroker(tmp / "kafka", free_port_pair(), lib_dir=KAFKA_LIB, heap_mb=1024,
                                     partitions=partitions)
        self.workers: list[Proc] = []

    def __enter__(self) -> Bench:
        self.broker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.broker.stop()

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def new_app(self, partitions: int | None = None) -> dict:
        tag = uuid.uuid4().hex[:8]
        return {"FLIGHTS_BROKER": self.broker.url, "FLIGHTS_APP_ID": f"bench-{tag}",
                "FLIGHTS_TOPIC_PREFIX": f"b{tag}-", "FLIGHTS_TOPIC_PARTITIONS": str(partitions or self.partitions),
                "FLIGHTS_DAILY_CREDITS": "0", "FLIGHTS_LOG_LEVEL": "warning",
                # Nothing to poll: the benchmark is the only source (connection refused, backing off).
                "OPENSKY_URL": "http://127.0.0.1:9/api"}

    def datadir(self, app: dict, name: str) -> Path:
        return self.tmp / app["FLIGHTS_APP_ID"] / name

    def start_worker(self, app: dict, name: str, web_port: int | None = None) -> Proc:
        """A worker named ``name`` (its data directory); the same ``web_port`` again, with the same
        name, is the same static group member (FLIGHTS_WORKER_ID)."""
        env = {**os.environ, **app, "FLIGHTS_DATADIR": str(self.datadir(app, name)),
               "FLIGHTS_WEB_PORT": str(web_port or free_port())}
        worker = Proc(name, [PYTHON, "-m", "flights_app.cli", "worker"], env,
                      self.tmp / f"{app['FLIGHTS_APP_ID']}-{name}.log")
        worker.web_port = int(env["FLIGHTS_WEB_PORT"])
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    async def create_topics(self, names: list[str], partitions: int) -> None:
        await make_topics(self.bootstrap, names, partitions)

    def producer(self) -> AIOKafkaProducer:
        # As the source agent's producer: acks from all replicas, small linger, large batches.
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1 << 20, max_request_size=4 << 20)

    def consumer(self, **kw) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20, **kw)

    def wait_ready(self, worker: Proc, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not worker.alive():
                raise BenchError(f"{worker.name} exited:\n{worker.tail()}")
            try:
                if http_json(f"http://127.0.0.1:{worker.web_port}/health", timeout_s=2).get("status") == "ok":
                    return
            except Exception:  # not up yet (or 503 while recovering)
                pass
            time.sleep(0.2)
        raise BenchError(f"{worker.name} not healthy within {timeout_s} s:\n{worker.tail()}")


# ---------------------------------------------------------------------------------------------
# 1. The ceiling: raw aiokafka on the same broker, the same records


async def ceiling(bench: Bench, workload: Workload) -> dict:
    """Produce the records, consume them, and relay them (consume + produce in one loop, what a
    pipeline that did nothing else would do): messages per second of each."""
    tag = uuid.uuid4().hex[:6]
    src, dst = f"ceiling-{tag}-in", f"ceiling-{tag}-out"
    await bench.create_topics([src, dst], bench.partitions)
    records = [(s["icao24"].encode(), encode(s, 0.0)) for s in workload.states]
    producer = bench.producer()
    await producer.start()
    try:
        started = time.perf_counter()
        futures = []
        for key, value in records:
            futures.append(await producer.send(src, key=key, value=value))
        await asyncio.gather(*futures)
        produce_s = time.perf_counter() - started

        consumer = bench.consumer()
        await consumer.start()
        try:
            tps = [TopicPartition(src, p) for p in range(bench.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            started, n = time.perf_counter(), 0
            while n < len(records):
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                n += sum(len(b) for b in batches.values())
            consume_s = time.perf_counter() - started

            await consumer.seek_to_beginning(*tps)
            started, n, futures = time.perf_counter(), 0, []
            while n < len(records):
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for batch in batches.values():
                    for record in batch:
                        futures.append(await producer.send(dst, key=record.key, value=record.value))
                    n += len(batch)
            await asyncio.gather(*futures)
            relay_s = time.perf_counter() - started
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    n = len(records)
    return {"records": n, "record_bytes": round(sum(len(v) for _, v in records) / n),
            "produce_per_s": round(n / produce_s), "consume_per_s": round(n / consume_s),
            "relay_per_s": round(n / relay_s)}


# ---------------------------------------------------------------------------------------------
# 1b. Producer settings for the public outputs, on the scored records a worker published

#: (name, compression, linger ms) measured side by side; the app's setting is the first.
PRODUCER_SETTINGS = [("as configured", None, None), ("none, linger 0", "none", 0), ("none, linger 5", "none", 5),
                     ("none, linger 20", "none", 20), ("gzip, linger 5", "gzip", 5), ("lz4, linger 5", "lz4", 5),
                     ("zstd, linger 5", "zstd", 5)]


def topic_bytes(bench: Bench, topic: str) -> int:
    """Bytes the broker keeps on disk for ``topic`` (its log segments)."""
    return sum(f.stat().st_size for d in bench.broker.log_dir.glob(f"{topic}-*") for f in d.glob("*.log"))


@contextlib.asynccontextmanager
async def from_start(bench: Bench, topic: str, partitions: int):
    """A consumer assigned every partition of ``topic``, at its first offset; and the partitions."""
    consumer = bench.consumer()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def read_records(bench: Bench, topic: str, partitions: int, limit: int) -> list[tuple[bytes, bytes]]:
    async with from_start(bench, topic, partitions) as (consumer, _):
        out: list[tuple[bytes, bytes]] = []
        while len(out) < limit:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches:
                break
            out += [(r.key, r.value) for batch in batches.values() for r in batch]
        return out[:limit]


async def producer_settings(bench: Bench, records: list[tuple[bytes, bytes]]) -> dict:
    """The scored records produced again with each of PRODUCER_SETTINGS (acks=all, as the worker): records
    per second until every one is acknowledged, and bytes the broker stores per record."""
    from flights_app.settings import SETTINGS_DOC

    configured = SETTINGS_DOC["FLIGHTS_KAFKA_COMPRESSION"][0], int(SETTINGS_DOC["FLIGHTS_KAFKA_LINGER_MS"][0])
    rows = []
    for name, compression, linger_ms in PRODUCER_SETTINGS:
        compression = compression or configured[0]
        linger_ms = configured[1] if linger_ms is None else linger_ms
        topic = f"producer-{uuid.uuid4().hex[:6]}"
        await bench.create_topics([topic], bench.partitions)
        producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, acks="all", linger_ms=linger_ms,
                                    max_batch_size=1 << 20, max_request_size=4 << 20,
                                    compression_type=None if compression == "none" else compression)
        await producer.start()
        try:
            started, futures = time.perf_counter(), []
            for key, value in records:
                futures.append(await producer.send(topic, key=key, value=value))
            await asyncio.gather(*futures)
            seconds = time.perf_counter() - started
        finally:
            await producer.stop()
        rows.append({"setting": name, "compression": compression, "linger_ms": linger_ms,
                     "records_per_s": round(len(records) / seconds),
                     "stored_bytes_per_record": round(topic_bytes(bench, topic) / len(records), 1)})
    return {"records": len(records), "record_bytes": round(sum(len(v) for _, v in records) / max(len(records), 1)),
            "rows": rows}


# ---------------------------------------------------------------------------------------------
# 2. Throughput: a backlog of states through one or more workers


def raw_records(states: list[dict], ingest_time: float, partitions: int, batched: bool):
    """(partition, key, value) of ``states`` on flight-raw-data: one batch record per partition, as the
    source publishes a poll (``batched``), or one record per state (partition None: by its key)."""
    if batched:
        return pack(((state["icao24"], encode(state, ingest_time)) for state in states), partitions)
    return ((None, state["icao24"].encode(), encode(state, ingest_time)) for state in states)


async def preload(bench: Bench, topic: str, workload: Workload, partitions: int, batched: bool = True) -> float:
    """The workload onto ``topic``: in batches of one simulated poll (``workload.aircraft`` states), or
    one record per state."""
    producer = bench.producer()
    await producer.start()
    try:
        started, futures = time.perf_counter(), []
        now = time.time()
        for i in range(0, len(workload), workload.aircraft):
            for partition, key, value in raw_records(workload.states[i:i + workload.aircraft], now, partitions,
                                                     batched):
                futures.append(await producer.send(topic, key=key, value=value, partition=partition))
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def latest_window_counts(bench: Bench, topic: str, partitions: int) -> dict[tuple[str, int], int]:
    """The newest country record per (country, window) on flight-aggregated-data: the distinct
    states it counted (in the window, or late)."""
    async with from_start(bench, topic, partitions) as (consumer, tps):
        ends = await consumer.end_offsets(tps)
        latest: dict[tuple[str, int], tuple[float, int]] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for record in batch:
                    value = orjson.loads(record.value)
                    if value["dimension"] == "country":
                        key = (value["name"], value["window_start"])
                        if key not in latest or value["emitted_at"] >= latest[key][0]:
                            # Late states (window closed when they came) are counted apart.
                            latest[key] = (value["emitted_at"], value["events"] + value["late_events"])
        return {k: events for k, (_, events) in latest.items()}


async def throughput(bench: Bench, workload: Workload, *, workers: int = 1, partitions: int | None = None,
                     timeout_s: float = 600, batched: bool = True, settings: dict | None = None) -> dict:
    """The workload preloaded into flight-raw-data, then the worker(s) started (with ``settings`` on
    top of the defaults): events per second from the first scored record to the last, and until the
    window totals are exact."""
    partitions = partitions or bench.partitions
    app = bench.new_app(partitions)
    prefix = app["FLIGHTS_TOPIC_PREFIX"]
    raw, processed, aggregated = prefix + RAW, prefix + PROCESSED, prefix + AGGREGATED
    await bench.create_topics([raw], partitions)
    preload_s = await preload(bench, raw, workload, partitions, batched)
    expected = workload.distinct_per_window(WINDOW_S)
    procs = [bench.start_worker({**app, "FLIGHTS_AGGREGATE_FLUSH": "1", **(settings or {})}, f"worker{i + 1}")
             for i in range(workers)]
    probe = bench.consumer()
    await probe.start()
    n = len(workload)
    peak = {p.name: 0.0 for p in procs}
    try:
        first = done = None
        deadline = time.monotonic() + timeout_s
        while True:
            for p in procs:
                if not p.alive():
                    raise BenchError(f"{p.name} exited:\n{p.tail()}")
                peak[p.name] = max(peak[p.name], rss_mb(p.process.pid)["rss_mb"] or 0)
            await probe._client.force_metadata_update()
            count = await end_offsets(probe, processed, partitions) if probe.partitions_for_topic(processed) else 0
            now = time.monotonic()
            if count and first is None:
                first = now
                cpu_first = sum(cpu_s(p.process.pid) for p in procs)
            if count >= n:
                done = now
                cpu_done = sum(cpu_s(p.process.pid) for p in procs)
                break
            if now > deadline:
                raise BenchError(f"{count:,} of {n:,} states scored after {timeout_s} s")
            await asyncio.sleep(PROBE_S)
        while True:  # every window's newest record carries the exact distinct count
            if await latest_window_counts(bench, aggregated, partitions) == expected:
                totals = time.monotonic()
                break
            if time.monotonic() > deadline:
                raise BenchError("the window totals did not reach the workload's distinct counts")
            await asyncio.sleep(0.5)
        duplicates = sum(http_json(f"http://127.0.0.1:{p.web_port}/stats/windows/")["duplicates_dropped"]
                         for p in procs)
        expected_duplicates = workload.duplicates
        if duplicates != expected_duplicates:
            raise BenchError(f"{duplicates} duplicates dropped, the workload has {expected_duplicates}")
        return {"processed_topic": processed, "states": n, "duplicates": expected_duplicates,
                "repeated_polls_states": workload.repeated_polls,
                "aircraft": workload.aircraft, "batched_input": batched, "settings": settings or {},
                "workers": workers, "partitions": partitions, "preload_s": round(preload_s, 1),
                "scored_per_s": round(n / max(done - first, PROBE_S)),  # timed at the probe's resolution
                "windowed_per_s": round(n / max(totals - first, 1e-9)),
                "seconds": round(totals - first, 1), "totals_exact": True,
                "worker_cpu_per_wall": round((cpu_done - cpu_first) / max(done - first, 1e-9), 2),
                "batches": [http_json(f"http://127.0.0.1:{p.web_port}/model/")["scorer"] for p in procs],
                "peak_rss_mb": round(max(peak.values()), 1)}
    finally:
        await probe.stop()
        bench.stop_workers()


# ---------------------------------------------------------------------------------------------
# 3. Latency at a fixed input rate (and memory growth over the run)


class Observer:
    """Reads flight-processed-data and flight-aggregated-data as they fill: the time from each
    state's ingestion to its scored record, and to the first window record that counts it."""

    def __init__(self, bench: Bench | None, processed: str, aggregated: str, partitions: int):
        self.consumer = bench.consumer() if bench is not None else None
        self.tps = [TopicPartition(t, p) for t in (processed, aggregated) for p in range(partitions)]
        self.processed = processed
        self.scored: list[float] = []
        self.windowed: list[float] = []
        self.pending: dict[tuple[str, int], list[float]] = {}  # (country, window) -> ingest times, sent order
        self.counted: dict[tuple[str, int], int] = {}
        self.identities: set[tuple[str, int]] = set()  # (icao24, event time) of the states sent

    def sent(self, state: dict, ingest_time: float) -> None:
        """A state sent at ``ingest_time``. A repeat (same aircraft and event time: the workload repeats
        polls) is not counted by the windows, so it is left out: counted in, it would take the place
        of a later state in the attribution by count, and every later state would seem to wait."""
        identity = (state["icao24"], event_time_of(state))
        if identity in self.identities:
            return
        self.identities.add(identity)
        key = (state["origin_country"], int(event_time_of(state) // WINDOW_S) * WINDOW_S)
        self.pending.setdefault(key, []).append(ingest_time)

    def window_record(self, value: dict, now: float) -> None:
        """A record of flight-aggregated-data read at ``now``: its count says how many of its window's
        states (in the order they were sent) it includes; those not counted before waited until now."""
        if value["dimension"] != "country":
            return
        key = (value["name"], value["window_start"])
        times = self.pending.get(key, [])
        done = self.counted.get(key, 0)
        for ingest in times[done:value["events"]]:
            self.windowed.append(now - ingest)
        self.counted[key] = max(done, min(value["events"], len(times)))

    async def run(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)
        while True:
            batches = await self.consumer.getmany(timeout_ms=50, max_records=20_000)
            now = time.time()
            for tp, records in batches.items():
                if tp.topic == self.processed:
                    self.scored += [now - orjson.loads(r.value)["state"]["ingest_time"] for r in records]
                    continue
                for r in records:
                    self.window_record(orjson.loads(r.value), now)

    async def close(self) -> None:
        await self.consumer.stop()


async def fixed_rate(bench: Bench, workload: Workload, *, rate: float, seconds: float, drain_s: float = 60,
                     rss_every_s: float = 10) -> dict:
    """States sent at ``rate`` per second for ``seconds`` (ingest time = send time) to a running
    worker; latency percentiles, and the worker's RSS sampled through the run."""
    app = bench.new_app()
    prefix = app["FLIGHTS_TOPIC_PREFIX"]
    worker = bench.start_worker(app, "worker")
    bench.wait_ready(worker)
    observer = Observer(bench, prefix + PROCESSED, prefix + AGGREGATED, bench.partitions)
    watcher = asyncio.create_task(observer.run())
    producer = bench.producer()
    await producer.start()
    raw = prefix + RAW
    total = int(rate * seconds)
    rss = []
    try:
        started = time.monotonic()
        sent, next_rss, futures = 0, started, []
        while sent < total:
            now = time.monotonic()
            if now >= next_rss:
                rss.append({"t_s": round(now - started), **rss_mb(worker.process.pid),
                            "windows_expired": windows_expired(worker)})
                next_rss += rss_every_s
            due = min(total, int((now - started) * rate))
            wall = time.time()
            states = []
            while sent < due:
                # Fresh event times (the workload repeats), so no state counts as a duplicate or late.
                state = shifted(workload.states[sent % len(workload)], sent // len(workload))
                observer.sent(state, wall)
                states.append(state)
                sent += 1
            for partition, key, value in raw_records(states, wall, bench.partitions, batched=True):
                futures.append(await producer.send(raw, key=key, value=value, partition=partition))
            if len(futures) > 500:
                await asyncio.gather(*futures)
                futures = []
            if not worker.alive():
                raise BenchError(f"worker exited:\n{worker.tail()}")
            await asyncio.sleep(SEND_EVERY_S)
        await asyncio.gather(*futures)
        input_s = time.monotonic() - started
        drain_deadline = time.monotonic() + drain_s
        while len(observer.scored) < total and time.monotonic() < drain_deadline:
            await asyncio.sleep(0.1)
        rss.append({"t_s": round(time.monotonic() - started), **rss_mb(worker.process.pid),
                    "windows_expired": windows_expired(worker)})
        kept_up = len(observer.scored) >= total
        return {"rate_per_s": rate, "seconds": seconds, "sent": total, "achieved_input_per_s": round(total / input_s),
                "scored": len(observer.scored), "kept_up": kept_up,
                "to_processed": percentiles(observer.scored), "to_window": percentiles(observer.windowed),
                "rss": rss}
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await observer.close()
        await producer.stop()
        bench.stop_workers()


def windows_expired(worker: Proc) -> int | None:
    """Window table entries the worker has deleted after expiry (None: it did not answer)."""
    try:
        return http_json(f"http://127.0.0.1:{worker.web_port}/stats/windows/", timeout_s=2)["windows_expired"]
    except Exception:  # noqa: BLE001 - busy or starting: the sample goes without it
        return None


def growth(rss: list[dict], warmup_s: float) -> dict:
    """RSS growth from the first sample after the warm-up to the end of the run, and once warm: from the
    first sample after the worker began deleting expired windows (until then the window tables only
    fill; after it they hold about the same span of event time) to the end."""
    def pct(start: float, end: float) -> float:
        return round((end - start) / start * 100, 1)

    after = [r for r in rss if r["t_s"] >= warmup_s] or rss
    start, end = after[0]["rss_mb"], rss[-1]["rss_mb"]
    warm = next((r for r in rss if r.get("windows_expired")), None)
    return {"rss_after_warmup_mb": start, "rss_end_mb": end, "growth_pct": pct(start, end), "warmup_s": warmup_s,
            "warm_at_s": warm["t_s"] if warm else None, "rss_warm_mb": warm["rss_mb"] if warm else None,
            "growth_once_warm_pct": pct(warm["rss_mb"], end) if warm and warm is not rss[-1] else None,
            "series": [(r["t_s"], r["rss_mb"]) for r in rss]}
