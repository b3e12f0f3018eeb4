"""The OpenSky source: one poll at a time, validated, handed to a publisher.

Knows nothing of HTTP (the client does) nor of Kafka (the publisher does).
Every outcome is counted; nothing a source does can raise out of ``poll()``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from flights_app.metrics import Metric, StageMetrics
from flights_app.opensky.backoff import Backoff
from flights_app.opensky.client import PollResult
from flights_app.records import InvalidState, StateVector
from flights_app.validation import validate_state

log = logging.getLogger("flights_app.source")

#: Hands a poll's valid and rejected states to Kafka, with the poll's time (OpenSky's ``time``).
Publisher = Callable[[Sequence[StateVector], Sequence[InvalidState], int], Awaitable[None]]
#: One request: the states now, or (given a time) OpenSky's snapshot of then.
Fetcher = Callable[..., Awaitable[PollResult]]
#: The time of the newest poll published (by any leader before this one); None: none.
LastPublished = Callable[[], Awaitable[int | None]]

#: How far back OpenSky answers a ``time`` parameter (its REST API keeps the last hour).
PAST_LIMIT_S = 3600


def missed_poll_times(last: int, now: int, step_s: float, most: int, past_limit_s: int = PAST_LIMIT_S) -> list[int]:
    """The poll times a leader missed between the last poll published (``last``, itself included: a
    leader that died while publishing it may have published it to some partitions only) and the one it
    just fetched (``now``), ``step_s`` apart: those OpenSky still answers, the newest ``most`` of them,
    oldest first."""
    step = max(1, int(step_s))
    if most <= 0:
        return []
    first = max(int(last), int(last) + step * -(-(int(now) - past_limit_s - int(last)) // step))
    times = range(first, int(now), step)
    return list(times[-most:])


#: The source's counters (exported by /metrics, read by /source/).
SOURCE_METRICS = (
    Metric("polls", "flights_source_polls", "OpenSky polls made"),
    Metric("polls_ok", "flights_source_polls_ok", "OpenSky polls answered with states"),
    Metric("failures", "flights_source_poll_failures", "Failed polls", ("kind",)),
    Metric("states_received", "flights_source_states", "State vectors received from OpenSky"),
    Metric("valid", "flights_source_valid", "Valid states published to flight-raw-data"),
    Metric("invalid", "flights_source_invalid", "States rejected to flight-invalid-data", ("reason",)),
    Metric("consecutive_failures", "flights_source_consecutive_failures", "Failed polls since the last good one",
                                   gauge=True),
    Metric("polls_caught_up", "flights_source_polls_caught_up", "Past polls fetched by a new leader: the poll "
                              "times missed since the last poll published"),
    Metric("polls_missed", "flights_source_polls_missed", "Poll times a new leader could not fetch (anonymous, "
                           "older than OpenSky keeps, beyond FLIGHTS_CATCH_UP_MAX, or failed)"),
)


class SourceStats(StageMetrics):
    """The source's counters since it started, and what OpenSky's last answers said."""

    def __init__(self) -> None:
        super().__init__(SOURCE_METRICS)
        self.credits_remaining: int | None = None
        self.last_response_time: int | None = None
        self.last_poll_at: float | None = None

    def as_dict(self) -> dict:
        counts = super().as_dict()
        return {
            **{k: counts[k] for k in ("polls", "polls_ok", "failures", "states_received", "valid", "polls_caught_up",
                                      "polls_missed")},
            "invalid": sum(counts["invalid"].values()),
            "invalid_by_reason": counts["invalid"],
            "credits_remaining": self.credits_remaining,
            "last_response_time": self.last_response_time,
            "last_poll_at": self.last_poll_at,
            "consecutive_failures": counts["consecutive_failures"],
        }


class StateSource:
    def __init__(
        self,
        fetch: Fetcher,
        publish: Publisher,
        backoff: Backoff,
        *,
        interval_s: float,
        wall_clock: Callable[[], float] = time.time,
        run_id: str | None = None,
        stats: SourceStats | None = None,
        last_published: LastPublished | None = None,
        can_ask_past: bool = False,
        catch_up_max: int = 60,
    ):
        self._fetch = fetch
        self._publish = publish
        self.backoff = backoff
        self.interval_s = interval_s
        self._next_due = 0.0  # on the backoff's clock; 0 = poll at once
        self._wall_clock = wall_clock
        self.run_id = run_id or secrets.token_hex(4)
        self.stats = stats if stats is not None else SourceStats()
        self._last_failure_logged: str | None = None
        self._last_published = last_published
        self.can_ask_past, self.catch_up_max = can_ask_past, catch_up_max
        #: catch up before the next poll is published (this source just became the leader)
        self.resuming = last_published is not None
        #: the newest poll time this source published (None: none since it became the leader)
        self._published_to: int | None = None
        #: the smallest step seen between two poll times (OpenSky's resolution for this client)
        self._resolution: int | None = None
        self._live_time: int | None = None  # the time of the last live poll

    def resume(self) -> None:
        """This source (again) becomes the one polling: before its next poll is published, it fetches the
        poll times missed since the last poll any leader published."""
        self.resuming = self._last_published is not None
        self._published_to = None

    def due(self) -> bool:
        return self.backoff.clock() >= self._next_due

    async def tick(self) -> None:
        """Called often (the timer's heartbeat): polls when the interval and any backoff allow."""
        if not self.due():
            return
        if not self.backoff.ready():
            return
        self._next_due = self.backoff.clock() + self.interval_s
        await self.poll()

    async def poll(self) -> None:
        """One poll now: fetch, validate every row, publish; or count why not."""
        self.stats.inc("polls")
        poll_id = f"{self.run_id}-{self.stats.polls}"
        result = await self._fetch()
        ingest_time = self._wall_clock()
        self.stats.last_poll_at = ingest_time
        if result.credits_remaining is not None:
            self.stats.credits_remaining = result.credits_remaining
        if not result.ok:
            self._on_failure(result)
            return

        response = result.response
        self._learn_resolution(self._live_time, response.time)
        self._live_time = response.time
        # First what was not published, in order: after becoming the leader, what the previous one did
        # not publish; later, the poll times this source skipped (a slow poll, a busy worker, or its own
        # catch-up, during which OpenSky moved on: caught up in rounds, until a poll finds none missed).
        if self.resuming:
            self.resuming = False
            await self._catch_up(response.time)
        elif (self.can_ask_past and self._published_to is not None
              and response.time - self._published_to > self._step()):
            await self._catch_up(response.time, self._published_to)
        if self._published_to is None or response.time > self._published_to:
            self._published_to = response.time
        valid, invalid = await self._publish_response(response, poll_id, ingest_time)

        self.backoff.success()
        if self._last_failure_logged is not None:
            log.info("OpenSky answers again after %d failed polls", self.stats.consecutive_failures)
        self._last_failure_logged = None
        self.stats.set("consecutive_failures", 0)
        self.stats.inc("polls_ok")
        self.stats.last_response_time = response.time
        credits = "" if result.credits_remaining is None else f"; credits left {result.credits_remaining}"
        log.info(
            "poll %s (time %d): %d states -> %d valid, %d invalid%s [total %d valid, %d invalid]",
            poll_id, response.time, len(response.rows), len(valid), len(invalid), credits,
            self.stats.valid, sum(self.stats.invalid.values()),
        )

    async def _publish_response(self, response, poll_id: str, ingest_time: float
                                ) -> tuple[list[StateVector], list[InvalidState]]:
        valid: list[StateVector] = []
        invalid: list[InvalidState] = []
        for row in response.rows:
            checked = validate_state(row, response.time, ingest_time=ingest_time, poll_id=poll_id)
            (valid if isinstance(checked, StateVector) else invalid).append(checked)
        await self._publish(valid, invalid, response.time)
        self.stats.inc("states_received", len(response.rows))
        self.stats.inc("valid", len(valid))
        for reason, n in Counter(r.reason for r in invalid).items():
            self.stats.inc("invalid", n, reason)
        return valid, invalid

    def _learn_resolution(self, before: int | None, at_time: int) -> None:
        """The smallest step seen between two successive poll times (live polls, or the answers of one
        catch-up): OpenSky's time resolution for this client (1 s to 5 s in recordings), so that
        catching up asks for no time twice over and a step of it is no gap."""
        if before is not None and at_time > before:
            gap = at_time - before
            self._resolution = gap if self._resolution is None else min(self._resolution, gap)

    def _step(self) -> int:
        """Between two poll times to catch up: the poll interval, or OpenSky's resolution if coarser."""
        return max(1, int(self.interval_s), self._resolution or 1)

    async def _catch_up(self, now: int, since: int | None = None) -> None:
        """Fetch and publish, oldest first, the poll times missed since the last poll published (a leader
        died, or the worker stopped, before it published them; with ``since``: since ``since``, the newest
        poll this source published itself): OpenSky's ``time`` parameter, for an
        authenticated client, within the hour OpenSky keeps and at most FLIGHTS_CATCH_UP_MAX polls."""
        if since is None:
            try:
                last = await self._last_published()
            except Exception as error:  # noqa: BLE001 - Kafka not answering: go on live, say so
                log.warning("Cannot tell which polls a previous leader published (%s): not catching up", error)
                return
        else:
            last = since
        if last is None or now <= last:
            return
        step = self._step()
        missed = missed_poll_times(last, now, step, self.catch_up_max if self.can_ask_past else 0)
        if since is not None:  # published whole by this source: not again
            missed = [t for t in missed if t != since]
        lost = len(range(int(last) + step, int(now), step)) - len([t for t in missed if t != last])
        if lost:
            self.stats.inc("polls_missed", lost)
            why = ("anonymous clients cannot ask OpenSky for past states" if not self.can_ask_past else
                   f"older than OpenSky keeps ({PAST_LIMIT_S} s) or beyond FLIGHTS_CATCH_UP_MAX={self.catch_up_max}")
            log.warning("%d poll times between %d and %d were not published and cannot be fetched: %s",
                        lost, last, now, why)
        answered = None
        for at_time in missed:
            self.stats.inc("polls")
            poll_id = f"{self.run_id}-{self.stats.polls}"
            result = await self._fetch(at_time)
            if not result.ok:
                self.stats.inc("polls_missed")
                log.warning("Catching up the poll at %d failed (%s): %s", at_time, result.failure, result.detail)
                continue
            self._learn_resolution(answered, result.response.time)
            answered = result.response.time
            await self._publish_response(result.response, poll_id, self._wall_clock())
            self.stats.inc("polls_caught_up")
        if missed:
            log.info("Caught up %d poll times missed between %d and %d", len(missed), last, now)

    def _on_failure(self, result: PollResult) -> None:
        self.stats.inc("failures", 1, result.failure)
        self.stats.set("consecutive_failures", self.stats.consecutive_failures + 1)
        wait = self.backoff.failure(result.retry_after_s)
        # One line per kind of failure in a row, so a long outage does not flood the log.
        level = logging.WARNING if result.failure != self._last_failure_logged else logging.DEBUG
        if result.permanent:
            level = logging.ERROR if result.failure != self._last_failure_logged else logging.DEBUG
        log.log(level, "OpenSky poll failed (%s): %s; next attempt in %.1f s",
                result.failure, result.detail, wait)
        self._last_failure_logged = result.failure
