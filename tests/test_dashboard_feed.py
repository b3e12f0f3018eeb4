"""The dashboard's Kafka feed on the embedded broker: fills the buffers, skips bad records, shows
Offline when the broker cannot be reached and comes back by itself."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.harness import async_wait_until, free_port
from tests.test_dashboard_model import scored
from web.dashboard.feed import Feed
from web.dashboard.model import Traffic

pytestmark = pytest.mark.kafka


async def make_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=1) for n in names])
    finally:
        await admin.close()


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
