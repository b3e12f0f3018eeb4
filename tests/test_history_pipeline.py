"""The history writer against a real broker: killed with ``kill -9`` twice while records keep
arriving, restarted, it keeps every offset of the topics exactly once and every distinct state once."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
import urllib.request

import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer

from flights_app.history.layout import FileName
from flights_app.history.query import History
from flights_app.history.store import HistoryStore
from flights_app.history.writer import COMMIT_DELAY_SAYS
from flights_app.topic_admin import ensure_topics
from flights_app.topic_names import AGGREGATED, ALERTS, PROCESSED
from tests.harness import (
    PYTHON,
    FakeOpenSky,
    Proc,
    TestApp,
    free_port,
    group_offsets,
    read_topic,
    wait_until,
)
from tests.monitoring import missing_from
from tests.test_history import scored, window

STATES = 12_000
RESENT_EVERY = 10  # the scoring's at-least-once delivery: every 10th state published twice


def start_writer(app: TestApp, n: int) -> Proc:
    writer = Proc(f"history-{n}", [PYTHON, "-m", "flights_app.cli", "history-writer"],
                  {**app.env, "FLIGHTS_HISTORY_PORT": str(port := free_port())}, app.tmp / f"history-writer-{n}.log")
    writer.port = port
    return writer


def metrics_page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def scrape(port: int) -> dict[str, float]:
    """The writer's /metrics: each sample's name with its labels, and its value."""
    text = metrics_page(port)
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("flights_history_")}


def uncommitted_files(app: TestApp, group: str, topic: str) -> bool:
    """Whether a file of ``topic`` holds a range its partition's committed offset has not reached."""
    committed = {p: c or 0 for p, (c, _) in asyncio.run(group_offsets(app.bootstrap, group, topic)).items()}
    return any(name.topic == topic and name.first >= committed.get(name.partition, 0)
               for name in (FileName.parse(p.name) for p in (app.tmp / "history").rglob("*.parquet")) if name)


def kill_between_write_and_commit(writer: Proc, uncommitted) -> None:
    """SIGKILL ``writer`` while it holds a written range it has not committed. The writer says when it
    has written ranges and begins FLIGHTS_HISTORY_COMMIT_DELAY's wait before committing them; it is
    frozen (SIGSTOP) as soon as it says so, so no commit can be on its way, and killed if a range of
    ``uncommitted`` is among them (else let go, and the next wait is watched). Judging the moment by
    the committed offsets alone raced: the check takes about a second on a slow machine, and a commit
    sent just before the freeze could land after it."""
    deadline = time.monotonic() + 120
    while True:
        said = writer.log_text().count(COMMIT_DELAY_SAYS)
        wait_until(lambda said=said: writer.log_text().count(COMMIT_DELAY_SAYS) > said or not writer.alive(),
                   max(1.0, deadline - time.monotonic()), "the writer to write ranges", interval_s=0.02)
        assert writer.alive(), writer.tail()
        os.killpg(writer.process.pid, signal.SIGSTOP)
        if uncommitted():
            writer.kill()
            return
        os.killpg(writer.process.pid, signal.SIGCONT)


