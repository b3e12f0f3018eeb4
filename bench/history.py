"""The history's figures for ``make bench``: the states per second the history writer keeps up with
(over the scored records of the one-worker run, a real Kafka), what a state costs on disk after
compaction, and how fast the history answers over one generated day.

The day (5,000 aircraft every 10 s: 43.2 million states) is written straight into the history's
layout by ``generate_day``, through the store's own ``write_table`` (the order, compression and row
groups compaction leaves), not through the pipeline. The answers are timed through
``flights_app.history.query.respond`` and Faust's JSON encoding of its body: the work of
``GET /history/area/`` and ``GET /history/aircraft/{icao24}/`` on a worker, without the HTTP framing.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from faust.utils import json as faust_json

from bench.pipeline import BenchError
from flights_app.history.layout import FileName, hour_dir, hour_of
from flights_app.history.query import History, respond
from flights_app.history.rows import SCHEMAS
from flights_app.history.store import HistoryStore, write_table
from flights_app.partitioner import partition_for
from flights_app.topic_names import AGGREGATED, ALERTS, PROCESSED

DAY_START = 1_796_601_600  # 2026-12-07 00:00 UTC
COUNTRIES = ("United States", "Germany", "United Kingdom", "France", "China", "Spain", "Canada", "Japan",
             "Brazil", "India", "Italy", "Turkey", "Australia", "Mexico", "Netherlands", "Switzerland")
PHASES = ("ground", "climb", "cruise", "descent")
#: The global feed a day of disk is computed for: the mean OpenSky shows (about 12,000 aircraft at
#: once, a state every 10 s) and its peak (40,000 aircraft every 5 s, the authenticated resolution).
GLOBAL_FEEDS = {"mean": (12_000, 10), "peak": (40_000, 5)}
RADIUS_M = 200_000.0  # each generated aircraft flies a circle of this radius about its own centre


def _aircraft(count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"icao24": np.array([f"{0x400000 + i:06x}" for i in range(count)]),
            "callsign": np.array([f"BNC{i:05d}" for i in range(count)]),
            "country": np.array([COUNTRIES[i % len(COUNTRIES)] for i in range(count)]),
            "lat0": rng.uniform(-55, 65, count), "lon0": rng.uniform(-175, 175, count),
            "speed": rng.uniform(120, 260, count), "altitude": rng.uniform(1000, 12000, count),
            "phase0": rng.uniform(0, 2 * np.pi, count), "offset": rng.integers(0, 10, count)}


def _hour_table(fleet: dict, start: int, every_s: int, rng: np.random.Generator) -> tuple[pa.Table, np.ndarray]:
    """One hour of the fleet's states (a column per field of the history's schema) and each row's aircraft."""
    count, steps = len(fleet["icao24"]), 3600 // every_s
    who = np.repeat(np.arange(count), steps)
    t = start + np.tile(np.arange(steps) * every_s, count) + fleet["offset"][who]
    angle = fleet["phase0"][who] + fleet["speed"][who] / RADIUS_M * (t - DAY_START)
    lat = fleet["lat0"][who] + RADIUS_M / 111_320 * np.sin(angle)
    lon = fleet["lon0"][who] + RADIUS_M / (111_320 * np.cos(np.radians(fleet["lat0"][who]))) * np.cos(angle)
    n = len(who)
    score = rng.beta(2, 9, n)
    empty = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))
    altitude = fleet["altitude"][who] + rng.normal(0, 15, n)
    columns = {
        "icao24": pa.array(fleet["icao24"][who]), "callsign": pa.array(fleet["callsign"][who]),
        "origin_country": pa.array(fleet["country"][who]), "event_time": pa.array(t),
        "time_position": pa.array(t), "last_contact": pa.array(t + 1),
        "longitude": pa.array(np.round(lon, 4)), "latitude": pa.array(np.round(lat, 4)),
        "baro_altitude": pa.array(np.round(altitude, 2)), "geo_altitude": pa.array(np.round(altitude + 60, 2)),
        "on_ground": pa.array(np.zeros(n, dtype=bool)), "velocity": pa.array(np.round(fleet["speed"][who], 2)),
        "true_track": pa.array(np.round(np.degrees(angle + np.pi / 2) % 360, 2)),
        "vertical_rate": pa.array(np.round(rng.normal(0, 1, n), 2)), "squawk": pa.array(np.full(n, "2000")),
        "category": pa.array(np.full(n, 4)), "position_source": pa.array(np.zeros(n, dtype=np.int64)),
        "ingest_time": pa.array(t + 1.5), "flight_phase": pa.array(np.array(PHASES)[who % 4]),
        "ml_anomaly_score": pa.array(np.round(score, 4)), "ml_is_anomaly": pa.array(score > 0.62),
        "anomaly_reason": pa.nulls(n, pa.string()), "alerts": empty, "data_faults": empty,
        "model_version": pa.array(np.full(n, "bench")), "processed_time": pa.array(t + 1.9),
        "kafka_partition": pa.array(np.zeros(n, dtype=np.int32)), "kafka_offset": pa.array(np.arange(n)),
    }
    schema = SCHEMAS["states"]
    return pa.table([columns[f.name].cast(f.type) for f in schema], schema=schema), who


