r"""The OpenSky source agent: a leader-only Faust timer that polls and publishes.

    OpenSky /states/all --poll--> validate --> flight-raw-data       (valid: one batch per partition)
                                           \-> flight-invalid-data   (rejected, with reason)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import aiohttp
import mode
from aiokafka import AIOKafkaConsumer, TopicPartition

from flights_app.app import app, settings
from flights_app.batches import pack_states
from flights_app.opensky.auth import TokenProvider
from flights_app.opensky.backoff import Backoff
from flights_app.opensky.client import OpenSkyClient
from flights_app.publish import Outbox
from flights_app.records import InvalidState, StateVector
from flights_app.settings import Settings
from flights_app.source import SourceStats, StateSource
from flights_app.topics import invalid_states, raw_states

log = logging.getLogger("flights_app.source")

#: The Kafka header of a flight-raw-data record holding its poll's time (OpenSky's ``time``, Unix seconds).
POLL_TIME_HEADER = "poll_time"


async def publish(valid: Sequence[StateVector], invalid: Sequence[InvalidState], poll_time: int) -> None:
    """Hand the poll to the producer at once (the valid states as one batch record per partition,
    each rejection on its own), then wait for all acks together. The batch records carry the poll's
    time in a header (``POLL_TIME_HEADER``): what a new leader reads to know which polls were published.
    (Not as the Kafka timestamp: a replayed recording's times are old, and retention goes by timestamp.)"""
    outbox = Outbox(app)
    topic = raw_states.get_topic_name()
    headers = [(POLL_TIME_HEADER, str(int(poll_time)).encode())]
    for partition, key, value in pack_states(valid, settings.topic_partitions):
        await outbox.send_bytes(topic, key, value, partition, headers)
    for rejected in invalid:
        await outbox.send(invalid_states, rejected.icao24 or "", rejected)
    await outbox.sent()


async def last_published() -> int | None:
    """The time of the newest poll on flight-raw-data: the newest ``POLL_TIME_HEADER`` of the last record
    of each of its partitions (None: none holds one)."""
    topic = raw_states.get_topic_name()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, request_timeout_ms=10_000,
                                **settings.kafka_security.client_options())
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        tps = [tp for tp in tps if ends[tp] > 0]
        for tp in tps:
            consumer.seek(tp, ends[tp] - 1)
        newest, left = None, set(tps)
        deadline = time.monotonic() + 10
        while left and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(*left, timeout_ms=1000)).items():
                left.discard(tp)
                for record in records:
                    poll_time = poll_time_of(record.headers)
                    if poll_time is not None:
                        newest = poll_time if newest is None else max(newest, poll_time)
        return newest
    finally:
        # aiokafka's stop of a consumer without a group can raise the CancelledError of its own
        # internal task: kept inside the task, so it does not cancel the source.
        stopping = asyncio.ensure_future(consumer.stop())
        await asyncio.wait({stopping}, timeout=10)
        if stopping.done() and not stopping.cancelled():
            stopping.exception()  # read, so asyncio does not report it


def poll_time_of(headers) -> int | None:
    """The poll time a record of flight-raw-data carries (None: none, as from other producers)."""
    for name, value in headers or ():
        if name == POLL_TIME_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def describe_poll_plan() -> str:
    plan = settings.poll
    who = "authenticated" if settings.authenticated else "anonymous"
    box = "global" if settings.bbox is None else f"box {settings.bbox.as_query()}"
    if plan.derived:
        credits = "unlimited credits" if settings.daily_credits == 0 else f"{settings.daily_credits} credits/day"
        return f"every {plan.interval_s:g} s (derived: {who}, {credits}, {box})"
    return f"every {plan.interval_s:g} s (FLIGHTS_POLL_INTERVAL; {who}, {box})"


class SourceStage:
    """The OpenSky source of this worker: the one aiohttp session and the source (its poll plan, backoff
    and counters), for the worker's lifetime. The web layer reads ``stats``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.source: StateSource | None = None
        self.session: aiohttp.ClientSession | None = None
        self.stats = SourceStats()  # counted only where the source runs (the leader)
        self.last_tick: float | None = None

    async def start(self) -> None:
        settings = self.settings
        self.session = aiohttp.ClientSession(headers={"User-Agent": "flights-app/0.1"})
        tokens = None
        if settings.authenticated:
            tokens = TokenProvider(
                self.session, settings.opensky_token_url, settings.opensky_client_id,
                settings.opensky_client_secret, timeout_s=settings.opensky_timeout_s,
            )
        client = OpenSkyClient(
            self.session, settings.opensky_url, bbox=settings.bbox, tokens=tokens,
            timeout_s=settings.opensky_timeout_s,
        )
        backoff = Backoff(base_s=max(settings.poll.interval_s, 1.0), max_s=settings.backoff_max_s)
        self.source = StateSource(client.fetch_states, publish, backoff, interval_s=settings.poll.interval_s,
                                  stats=self.stats, last_published=last_published,
                                  can_ask_past=settings.authenticated, catch_up_max=settings.catch_up_max)
        log.info("OpenSky source: %s %s", client.url, describe_poll_plan())
        exhausted = settings.poll.credits_exhausted_after_s
        if exhausted is not None:
            at = time.strftime("%H:%M UTC", time.gmtime(time.time() + exhausted))
            log.warning(
                "At one poll every %g s the %d daily credits run out after %.1f h (about %s); "
                "after that OpenSky answers 429 until they reset. Unset FLIGHTS_POLL_INTERVAL "
                "to derive an interval that lasts the day.",
                settings.poll.interval_s, settings.daily_credits, exhausted / 3600, at,
            )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def tick(self) -> None:
        """The leader's heartbeat. A heartbeat after a silence (this worker just became the leader again)
        makes the source catch up the polls missed meanwhile before it publishes the next."""
        if self.source is None:
            return
        now = time.monotonic()
        if self.last_tick is not None and now - self.last_tick > LEADER_GAP_S:
            self.source.resume()
        self.last_tick = now
        await self.source.tick()


#: The source stage of this worker (the one object holding its state).
stage = SourceStage(settings)


@app.service
class OpenSkySourceService(mode.Service):
    """Starts and stops the source stage with the worker."""

    async def on_start(self) -> None:
        await stage.start()

    async def on_stop(self) -> None:
        await stage.stop()


#: The timer is a heartbeat: the source itself decides when a poll is due (its
#: interval, a server's retry-after, backoff), so the first poll goes out at start.
HEARTBEAT_S = min(settings.poll.interval_s, 1.0)
#: No heartbeat for this long: the worker was not the leader meanwhile.
LEADER_GAP_S = 5 * HEARTBEAT_S + 2.0


@app.timer(HEARTBEAT_S, on_leader=True)
async def poll_opensky() -> None:
    await stage.tick()