def test_a_killed_writer_loses_and_repeats_nothing(kafka, tmp_path, cleanup):
    app = TestApp(tmp_path, kafka.url, FLIGHTS_HISTORY_DIR=str(tmp_path / "history"), FLIGHTS_HISTORY_FLUSH="0.2",
                  FLIGHTS_HISTORY_COMMIT_DELAY="2")
    topics = [app.topic(t) for t in (PROCESSED, AGGREGATED, ALERTS)]
    asyncio.run(ensure_topics(app.bootstrap, topics, partitions=app.partitions, replication=1,
                              retention_s=3600))
    writers = [start_writer(app, 0)]
    cleanup.extend(writers)  # each is killed at the end, pass or fail
    group = f"{app.env['FLIGHTS_APP_ID']}-history"
    # Event times of the last minutes: within retention, and in hours not closed long enough to compact
    # (compaction keeps each state once, so a compacted file no longer holds every offset).
    t0 = int(time.time()) // 600 * 600 - 600
    wait_until(lambda: "History writer:" in writers[-1].log_text(), 60, "the history writer to start")

    async def produce(first: int, last: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=app.bootstrap)
        await producer.start()
        try:
            for i in range(first, last):
                icao24 = f"{0xa00000 + i % 300:06x}"
                value = scored(icao24, t0 + 5 * (i // 300))  # 300 aircraft, a state every 5 s each
                copies = 2 if i % RESENT_EVERY == 0 else 1
                for _ in range(copies):
                    await producer.send(topics[0], key=icao24.encode(), value=value)
            await producer.send(topics[1], key=b"country|France",
                                value=window("France", t0, last, last == STATES, t0 + last))
            await producer.flush()
        finally:
            await producer.stop()

    thirds = [0, STATES // 3, 2 * STATES // 3, STATES]
    for n in range(3):
        asyncio.run(produce(thirds[n], thirds[n + 1]))
        if n < 2:  # killed with a range written and not committed (the commit waits 1 s after the files)
            kill_between_write_and_commit(writers[-1], lambda: uncommitted_files(app, group, topics[0]))
            writers.append(start_writer(app, n + 1))
            cleanup.append(writers[-1])

    def caught_up() -> bool:
        assert writers[-1].alive(), writers[-1].tail()
        return all((c or 0) == end for t in topics[:2]
                   for c, end in asyncio.run(group_offsets(app.bootstrap, group, t)).values())

    wait_until(caught_up, 120, "the history writer to commit every record")
    published = STATES + STATES // RESENT_EVERY
    store = HistoryStore(tmp_path / "history")
    places = collections.Counter()
    for path in store.files("states"):
        table = pq.read_table(path, columns=["kafka_partition", "kafka_offset"])
        places.update(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True))
    assert sum(places.values()) == published, "every published record kept"
    assert max(places.values()) == 1, f"kept twice: {[p for p, n in places.items() if n > 1][:5]}"
    assert store.partitions()[topics[0]] == app.partitions  # recorded: a track reads its partition's files
    history = History(tmp_path / "history")
    distinct = sum(len(history.aircraft(f"{0xa00000 + a:06x}", t0, t0 + 5 * STATES).rows) for a in range(300))
    assert distinct == STATES  # each state once, its second copy left out
    deleted = [line for w in writers for line in w.log_text().splitlines() if "never committed" in line]
    assert len(deleted) >= 2, f"each restart found the files of a range its predecessor never committed: {deleted}"
    final = history.windows("country", t0, t0 + 600).as_dicts()
    assert [(w["name"], w["events"], w["final"]) for w in final] == [("France", STATES, True)]
    # The last writer's /metrics: what it wrote since its start, and no lag once it has caught up.
    wait_until(lambda: scrape(writers[-1].port).get(f'flights_history_lag{{topic="{topics[0]}"}}') == 0, 30,
               "the writer's lag gauge to read 0")
    samples = scrape(writers[-1].port)
    assert samples['flights_history_rows_total{kind="states"}'] >= STATES // 3 and samples[
        "flights_history_commits_total"] >= 1, samples
    assert not missing_from(metrics_page(writers[-1].port), "history-writer"), "named in monitoring/, not declared"


@pytest.mark.recordings
def test_a_replay_through_the_stack_is_kept_once_across_a_killed_writer(kafka, tmp_path, cleanup, shared_data):
    """make run's stack (the fake OpenSky replaying a real recording, a worker, the history writer), the
    writer killed with a range written and not committed a third of the way in: the history holds each
    distinct state on flight-processed-data once, and each window's newest record on
    flight-aggregated-data (its final one where the window closed), once."""
    recording = shared_data / "real_traffic_france_2021-10-07_5s.zip"
    fake = FakeOpenSky(tmp_path, "--replay", str(recording), "--pace", "request")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.01",
                  FLIGHTS_AGGREGATE_FLUSH="0.5", FLIGHTS_HISTORY_DIR=str(tmp_path / "history"),
                  FLIGHTS_HISTORY_FLUSH="0.5", FLIGHTS_HISTORY_COMMIT_DELAY="1",
                  FLIGHTS_HISTORY_DAYS="3650")  # 2021's states: kept (retention counts back from them)
    cleanup.append(app)
    app.start_worker()
    writers = [start_writer(app, 0)]
    cleanup.extend(writers)
    group = f"{app.env['FLIGHTS_APP_ID']}-history"
    processed, aggregated = app.topic(PROCESSED), app.topic(AGGREGATED)
    polls = fake.stats()["replay"]["polls"]
    wait_until(lambda: app.check_workers() or fake.stats()["requests"] >= polls // 3, 180, "a third of the replay")
    kill_between_write_and_commit(writers[-1], lambda: uncommitted_files(app, group, processed))
    writers.append(start_writer(app, 1))
    cleanup.append(writers[-1])
    wait_until(lambda: app.check_workers() or fake.stats()["exhausted"], 300, "the whole replay served")

    def settled() -> bool:  # everything the worker published is committed by the writer, twice in a row
        assert writers[-1].alive(), writers[-1].tail()
        app.check_workers()
        ends = [(c or 0, end) for t in (processed, aggregated)
                for c, end in asyncio.run(group_offsets(app.bootstrap, group, t)).values()]
        now = (all(c == end for c, end in ends), [end for _, end in ends])
        settled.seen, before = now, getattr(settled, "seen", None)
        return now[0] and before == now

    wait_until(settled, 240, "the writer to commit every record the worker published", interval_s=5)
    published = {(v["state"]["icao24"], v["state"]["time_position"] if v["state"].get("time_position") is not None
                  else v["state"]["last_contact"]) for _, v in read_topic(app.bootstrap, processed, timeout_s=120)}
    first, last = min(t for _, t in published), max(t for _, t in published)
    kept = History(tmp_path / "history").states(first, last, limit=10**6)
    assert not kept.truncated
    rows = [(r["icao24"], r["event_time"]) for r in kept.as_dicts()]
    assert len(rows) == len(set(rows)) and set(rows) == published, \
        f"{len(published):,} distinct states published, {len(rows):,} kept ({len(set(rows) ^ published)} differ)"
    assert len(published) > 20_000  # the recording's distinct states (57,644 rows, OpenSky repeats)

    newest: dict[tuple, dict] = {}
    for _, record in read_topic(app.bootstrap, aggregated, timeout_s=120):
        key = (record["dimension"], record["name"], record["window_start"])
        if key not in newest or (record["final"], record["emitted_at"]) >= (newest[key]["final"],
                                                                              newest[key]["emitted_at"]):
            newest[key] = record
    history = History(tmp_path / "history")
    held = {}
    for dimension in {k[0] for k in newest}:
        starts = [k[2] for k in newest if k[0] == dimension]
        for row in history.windows(dimension, min(starts), max(starts)).as_dicts():
            key = (dimension, row["name"], row["window_start"])
            assert key not in held, f"window {key} kept twice"
            held[key] = (row["events"], row["final"])
    assert held == {k: (r["events"], r["final"]) for k, r in newest.items()}
    assert sum(final for _, final in held.values()) > 10  # 3 hours of 10-minute windows: most closed
    deleted = [line for line in writers[1].log_text().splitlines() if "never committed" in line]
    assert deleted, "the restarted writer found the range its predecessor wrote and never committed"