def generate_day(root: Path, aircraft: int = 5000, every_s: int = 10, hours: int = 24, partitions: int = 8,
                 seed: int = 7, say=lambda text: None) -> dict:
    """``hours`` of ``aircraft`` states every ``every_s`` into ``root``'s layout, one compacted file per
    topic partition and hour (an aircraft in one partition, as Kafka's keys put it); figures of what it wrote."""
    fleet, rng = _aircraft(aircraft, seed), np.random.default_rng(seed + 1)
    # each aircraft in the partition Kafka's key hashing puts it in, as the worker publishes it
    partition_of = np.array([partition_for(i.encode(), partitions) for i in fleet["icao24"]])
    offsets = [0] * partitions
    HistoryStore(root).note_partitions(PROCESSED, partitions)  # as the writer does on its assignment
    started, states = time.monotonic(), 0
    for h in range(hours):
        start = DAY_START + 3600 * h
        table, who = _hour_table(fleet, start, every_s, rng)
        directory = hour_dir(root, "states", hour_of(start))
        directory.mkdir(parents=True, exist_ok=True)
        part = partition_of[who]
        for p in range(partitions):
            rows = table.filter(pa.array(part == p))
            first = offsets[p]
            offsets[p] += rows.num_rows
            rows = rows.set_column(rows.schema.get_field_index("kafka_offset"), "kafka_offset",
                                   pa.array(np.arange(first, offsets[p])))
            rows = rows.set_column(rows.schema.get_field_index("kafka_partition"), "kafka_partition",
                                   pa.array(np.full(rows.num_rows, p, dtype=np.int32)))
            write_table("states", rows, directory / FileName(PROCESSED, p, first, offsets[p] - 1).name)
        states += table.num_rows
        if h % 6 == 5:
            say(f"history day: {h + 1} of {hours} hours written ({states:,} states)")
    disk = sum(p.stat().st_size for p in (root / "states").rglob("*.parquet"))
    return {"aircraft": aircraft, "every_s": every_s, "hours": hours, "partitions": partitions, "states": states,
            "bytes": disk, "bytes_per_state": round(disk / states, 1), "write_s": round(time.monotonic() - started, 1)}


def _percentiles(times_s: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times_s)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1), "max_ms": round(ms[-1], 1)}


