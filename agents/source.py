r"""The OpenSky source agent: a leader-only Faust timer that polls and publishes.

    OpenSky /states/all --poll--> validate --> flight-raw-data       (valid: one batch per partition)
                                           \-> flight-invalid-data   (rejected, with reason)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import aiohttp
import mode

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


async def publish(valid: Sequence[StateVector], invalid: Sequence[InvalidState]) -> None:
    """Hand the poll to the producer at once (the valid states as one batch record per partition,
    each rejection on its own), then wait for all acks together."""
    outbox = Outbox(app)
    topic = raw_states.get_topic_name()
    for partition, key, value in pack_states(valid, settings.topic_partitions):
        await outbox.send_bytes(topic, key, value, partition)
    for rejected in invalid:
        await outbox.send(invalid_states, rejected.icao24 or "", rejected)
    await outbox.sent()


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
                                  stats=self.stats)
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
        if self.source is not None:
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


@app.timer(HEARTBEAT_S, on_leader=True)
async def poll_opensky() -> None:
    await stage.tick()
