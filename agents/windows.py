"""The window stage: deduplicated, event-time tumbling-window statistics per group of every declared
dimension (tables/dimensions.py: country, airline, category, altitude band).

Every decision is the window core's (tables/window_core.py, pure, tested without Kafka): this module
only drives it: reads the tables, calls the core, writes, sends and commits.

    scored states, in the scoring agent's batch (by icao24, partition of flight-raw-data)
      --> aircraft stage (core.AircraftWindows.count): dedup, each aircraft's window partials (in its
          entry of the aircraft table, written with its memory by the scoring agent)
      --> flight-window-partials (one message per partials partition and batch) with its sender's
          event-time watermark (a tick, without partials, to the partitions it has not written to lately)
      --> group stage (core.GroupWindows.apply): store each partial by icao24 (replacing any copy)
      --> flight-aggregated-data: at most once per key per flush interval, and a final record when
          the window closes (the watermark of its partials partition past end + grace)

When windows close and expire is the window clock's (tables/clock.py, docs/window-clock.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from faust.types import AppT, CollectionT

from flights_app.app import app, settings
from flights_app.decode import rejections, where
from flights_app.faust_internals import committed_offset
from flights_app.metrics import Metric, StageMetrics
from flights_app.partitioner import partition_for
from flights_app.publish import Outbox
from flights_app.records import InvalidState
from flights_app.settings import Settings
from flights_app.topics import aggregated_stats, invalid_states, raw_states, window_partials
from ml.features import NEW_TRACK_GAP_S
from tables.aircraft import aircraft
from tables.clock import Window, WindowClock
from tables.dimensions import DIMENSIONS, Dimension
from tables.direct import TableWrites, read
from tables.entry import AircraftEntry
from tables.expiry import expired_keys, owned_partitions
from tables.keys import final_key, group_name
from tables.partials import decode_partial
from tables.partitions import by_partition, partition_of
from tables.window_core import (
    AircraftWindows,
    GroupStep,
    GroupWindows,
    HeldWindows,
    Outgoing,
    WindowClose,
    aircraft_expired,
    newest_seen,
    newest_window_start,
)
from tables.window_tables import group_windows

log = logging.getLogger("flights_app.windows")

#: Window summaries a flush computes before it lets the agents run (each reads its 16 shards).
YIELD_EVERY = 20
#: Final records the group stage computes before it lets the agents run (each reads its window's 16 shards).
FINALS_PER_STEP = 20
#: Expired keys a flush deletes from each table at most (the rest at the next flushes).
EXPIRE_PER_FLUSH = 5000


#: The window stage's counters (exported by /metrics, read by /stats/windows/ and the dashboard).
WINDOW_METRICS = (
    Metric("states", "flights_window_states", "States seen by the window stage"),
    Metric("duplicates_dropped", "flights_duplicates_dropped", "Repeated state vectors not counted again"),
    Metric("late_events", "flights_late_events", "States later than the window grace (reported, not averaged)"),
    Metric("expired_events", "flights_expired_events", "States older than the window expiry (not windowed)"),
    Metric("partials_sent", "flights_window_partials_sent", "Aircraft partials sent to flight-window-partials"),
    Metric("records_published", "flights_window_records", "Window updates published to flight-aggregated-data"),
    Metric("finals_published", "flights_window_finals", "Final window records published"),
    Metric("windows_expired", "flights_windows_expired", "Window table entries deleted after expiry (group window "
                              "shards, and aircraft whose windows all expired)"),
    Metric("aircraft_windows_dropped", "flights_aircraft_windows_dropped", "Expired windows left out of an "
                                       "aircraft's entry when it was written"),
    Metric("stale_partials", "flights_window_stale_partials", "Aircraft partials not applied because the group "
           "stage held a newer one (more states) of the same aircraft and window"),
    Metric("watermark_ticks", "flights_watermark_ticks", "Watermark ticks sent with a batch's partials"),
    Metric("watermark_ticks_between_batches", "flights_watermark_ticks_between_batches", "Watermark ticks sent by "
                                              "the timer (each source held, to each partition not written to "
                                              "in the last second), saying whether the source is idle"),
)


def key_partition(key: str) -> int:
    """The partition ``key`` lives in (a topic's or a table's key: they route alike)."""
    return partition_for(key.encode(), settings.topic_partitions)


def window_partition(window: Window) -> int:
    """The partition a group window lives in (its group's, on flight-window-partials and group-windows)."""
    return key_partition(group_name(*window[:2]))


class WindowStage:
    """Both window stages of this worker: the core that decides (its clock, aircraft and group steps),
    the tables, the counters, and what this worker keeps in memory between batches.

    The web layer asks it through ``summaries``, ``windows_of_group``, ``counters`` and ``clock``."""

    def __init__(self, app: AppT, settings: Settings, dimensions: Sequence[Dimension],
                 aircraft: CollectionT, groups: CollectionT):
        self.app = app
        self.dimensions = tuple(dimensions)
        self.aircraft, self.groups = aircraft, groups
        self.size_s = settings.window_s
        self.clock = WindowClock(settings.window_s, settings.window_grace_s, settings.window_expiry_s,
                                 settings.topic_partitions, settings.watermark_idle_s)
        self.aircraft_step = AircraftWindows(self.clock, self.dimensions, key_partition)
        self.group_step = GroupWindows(self.clock, settings.window_s)
        self.stats = StageMetrics(WINDOW_METRICS)
        #: windows updated since the last flush, on this worker
        self.dirty: set[Window] = set()
        #: the group windows held here, kept as they are written (rebuilt after every rebalance)
        self.held = HeldWindows()
        #: expired aircraft left for the next flush (more than one flush deletes)
        self.aircraft_left = False
        #: icao24 -> the newest window start of its aircraft entry as this worker last wrote it (None: no
        #: window left), so that an expiry scan need not read every entry; forgotten at every rebalance
        #: (a partition that moved away and back may have been written elsewhere in between)
        self.newest_window: dict[str, int | None] = {}

    # -- the aircraft stage, run by the scoring agent --------------------------------------------
    def count_in_windows(self, partition: int, items: Sequence, entries: dict[str, AircraftEntry]) -> list[Outgoing]:
        """The aircraft stage for scored states of one partition of flight-raw-data (the core's
        ``AircraftWindows.count``): each aircraft's ``entries[icao24].windows`` are replaced by its
        windows after the batch. Returns the messages for flight-window-partials, in order."""
        step = self.aircraft_step.count(partition, items, {icao24: e.windows for icao24, e in entries.items()})
        for icao24, own in step.windows.items():
            entries[icao24].windows = own
            self.newest_window[icao24] = newest_window_start(own)
        for key, n in step.counts.items():
            self.stats.inc(key, n)
        return step.messages

    async def send_partials(self, outbox: Outbox, partition: int, messages: list[Outgoing]) -> None:
        """Hand ``count_in_windows``' messages to the producer, in order; then the timer may tick the
        partition's newest watermark."""
        for target, message in messages:
            await outbox.send(window_partials, None, message, target)
        self.aircraft_step.handed_over(partition)

    def recover_watermarks(self) -> None:
        """After a restart, each partition's watermark is the newest event time its table entries hold.
        (The group stage's comes back with the next partials.)"""
        if not self.clock.sources:
            self.clock.recover(
                (key_partition(icao24), seen) for icao24, value in list(self.aircraft.items())
                if (seen := newest_seen(AircraftEntry.from_stored(value).windows)) is not None)

    def waiting(self, tp) -> bool | None:
        """Whether messages of ``tp`` (a partition of flight-raw-data) wait to be processed: its high
        watermark beyond the committed offset. None while that is not known (recovering, rebalancing)."""
        if getattr(self.app, "rebalancing", False) or getattr(self.app, "in_recovery", False):
            return None
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not fetched yet
            return None
        if highwater is None:
            return None
        return highwater > (committed_offset(self.app.consumer, tp) or 0)

    async def tick_watermarks(self) -> None:
        """Between batches, tick the partials partitions with each held source's newest watermark handed
        over and whether it is idle. Only for the partitions of flight-raw-data this worker holds now."""
        try:
            held = {tp.partition: tp for tp in self.app.consumer.assignment()
                    if tp.topic == raw_states.get_topic_name()}
        except Exception:  # noqa: BLE001 - the consumer is not up yet
            return
        outbox = Outbox(self.app)
        for target, message in self.aircraft_step.ticks(held, lambda source: self.waiting(held[source])):
            await outbox.send(window_partials, None, message, target)
            self.stats.inc("watermark_ticks_between_batches")
        await outbox.sent()

    # -- the group stage -------------------------------------------------------------------
    async def apply_partials(self, events: Sequence) -> None:
        """The group stage, for messages of one partition of flight-window-partials (the core's
        ``GroupWindows.apply``): write the window shards touched, publish the finals asked for. Every
        write and record is acknowledged before the messages' offsets commit; a final is marked only
        once acknowledged (a crash in between publishes the same final again rather than losing it)."""
        outbox = Outbox(self.app)
        writes = TableWrites(outbox)
        partition = events[0].message.partition
        messages = []
        for event in events:
            raw = event.message
            message = decode_partial(raw.value, raw.key, where(raw.topic, raw.partition, raw.offset))
            if isinstance(message, InvalidState):  # not a partial: counted, sent on with its reason
                rejections.note(raw.topic, message)
                await outbox.send(invalid_states, "", message)
            else:
                messages.append(message)
        batch = GroupStep({}, [], set())
        for step in self.group_step.steps(partition, messages, lambda key: read(self.groups, key, partition),
                                          FINALS_PER_STEP):
            batch.add(step)
            if step.finals:  # every window closes at once: the other agents run between a few finals
                await asyncio.sleep(0)
        with partition_of(events[-1]):
            await writes.put_many(self.groups, batch.writes.items(), partition)  # one write per shard touched
        self.held.wrote(batch.writes)
        # Marked for the flush only once in RocksDB: a flush before would publish without the change.
        self.dirty.update(batch.changed)
        for window, record in batch.finals:
            if record is not None:
                await outbox.send(aggregated_stats, group_name(*window[:2]), {**record, "emitted_at": time.time()})
                self.stats.inc("finals_published")
        if batch.stale:
            self.stats.inc("stale_partials", batch.stale)
            log.warning("Kept %d aircraft partials that older copies arrived for (partition %d)", batch.stale,
                        partition)
        await outbox.sent()
        writes.persist_offsets()
        if batch.finals:
            with partition_of(events[-1]):
                for window, _ in batch.finals:
                    self.groups[final_key(*window)] = {"final": True}
                    self.clock.finished(window)
            self.held.wrote(final_key(*window) for window, _ in batch.finals)

    def rebalanced(self) -> None:
        self.clock.rebalanced()
        self.newest_window.clear()
        self.held.stale = True

    # -- queries (the web layer's) -------------------------------------------------------------
    def _reader(self, window: Window):
        """The group table of the window's partition, read from its database. Not through Faust's table
        lookup: outside an event that searches every database the worker has open, a partition's that
        was revoked and opened again among them (stale copies)."""
        partition = window_partition(window)
        return lambda key: read(self.groups, key, partition)

    def window_summary(self, dimension: str, name: str, start: int) -> dict | None:
        """The window's statistics (None if nothing was counted)."""
        window = (dimension, name, start)
        return self.group_step.summary(*window, self._reader(window))

    def _owned_keys(self) -> list[str]:
        """The group table's keys of the partitions this worker holds now (a database of a partition moved
        to another worker may still be open here, with a stale copy)."""
        owned = owned_partitions(self.groups)
        return [key for key in list(self.groups.keys()) if key_partition(key) in owned]

    def known_windows(self) -> set[Window]:
        """The windows held here (read from the table: the web layer's queries)."""
        return HeldWindows.of_keys(self._owned_keys()).held()

    def summaries(self, dimension: str) -> list[dict]:
        """Every window summary of ``dimension`` this worker holds."""
        return [summary for window in self.known_windows() if window[0] == dimension
                if (summary := self.window_summary(*window)) is not None]

    def windows_of_group(self, dimension: str, name: str) -> list[dict]:
        """The windows of one group this worker holds, newest first."""
        starts = sorted({s for d, n, s in self.known_windows() if (d, n) == (dimension, name)}, reverse=True)
        return [summary for s in starts if (summary := self.window_summary(dimension, name, s)) is not None]

    def counters(self) -> dict:
        """The counters, and the group stage's watermarks (the lowest, one per partials partition heard)."""
        marks = self.clock.partials
        return {**self.stats.as_dict(), "watermark": marks.lowest(),
                "watermarks": {str(p): mark for p, mark in sorted(marks.marks.items())}}

    # -- the flush timer -------------------------------------------------------------------
    async def expire_windows(self) -> None:
        """Delete the windows past their expiry from both tables (their tombstones sent in whole batches),
        at most ``EXPIRE_PER_FLUSH`` keys of each table per flush: every window expires at once, and a
        flush must not stop the scoring for long. The aircraft table is scanned only when a source's
        watermark crossed into a window that may expire (WindowClock.aircraft_scan_due) or deletes were
        left for the next flush; the group table not at all (``HeldWindows``)."""
        clock = self.clock
        outbox = Outbox(self.app)
        writes = TableWrites(outbox)
        removed = 0
        if self.aircraft_left or clock.aircraft_scan_due():
            def aircraft_gone(icao24: str) -> bool:
                partition = key_partition(icao24)
                if icao24 not in self.newest_window and clock.sources.get(partition) is not None:
                    # not written here since the last rebalance: read it
                    own = AircraftEntry.from_stored(read(self.aircraft, icao24, partition)).windows
                    self.newest_window[icao24] = newest_window_start(own)
                return aircraft_expired(clock, self.newest_window.get(icao24), partition, NEW_TRACK_GAP_S)

            gone = expired_keys(self.aircraft, aircraft_gone, EXPIRE_PER_FLUSH + 1)
            self.aircraft_left = len(gone) > EXPIRE_PER_FLUSH
            gone = gone[:EXPIRE_PER_FLUSH]
            for partition, keys in by_key_partition(gone).items():
                await writes.delete_many(self.aircraft, keys, partition)
            for icao24 in gone:
                self.newest_window.pop(icao24, None)
            removed += len(gone)
        gone = self.held.expired_keys(clock, window_partition, EXPIRE_PER_FLUSH)
        for partition, keys in by_key_partition(gone).items():
            await writes.delete_many(self.groups, keys, partition)
        self.held.deleted(gone)
        removed += len(gone)
        await outbox.sent()
        writes.persist_offsets()
        if removed:
            self.stats.inc("windows_expired", removed)
            log.info("Expired %d window entries", removed)

    async def flush(self) -> None:
        """Publish the windows updated since the last flush (at most once per key per interval),
        ask for the final record of every window the watermark has passed, and expire old windows."""
        settled = not getattr(self.app, "rebalancing", False) and not getattr(self.app, "in_recovery", False)
        if self.held.stale and settled:  # once per rebalance, after the tables are recovered
            self.held.rebuild(self._owned_keys())
        if self.clock.take_republish(settled):
            # The set of windows updated since the last flush lives in memory, so a worker killed between
            # a commit and its flush would leave a window's newest record behind its table for good;
            # closed windows too: late states may have changed one after its final record.
            self.dirty.update(self.held.held())
        owned = owned_partitions(self.groups)  # the windows of partitions moved away are the new owner's
        updated = [window for window in self.dirty if window_partition(window) in owned]
        self.dirty.clear()
        outbox = Outbox(self.app)
        for i, record in enumerate(self.group_step.records(updated, self._reader)):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # hundreds of summaries at a window's close: let the agents run between
            await outbox.send(aggregated_stats, group_name(record["dimension"], record["name"]),
                              {**record, "emitted_at": time.time()})
            self.stats.inc("records_published")
        self.recover_watermarks()
        if not self.held.stale:
            due = self.clock.to_close(self.held.held(), window_partition, self.held.finished.__contains__)
            for dimension, name, start in due:
                # Through the partials topic, so the final is written in its partition's context.
                await outbox.send(window_partials, group_name(dimension, name), WindowClose(dimension, name, start))
        await outbox.sent()
        if not self.held.stale:
            await self.expire_windows()


def by_key_partition(keys: list[str]) -> dict[int, list[str]]:
    """``keys`` by the partition they live in."""
    out: dict[int, list[str]] = {}
    for key in keys:
        out.setdefault(key_partition(key), []).append(key)
    return out


#: The window stage of this worker (the one object holding its state).
stage = WindowStage(app, settings, DIMENSIONS, aircraft, group_windows)


@app.on_rebalance_complete.connect
async def _after_rebalance(sender, **kwargs) -> None:
    stage.rebalanced()


@app.timer(stage.clock.ticks.every_s)
async def tick_watermarks() -> None:
    await stage.tick_watermarks()


@app.agent(window_partials)
async def window_groups(stream):
    async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_within_s):
        for group in by_partition(events):
            await stage.apply_partials(group)


@app.timer(settings.aggregate_flush_s)
async def flush_window_updates() -> None:
    await stage.flush()