def time_queries(root: Path, day: dict, samples: int = 40, seed: int = 3) -> dict:
    """The p50/p95/max of an area at a random moment (a 10-degree box about a random aircraft's circle)
    and of a random aircraft's track over the whole generated range, each answer encoded as JSON."""
    history, fleet = History(root), _aircraft(day["aircraft"], seed=7)
    rng = random.Random(seed)
    end = DAY_START + 3600 * day["hours"] - 1
    limits = {"max_hours": max(24, day["hours"]), "dimensions": ("country",)}
    timed: dict[str, list[float]] = {"area": [], "aircraft": []}
    rows: dict[str, list[int]] = {"area": [], "aircraft": []}
    respond(history, "area", {"bbox": "40,0,50,10", "at": str(DAY_START + 600)}, **limits)  # DuckDB loaded
    for _ in range(samples):
        i = rng.randrange(day["aircraft"])
        lat, lon = float(fleet["lat0"][i]), float(fleet["lon0"][i])
        box = f"{lat - 5:.3f},{max(-180, lon - 5):.3f},{lat + 5:.3f},{min(180, lon + 5):.3f}"
        questions = {"area": {"bbox": box, "at": str(rng.randrange(DAY_START + 60, end))},
                     "aircraft": {"icao24": str(fleet["icao24"][i]), "from": str(DAY_START), "to": str(end)}}
        for question, given in questions.items():
            started = time.perf_counter()
            status, body = respond(history, question, given, **limits)
            faust_json.dumps(body)  # the encoder of the worker's JSON answers (orjson)
            timed[question].append(time.perf_counter() - started)
            if status != 200 or not body["count"]:
                raise RuntimeError(f"history bench: {question} {given} answered {status} with "
                                   f"{body.get('count', body)} rows")
            rows[question].append(body["count"])
    return {q: {**_percentiles(t), "mean_rows": round(statistics.mean(rows[q]))} for q, t in timed.items()}


async def writer_rate(broker_url: str, prefix: str, root: Path, datadir: Path, timeout_s: float = 300) -> dict:
    """The history writer (a consumer group of its own, in this process) over the topics of ``prefix``
    as they are: records per second from its first assignment to its last commit; then its states
    compacted, and their bytes per state on disk."""
    from aiokafka.structs import TopicPartition

    from flights_app.history.writer import HistoryWriter
    from flights_app.settings import load_settings
    from tests.harness import group_offsets

    settings = load_settings({"FLIGHTS_BROKER": broker_url, "FLIGHTS_APP_ID": f"bench-history-{time.time_ns()}",
                              "FLIGHTS_TOPIC_PREFIX": prefix, "FLIGHTS_HISTORY_DIR": str(root),
                              "FLIGHTS_HISTORY_FLUSH": "1", "FLIGHTS_DATADIR": str(datadir)})
    ends = {}
    for topic in (prefix + base for base in (PROCESSED, AGGREGATED, ALERTS)):
        offsets = await group_offsets(settings.bootstrap_servers, f"{settings.app_id}-history", topic)
        ends.update({TopicPartition(topic, p): end for p, (_, end) in offsets.items()})
    records = sum(ends.values())
    writer, stop = HistoryWriter(settings), asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not writer.committed and loop.time() < deadline and not task.done():
        await asyncio.sleep(0.05)
    started = time.monotonic()
    while any(writer.committed.get(tp, 0) < end for tp, end in ends.items() if end):
        if loop.time() > deadline or task.done():
            stop.set()
            (failure,) = await asyncio.gather(task, return_exceptions=True)
            behind = {f"{tp.topic}[{tp.partition}]": (writer.committed.get(tp), end) for tp, end in ends.items()
                      if writer.committed.get(tp, 0) < end}
            raise BenchError(f"history bench: the writer did not commit {records:,} records in {timeout_s:.0f} s "
                               f"(committed, end) {behind}; the writer: {failure!r}")
        await asyncio.sleep(0.05)
    seconds = time.monotonic() - started
    stop.set()
    await task
    store = HistoryStore(root)
    await loop.run_in_executor(None, lambda: store.compact("states", hour_of(time.time() + 10 * 86400), most=10**6))
    files = store.files("states")
    kept = sum(pq.read_metadata(f).num_rows for f in files)
    disk = sum(f.stat().st_size for f in files)
    return {"records": records, "states_kept": kept, "seconds": round(seconds, 2),
            "records_per_s": round(records / seconds), "bytes_per_state": round(disk / max(kept, 1), 1)}


def day_of_global_feed(bytes_per_state: float) -> dict:
    """The disk one day of the global feed takes at ``bytes_per_state`` (GB, 10^9 bytes)."""
    return {name: {"aircraft": n, "every_s": every, "states": n * 86400 // every,
                   "gb": round(n * 86400 / every * bytes_per_state / 1e9, 1)}
            for name, (n, every) in GLOBAL_FEEDS.items()}
