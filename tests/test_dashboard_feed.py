"""The dashboard's Kafka feed on the embedded broker: fills the buffers, skips bad records, shows
Offline when the broker cannot be reached and comes back by itself."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.harness import async_wait_until, free_port, make_topics
from tests.test_dashboard_model import scored
from web.dashboard.feed import Feed
from web.dashboard.model import Traffic

pytestmark = pytest.mark.kafka


async def produce(bootstrap: str, records: list[tuple[str, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, value in records:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


def test_feed_fills_the_buffers_survives_bad_records_and_recovers_from_a_lost_broker(kafka):
    bootstrap = kafka.url.removeprefix("kafka://")
    tag = uuid.uuid4().hex[:8]
    topics = {"processed": f"d{tag}-processed", "aggregated": f"d{tag}-aggregated", "invalid": f"d{tag}-invalid"}

    async def scenario():
        await make_topics(bootstrap, list(topics.values()))
        window = {"dimension": "country", "name": "Germany", "window_start": 600, "events": 3, "anomalies": 0,
                  "velocity_min": 1.0, "velocity_mean": 2.0, "velocity_max": 3.0, "final": False}
        await produce(bootstrap, [(topics["processed"], json.dumps(scored(icao24=f"{i:06x}", t=1000 + i)).encode())
                                  for i in range(5)] + [
            (topics["aggregated"], json.dumps(window).encode()),
            (topics["invalid"], json.dumps({"reason": "null_position"}).encode()),
            (topics["processed"], b"not json"), (topics["processed"], b'{"wrong": "schema"}')])
        traffic = Traffic()
        feed = Feed(bootstrap, topics, traffic)
        task = asyncio.create_task(feed.run())
        try:
            await async_wait_until(lambda: feed.messages == 7 and feed.malformed == 2, 30,
                                   "the records already on the topics")
            assert feed.online and feed.status()["error"] is None
            assert len(traffic.aircraft) == 5 and traffic.invalid_by_reason == {"null_position": 1}
            assert list(traffic.windows) == [("country", "Germany", 600)]

            assert feed.set_bootstrap("127.0.0.1:9092; rm -rf /") is not None  # refused, nothing changes
            assert feed.bootstrap == bootstrap
            assert feed.set_bootstrap(f"127.0.0.1:{free_port()}") is None  # nobody listens there
            await async_wait_until(lambda: not feed.online and feed.error, 30, "Offline with a reason")
            assert feed.set_bootstrap(bootstrap) is None
            await async_wait_until(lambda: feed.online, 30, "Online again")
            await produce(bootstrap, [(topics["processed"], json.dumps(scored(icao24="ffffff", t=2000)).encode())])
            await async_wait_until(lambda: "ffffff" in traffic.aircraft, 30, "a new record after reconnecting")
            assert (feed.messages, traffic.total_events) == (8, 6)  # resumed where it left off: nothing read twice
        finally:
            feed.stop()
            await asyncio.wait_for(task, 15)
        assert not task.exception()

    asyncio.run(scenario())


def test_feed_goes_offline_when_its_broker_stops_and_resumes_when_it_returns(tmp_path):
    """A broker of its own, stopped mid-run (SIGTERM) and started again on the same ports and data."""
    from flights_app.embedded.broker import EmbeddedBroker
    from tests.conftest import KAFKA_LIB
    from tests.harness import async_wait_until, free_port_pair

    broker = EmbeddedBroker(tmp_path / "kafka", free_port_pair(), lib_dir=KAFKA_LIB, heap_mb=384)
    broker.start()
    bootstrap = broker.url.removeprefix("kafka://")
    topics = {"processed": "processed", "aggregated": "aggregated", "invalid": "invalid"}

    async def scenario():
        await make_topics(bootstrap, list(topics.values()))
        await produce(bootstrap, [("processed", json.dumps(scored(icao24="aaaaaa", t=1000)).encode())])
        traffic = Traffic()
        feed = Feed(bootstrap, topics, traffic)
        task = asyncio.create_task(feed.run())
        try:
            await async_wait_until(lambda: feed.online and "aaaaaa" in traffic.aircraft, 30, "Online with the record")
            await asyncio.get_running_loop().run_in_executor(None, broker.stop)
            await async_wait_until(lambda: not feed.online and feed.error, 30, "Offline once the broker is gone")
            await asyncio.get_running_loop().run_in_executor(None, broker.start)
            await async_wait_until(lambda: feed.online, 60, "Online again without anyone's help")
            await produce(bootstrap, [("processed", json.dumps(scored(icao24="bbbbbb", t=1001)).encode())])
            await async_wait_until(lambda: "bbbbbb" in traffic.aircraft, 30, "records after the broker came back")
            assert traffic.total_events == 2  # resumed where it left off
        finally:
            feed.stop()
            await asyncio.wait_for(task, 15)

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()


def test_the_kpis_over_a_simulated_hour_equal_the_worker_s_window_totals(kafka, tmp_path, cleanup):
    """An hour of simulated traffic (60 aircraft every 10 s, every 7th poll sent twice) through a real
    worker; the dashboard's feed then reads flight-processed-data. The dashboard's totals over each
    window, and over the hour, equal the worker's window totals: states, per country, anomalies."""
    from bench.pipeline import raw_records
    from bench.workload import simulate
    from flights_app.topic_names import RAW
    from tests.harness import TestApp, http_json, wait_until
    from tests.replay import WINDOW_S, latest_records

    workload = simulate(60, 360, poll_s=10.0, repeat_every=7)
    expected = workload.distinct_per_window(WINDOW_S)
    # The hour is published at once: a grace of two hours keeps every state in its window (the worker
    # counts a state that comes after its window closed as late, the dashboard counts every state).
    app = TestApp(tmp_path, kafka.url, FLIGHTS_AGGREGATE_FLUSH="0.5", OPENSKY_URL="http://127.0.0.1:9/api",
                  FLIGHTS_DAILY_CREDITS="0", FLIGHTS_WINDOW_GRACE="7200", FLIGHTS_WINDOW_EXPIRY="14400")
    cleanup.append(app)
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or http_json(f"http://127.0.0.1:{worker.web_port}/health",
                                                        timeout_s=2).get("status") == "ok", 120, "the worker")

    async def publish() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=app.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for i in range(0, len(workload), workload.aircraft):
                for partition, key, value in raw_records(workload.states[i:i + workload.aircraft], 0.0,
                                                         app.partitions, batched=True):
                    await producer.send(app.topic(RAW), key=key, value=value, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(publish())

    seen: dict = {}

    def worker_totals():
        app.check_workers()
        latest, _ = latest_records(app)
        seen["totals"] = {k: r["events"] for k, r in latest.items()}
        return seen["totals"] == expected and latest
    try:
        windows = wait_until(worker_totals, 240, "the worker's window totals to equal the distinct states published",
                             interval_s=2)
    except AssertionError as error:
        differ = {k: (seen.get("totals", {}).get(k), n) for k, n in expected.items()
                  if seen.get("totals", {}).get(k) != n}
        raise AssertionError(f"{error}; (worker, published) where they differ: {differ}") from None

    traffic = Traffic()

    async def read_all() -> None:
        topics = {"processed": app.topic("flight-processed-data")}
        feed = Feed(app.bootstrap, topics, traffic, backfill=10**9)
        task = asyncio.create_task(feed.run())
        try:
            await async_wait_until(lambda: traffic.totals.period(None, 0.6).events >= sum(expected.values()), 120,
                                   "the dashboard to read every processed record")
        finally:
            feed.stop()
            await asyncio.wait_for(task, 15)
    asyncio.run(read_all())

    starts = sorted({start for _, start in expected})
    for start in starts:
        shown = traffic.totals.between(start, start + WINDOW_S, threshold=0.6)
        mine = {name: r for (name, s), r in windows.items() if s == start}
        assert shown.events == sum(r["events"] for r in mine.values()), start
        assert shown.counts("countries") == {name: r["events"] for name, r in mine.items()}, start
        assert shown.kpis()["model_anomalies"] == sum(r["anomalies"] for r in mine.values()), start
    hour = [s for s in starts if s >= starts[1]][:6]  # six whole windows: an hour inside the traffic
    assert len(hour) == 6
    kpis = traffic.totals.between(hour[0], hour[0] + 3600, threshold=0.6).kpis()
    assert kpis["events"] == sum(n for (_, s), n in expected.items() if s in hour) > 0
    assert traffic.totals.repeats >= workload.duplicates > 0  # the polls sent twice: read, not counted again
