"""The dashboard's one Kafka consumer per server process, on the server's event loop.

Reads flight-processed-data, flight-aggregated-data and flight-invalid-data into a
``Traffic`` (bounded); starts a little before the end of each partition so the
charts have something to show at once. Never raises out of ``run()``: a broker that
is down at start or lost mid-run makes the status Offline with the reason, and the
feed reconnects with backoff by itself. The bootstrap servers can be changed live
(validated as host:port lists).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from flights_app.access import authorization
from web.dashboard.model import Traffic, valid_bootstrap

log = logging.getLogger("flights_app.dashboard.feed")

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 2.0
BACKOFF_S = (0.5, 1, 2, 5)


class Feed:
    def __init__(self, bootstrap: str, topics: dict[str, str], traffic: Traffic, *, backfill: int = 2000,
                 worker_url: str | None = None, worker_token: str | None = None,
                 client_options: dict | None = None):
        """``topics``: kind ("processed", "aggregated", "invalid") -> topic name; ``worker_url``: a Faust
        worker's web server, asked for the pipeline's lag and duplicates (figures no topic carries), with
        ``worker_token`` as its bearer token when it has one."""
        if not valid_bootstrap(bootstrap):
            raise ValueError(f"not a host:port list: {bootstrap!r}")
        self.bootstrap = bootstrap
        self.topics = topics
        self._kind_of = {topic: kind for kind, topic in topics.items()}
        self.traffic = traffic
        self.backfill = backfill
        self.online = False
        self.error: str | None = "not connected yet"
        self.messages = 0
        self.malformed = 0
        self.last_message_at: float | None = None
        self.lag: int | None = None  # records on the topics this feed has not read yet
        self.worker_url = worker_url
        self._worker_headers = authorization(worker_token)
        self._client_options = client_options or {}
        self.worker: dict | None = None  # {"lag": n, "duplicates_dropped": n} from the worker, when it answers
        self._reconnect = asyncio.Event()
        self._positions: dict[tuple[str, str, int], int] = {}  # (bootstrap, topic, partition) -> next offset
        self._stopping = False

    def status(self) -> dict:
        return {"online": self.online, "error": self.error, "bootstrap": self.bootstrap, "messages": self.messages,
                "malformed": self.malformed, "last_message_at": self.last_message_at, "lag": self.lag,
                "worker": self.worker}

    def set_bootstrap(self, text: str) -> str | None:
        """Switch brokers; an error text (and no change) if ``text`` is not a host:port list."""
        text = text.strip()
        if not valid_bootstrap(text):
            return "enter host:port, comma-separated (e.g. 127.0.0.1:9092)"
        if text != self.bootstrap:
            self.bootstrap = text
            self._reconnect.set()
        return None

    def stop(self) -> None:
        self._stopping = True
        self._reconnect.set()

    def _dispatch(self, topic: str, raw: bytes | None) -> None:
        kind = self._kind_of.get(topic)
        try:
            value = json.loads(raw) if raw is not None else None
            if kind == "processed":
                self.traffic.add_processed(value)
            elif kind == "aggregated":
                self.traffic.add_window(value)
            elif kind == "invalid":
                self.traffic.add_invalid(value)
        except (ValueError, KeyError, TypeError, AttributeError):
            self.malformed += 1  # counted and skipped: one bad record never stops the feed
            return
        self.messages += 1
        self.last_message_at = time.time()

    def _offline(self, error: BaseException) -> None:
        self.online = False
        self.error = f"{type(error).__name__}: {error}".rstrip(": ")[:300] or "connection lost"
        log.warning("Dashboard feed offline (%s); retrying", self.error)

    async def watch_worker(self) -> None:
        """Every few seconds: the worker's consumer lag (/health) and duplicates dropped (/stats/windows/)."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, headers=self._worker_headers) as session:
            while not self._stopping:
                try:
                    async with session.get(f"{self.worker_url}/health") as response:
                        health = await response.json()
                    async with session.get(f"{self.worker_url}/stats/windows/") as response:
                        counters = await response.json()
                    self.worker = {"lag": health["lag"]["total"], "duplicates_dropped": counters["duplicates_dropped"]}
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
                    self.worker = None
                try:
                    await asyncio.wait_for(self._reconnect.wait(), PROBE_EVERY_S)
                except TimeoutError:
                    pass

    async def run(self) -> None:
        if self.worker_url:
            watcher = asyncio.create_task(self.watch_worker())
        try:
            await self._run()
        finally:
            if self.worker_url:
                watcher.cancel()

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            self._reconnect.clear()
            try:
                await self._consume()
                attempt = 0
            except asyncio.CancelledError as error:
                if asyncio.current_task().cancelling():  # this feed is being cancelled: let it go
                    raise
                self._offline(error)  # aiokafka cancels its own waits when a broker vanishes
            except Exception as error:  # noqa: BLE001 - any failure: Offline, say why, retry
                self._offline(error)
            if self._stopping:
                break
            delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            attempt += 1
            try:
                await asyncio.wait_for(self._reconnect.wait(), delay)
            except TimeoutError:
                pass
        self.online = False

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    request_timeout_ms=5000, connections_max_idle_ms=60000, **self._client_options)
        try:
            await asyncio.wait_for(consumer.start(), 10)
            await asyncio.wait_for(consumer._client.force_metadata_update(), 5)
            tps = [TopicPartition(t, p) for t in self.topics.values() for p in (consumer.partitions_for_topic(t) or ())]
            if not tps:
                raise ConnectionError("the broker answers but has none of the app's topics yet")
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            per_partition = max(1, self.backfill // max(1, len(tps)))
            for tp in tps:  # where this feed left off on this broker, else a little before the end
                saved = self._positions.get((self.bootstrap, tp.topic, tp.partition))
                start = saved if saved is not None and saved <= ends[tp] else max(0, ends[tp] - per_partition)
                consumer.seek(tp, start)
            self.online, self.error = True, None
            next_probe = time.monotonic() + PROBE_EVERY_S
            while not self._reconnect.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for record in records:
                        self._dispatch(tp.topic, record.value)
                    if records:
                        self._positions[(self.bootstrap, tp.topic, tp.partition)] = records[-1].offset + 1
                if time.monotonic() >= next_probe:  # aiokafka retries quietly: ask the broker directly
                    await asyncio.wait_for(consumer._client.fetch_all_metadata(), PROBE_TIMEOUT_S)
                    ends = await asyncio.wait_for(consumer.end_offsets(tps), PROBE_TIMEOUT_S)
                    lag = 0
                    for tp in tps:
                        lag += max(0, ends[tp] - await consumer.position(tp))
                    self.lag = lag
                    next_probe = time.monotonic() + PROBE_EVERY_S
        finally:
            self.online = False
            try:
                await asyncio.wait_for(consumer.stop(), 5)
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
