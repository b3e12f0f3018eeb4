"""The window stage: deduplicated, event-time tumbling-window statistics per group of every declared
dimension (tables/dimensions.py: country, airline).

    scored states, in the scoring agent's batch (by icao24, partition of flight-raw-data)
      --> aircraft stage (WindowStage.count_in_windows): drop states already counted; update the
          aircraft's window partial (in its entry of the aircraft table, written with its memory)
      --> flight-window-partials (one message per partition and batch: the partials of the groups
          living there, each the aircraft's whole partial, an upsert), with its sender's event-time
          watermark (a tick, without partials, to the partitions a sender has not written to lately)
      --> group stage (WindowStage.apply_partials): store the partial by icao24 (replacing any copy)
      --> flight-aggregated-data: at most once per key per flush interval, and a final record when
          the window closes (the watermark of its partials partition past end + grace)

When windows close and expire is the window clock's (tables/clock.py, docs/window-clock.md).
Windows closed for FLIGHTS_WINDOW_EXPIRY of event time are deleted from the group table and its
changelog, and leave an aircraft's entry when it is next written (an aircraft whose windows have
all expired is deleted); states that old are counted as expired and not windowed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

import faust
from faust.types import AppT, CollectionT

from flights_app.app import app, settings
from flights_app.decode import rejections, where
from flights_app.metrics import Metric, StageMetrics
from flights_app.partitioner import partition_for
from flights_app.publish import Outbox
from flights_app.records import InvalidState, ScoredState
from flights_app.settings import Settings
from flights_app.topics import aggregated_stats, invalid_states, raw_states, window_partials
from ml.rules import EMERGENCY_SQUAWKS
from tables.aircraft import WindowCount, aircraft, newest_seen, windows_of
from tables.clock import Window, WindowClock
from tables.dimensions import DIMENSIONS, Dimension
from tables.direct import TableWrites, read
from tables.expiry import expire, owned_partitions
from tables.keys import FINAL, SHARDS, final_key, group_key, group_name, parse_group_key, shard_of, window_of_key
from tables.partials import (
    GroupPartials,
    WindowClose,
    close_message,
    decode_partial,
    group_partials,
    partial_update,
    partials_message,
)
from tables.partitions import by_partition, partition_of
from tables.window_tables import group_windows
from tables.windows import Partial, summarize, upsert_partial

log = logging.getLogger("flights_app.windows")

#: Aircraft partials per message of flight-window-partials at most (about 250 bytes each: a batch
#: of a busy feed holds thousands of one country's aircraft, and Kafka refuses messages over 1 MiB).
MAX_PARTIALS = 1000

#: Window summaries a flush computes before it lets the agents run (each reads its 16 shards).
YIELD_EVERY = 20

#: A message for flight-window-partials: (key, value, partition).
Message = tuple[str | None, faust.Record, int | None]


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
                                              "the timer, where a source's watermark rose since"),
)


def key_partition(key: str) -> int:
    """The partition ``key`` lives in (a topic's or a table's key: they route alike)."""
    return partition_for(key.encode(), settings.topic_partitions)


def _chunks(groups: list[GroupPartials], most: int) -> list[list[GroupPartials]]:
    """``groups`` split so that no chunk holds more than ``most`` partials (Kafka refuses messages
    over 1 MiB); a group split across chunks appears in each with a part of its partials."""
    chunks: list[list[GroupPartials]] = [[]]
    room = most
    for group in groups:
        partials = group.partials
        while partials:
            if room == 0:
                chunks.append([])
                room = most
            part, partials = partials[:room], partials[room:]
            chunks[-1].append(group if len(part) == len(group.partials) else
                              group_partials(group.dimension, group.name, part))
            room -= len(part)
    return chunks


class WindowStage:
    """Both window stages of this worker, their tables, clock and counters.

    The web layer asks it through ``summaries``, ``windows_of_group``, ``counters`` and ``clock``."""

    def __init__(self, app: AppT, settings: Settings, dimensions: Sequence[Dimension],
                 aircraft: CollectionT, groups: CollectionT):
        self.app = app
        self.dimensions = tuple(dimensions)
        self.aircraft, self.groups = aircraft, groups
        self.size_s = settings.window_s
        self.clock = WindowClock(settings.window_s, settings.window_grace_s, settings.window_expiry_s,
                                 settings.topic_partitions, settings.watermark_idle_s)
        self.stats = StageMetrics(WINDOW_METRICS)
        #: windows updated since the last flush, on this worker
        self.dirty: set[Window] = set()
        #: icao24 -> the newest window start of its aircraft entry as this worker last wrote it (None: no
        #: window left), so that an expiry scan need not read every entry; forgotten at every rebalance
        #: (a partition that moved away and back may have been written elsewhere in between)
        self.newest_window: dict[str, int | None] = {}

    def _new_aircraft_window(self, state) -> dict:
        return {"seen": "", "partial": Partial().as_dict(), **{d.name: d.group_of(state) for d in self.dimensions}}

    # -- the aircraft stage, run by the scoring agent --------------------------------------------
    def count_in_windows(self, partition: int, items: Sequence[ScoredState], stored: dict[str, dict | None],
                         behind: bool = False) -> tuple[list[Message], dict[str, dict]]:
        """The aircraft stage, for scored states of one partition of flight-raw-data (run by the scoring
        agent in that partition's table context): drop states already counted and update each aircraft's
        window partial. ``stored``: each aircraft's entry of the aircraft table (tables.aircraft), for every
        aircraft of ``items``. Returns the messages to send to flight-window-partials: one per partials
        partition holding its groups' partial updates, and a tick carrying only the watermark to each
        partials partition not written to for a while; and each aircraft's windows after the batch
        (window start -> entry), without those the watermark expired.
        ``behind``: the partition has more states waiting (so it must not be taken for idle downstream)."""
        clock = self.clock
        counts = dict.fromkeys(("states", "expired_events", "duplicates_dropped", "late_events",
                                "aircraft_windows_dropped", "partials_sent", "watermark_ticks"), 0)
        windows = {icao24: windows_of(entry) for icao24, entry in stored.items()}
        touched: dict[tuple[str, int], WindowCount] = {}  # (icao24, window start) -> its window, counted into
        # The partials carry the lowest watermark any state of the batch was judged by (the one after its
        # first state), so none of them holds a window that its own watermark expires (tables.watermarks).
        stamp = None
        for scored in items:
            state = scored.state
            event_time = state.event_time
            watermark = clock.saw(partition, event_time)
            stamp = watermark if stamp is None else stamp
            start = clock.window_of(event_time)
            counts["states"] += 1
            if clock.expired(start, watermark):  # its window is gone: neither counted nor windowed
                counts["expired_events"] += 1
                continue
            count = touched.get((state.icao24, start))
            if count is None:
                own = windows[state.icao24]
                entry = own.get(str(start)) or self._new_aircraft_window(state)
                for dimension in self.dimensions:  # an entry written before a dimension was declared
                    if dimension.name not in entry:
                        entry[dimension.name] = dimension.group_of(state)
                own[str(start)] = entry
                count = touched[(state.icao24, start)] = WindowCount(entry, start)
            if not count.mark(event_time):
                # Not counted again, but its partial is sent again: after a crash the
                # entry's mark may have reached the changelog while the partial did not.
                counts["duplicates_dropped"] += 1
                continue
            if clock.late(event_time, watermark):
                count.partial.late += 1
                counts["late_events"] += 1
            else:
                altitude = state.baro_altitude if state.baro_altitude is not None else state.geo_altitude
                count.partial.add(state.velocity, altitude, scored.ml_is_anomaly, state.on_ground,
                                  state.squawk in EMERGENCY_SQUAWKS)
        mark = clock.sources.get(partition)
        for own in windows.values():  # windows the partition's watermark has expired leave the entry
            gone = [start for start in own if clock.expired(int(start), mark)]
            for start in gone:
                del own[start]
            counts["aircraft_windows_dropped"] += len(gone)
        updates = defaultdict(list)  # (dimension, name) -> the partials of its aircraft updated in the batch
        for (icao24, start), count in touched.items():
            entry = count.close()
            for dimension in self.dimensions:
                name = entry[dimension.name]
                if name:
                    updates[(dimension.name, name)].append(partial_update(start, icao24, entry["partial"]))
        by_target: dict[int, list[GroupPartials]] = defaultdict(list)  # partials partition -> its groups' updates
        for (dimension, name), partials in updates.items():
            by_target[key_partition(group_name(dimension, name))].append(group_partials(dimension, name, partials))
            counts["partials_sent"] += len(partials)
        messages: list[Message] = []
        now = time.monotonic()
        for target, groups in sorted(by_target.items()):  # one message per partials partition and batch
            for chunk in _chunks(groups, MAX_PARTIALS):
                messages.append((None, partials_message(partition, stamp, behind, chunk), target))
            clock.ticks.wrote(partition, target, now, stamp)
        if stamp is not None:  # after the partials, so the batch's newest watermark may go
            newest = clock.sources[partition]
            for target in clock.ticks.due(partition, now, newest):
                messages.append((None, partials_message(partition, newest, behind), target))
                counts["watermark_ticks"] += 1
        for key, n in counts.items():
            self.stats.inc(key, n)
        for icao24, own in windows.items():  # what the scoring stage writes to each entry
            self.newest_window[icao24] = max(map(int, own), default=None)
        return messages, windows

    async def send_partials(self, outbox: Outbox, partition: int, messages: list[Message], behind: bool) -> None:
        """Hand ``count_in_windows``' messages to the producer, in order; then the timer may tick the
        partition's newest watermark."""
        for key, value, target in messages:
            await outbox.send(window_partials, key, value, target)
        self.clock.handed_over(partition, behind)

    def recover_watermarks(self) -> None:
        """After a restart, each partition's watermark is the newest event time its table entries hold.
        (The group stage's comes back with the next partials.)"""
        if not self.clock.sources:
            self.clock.recover((key_partition(icao24), seen) for icao24, entry in list(self.aircraft.items())
                               if (seen := newest_seen(entry)) is not None)

    async def tick_watermarks(self) -> None:
        """Between batches, tick the partials partitions with each source's newest watermark sent, where
        it rose since (so a source's last batch's watermark reaches every partition, e.g. at a stream's
        end). Only for the partitions of flight-raw-data this worker holds now."""
        try:
            held = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == raw_states.get_topic_name()}
        except Exception:  # noqa: BLE001 - the consumer is not up yet
            return
        outbox = Outbox(self.app)
        now = time.monotonic()
        for source, (watermark, behind) in list(self.clock.sent.items()):
            if source in held:
                for target in self.clock.ticks.due(source, now, watermark, rose_only=True):
                    await outbox.send(window_partials, None, partials_message(source, watermark, behind), target)
                    self.stats.inc("watermark_ticks_between_batches")
        await outbox.sent()

    # -- the group stage -------------------------------------------------------------------
    async def apply_partials(self, events: Sequence) -> None:
        """The group stage, for messages of one partition of flight-window-partials: store each aircraft's
        partial in its window (one write per window shard touched), publish a closed window's final record.
        Every write and record is acknowledged before the messages' offsets commit."""
        groups, clock = self.groups, self.clock
        finals: list[Window] = []
        outbox = Outbox(self.app)
        writes = TableWrites(outbox)
        partition = events[0].message.partition
        with partition_of(events[-1]):
            touched: dict[str, dict] = {}
            # Windows changed, marked for the flush only once their entries are in RocksDB: writes await
            # the producer, and a flush in between would publish the window without the change and forget it.
            changed: set[Window] = set()
            stale = 0
            for event in events:
                raw = event.message
                message = decode_partial(raw.value, raw.key, where(raw.topic, raw.partition, raw.offset))
                if isinstance(message, InvalidState):  # not a partial: counted, sent on with its reason
                    rejections.note(raw.topic, message)
                    await outbox.send(invalid_states, "", message)
                    continue
                if isinstance(message, WindowClose):
                    await writes.put_many(groups, touched.items(), partition)  # the summary reads the table: first
                    touched.clear()
                    self.dirty.update(changed)
                    changed.clear()
                    window = (message.dimension, message.name, message.close)
                    if window not in finals and not read(groups, final_key(*window), partition):
                        summary = self.window_summary(*window)
                        finals.append(window)
                        if summary is not None:
                            await outbox.send(aggregated_stats, group_name(*window[:2]), {
                                **summary, "final": True, "emitted_at": time.time()})
                            self.stats.inc("finals_published")
                        await asyncio.sleep(0)  # every window closes at once: let the other agents run between
                    continue
                if message.source is not None:  # (partials written before watermarks travelled with them lack it)
                    clock.heard(partition, message.source, message.watermark, message.behind, time.monotonic())
                # Until this worker knows the partition's watermark (just after a start), the sender's
                # own watermark judges expiry. A partial of an expired window is dropped only if the
                # window is gone (a replayed partial must not bring a deleted window back); one whose
                # window is still here is applied (its close comes after it, in order).
                mark = clock.group_mark(partition)
                if mark is None:
                    mark = message.watermark
                for group in message.groups:
                    dimension, name = group.dimension, group.name
                    for update in group.partials:
                        start = update.window_start
                        if clock.expired(start, mark) and not self._window_exists(dimension, name, start,
                                                                                  touched, partition):
                            continue  # a replayed partial of a window already deleted
                        key = group_key(dimension, name, start, shard_of(update.icao24))
                        entry = touched.get(key) or read(groups, key, partition) or {"partials": {}}
                        if not upsert_partial(entry["partials"], update.icao24, update.partial):
                            stale += 1  # an older copy of a partial the window holds
                            continue
                        touched[key] = entry
                        changed.add((dimension, name, start))
            await writes.put_many(groups, touched.items(), partition)  # one write per window shard touched
            self.dirty.update(changed)
            if stale:
                self.stats.inc("stale_partials", stale)
                log.warning("Kept %d aircraft partials that older copies arrived for (partition %d)", stale, partition)
        await outbox.sent()
        writes.persist_offsets()
        if finals:
            # Marked only once the final record is acknowledged: a crash in between
            # publishes the (same) final again rather than losing it.
            with partition_of(events[-1]):
                for window in finals:
                    groups[final_key(*window)] = {"final": True}
                    clock.finished(window)

    def _window_exists(self, dimension: str, name: str, start: int, touched: dict[str, dict], partition: int) -> bool:
        """Whether the group stage still holds the window (any shard, or its final mark)."""
        keys = [group_key(dimension, name, start, shard) for shard in range(SHARDS)]
        keys.append(final_key(dimension, name, start))
        return any(key in touched or read(self.groups, key, partition) for key in keys)

    def rebalanced(self) -> None:
        self.clock.rebalanced()
        self.newest_window.clear()

    # -- queries (the web layer's) -------------------------------------------------------------
    def window_summary(self, dimension: str, name: str, start: int) -> dict | None:
        """The window's statistics, from its 16 shards in its partition's database (None if nothing was
        counted). Not through Faust's table lookup: outside an event that searches every database the
        worker has open, a partition's that was revoked and opened again among them (stale copies)."""
        partition = key_partition(group_name(dimension, name))
        partials: dict[str, dict] = {}
        found = False
        for shard in range(SHARDS):
            entry = read(self.groups, group_key(dimension, name, start, shard), partition)
            if entry:
                found = True
                partials.update(entry["partials"])
        if not found:
            return None
        return {"dimension": dimension, "name": name, "window_start": start, "window_end": start + self.size_s,
                **summarize(partials)}

    def known_windows(self) -> set[Window]:
        """Every (dimension, name, window_start) of the partitions this worker holds now (a database of a
        partition moved to another worker may still be open here, with a stale copy)."""
        owned = owned_partitions(self.groups)
        out = set()
        for key in list(self.groups.keys()):
            if key_partition(key) not in owned:
                continue
            dimension, name, start, shard = parse_group_key(key)
            if shard != FINAL:
                out.add((dimension, name, start))
        return out

    def summaries(self, dimension: str) -> list[dict]:
        """Every window summary of ``dimension`` this worker holds."""
        rows = []
        for dim, name, start in self.known_windows():
            if dim == dimension and (summary := self.window_summary(dim, name, start)) is not None:
                rows.append(summary)
        return rows

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
    def expire_windows(self) -> None:
        """Delete the windows past their expiry from both tables. Each table is scanned only when what
        decides its expiry moved (WindowClock.aircraft_scan_due, groups_scan_due)."""
        clock = self.clock
        removed = 0
        if clock.aircraft_scan_due():
            def aircraft_gone(icao24: str) -> bool:  # every window expired, judged by its partition's watermark
                partition = key_partition(icao24)
                mark = clock.sources.get(partition)
                if mark is None:
                    return False
                if icao24 not in self.newest_window:  # not written here since the last rebalance: read it
                    own = windows_of(read(self.aircraft, icao24, partition))
                    self.newest_window[icao24] = max(map(int, own), default=None)
                newest = self.newest_window[icao24]  # a window expires after every older one
                return newest is None or clock.expired(newest, mark)

            gone = expire(self.aircraft, aircraft_gone, settings.topic_partitions)
            for icao24 in gone:
                self.newest_window.pop(icao24, None)
            removed += len(gone)
        if clock.groups_scan_due(self.stats.finals_published):
            # A group's window goes only once its final record is out (a close may still be on its way),
            # judged by the watermark of its own partials partition.
            finished = {(d, n, s) for d, n, s, shard in map(parse_group_key, list(self.groups.keys()))
                        if shard == FINAL}

            def group_gone(key: str) -> bool:
                return clock.expired(window_of_key(key), clock.group_mark(key_partition(key))) \
                    and parse_group_key(key)[:3] in finished

            removed += len(expire(self.groups, group_gone, settings.topic_partitions))
        if removed:
            self.stats.inc("windows_expired", removed)
            log.info("Expired %d window entries", removed)

    async def flush(self) -> None:
        """Publish the windows updated since the last flush (at most once per key per interval),
        ask for the final record of every window the watermark has passed, and expire old windows."""
        settled = not getattr(self.app, "rebalancing", False) and not getattr(self.app, "in_recovery", False)
        if self.clock.take_republish(settled):
            # The set of windows updated since the last flush lives in memory, so a worker killed between
            # a commit and its flush would leave a window's newest record behind its table for good;
            # closed windows too: late states may have changed one after its final record.
            self.dirty.update(self.known_windows())
        owned = owned_partitions(self.groups)  # the windows of partitions moved away are the new owner's
        updated = [window for window in self.dirty if key_partition(group_name(*window[:2])) in owned]
        self.dirty.clear()
        outbox = Outbox(self.app)
        for i, (dimension, name, start) in enumerate(updated):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # hundreds of summaries at a window's close: let the agents run between
            summary = self.window_summary(dimension, name, start)
            if summary is not None:
                await outbox.send(aggregated_stats, group_name(dimension, name),
                                  {**summary, "final": False, "emitted_at": time.time()})
                self.stats.inc("records_published")
        self.recover_watermarks()
        due = self.clock.to_close(self.known_windows(), lambda w: key_partition(group_name(*w[:2])),
                                  lambda w: bool(self.groups.get(final_key(*w))), time.monotonic())
        for dimension, name, start in due:
            # Through the partials topic, so the final is written in its partition's context.
            await outbox.send(window_partials, group_name(dimension, name), close_message(dimension, name, start))
        await outbox.sent()
        self.expire_windows()


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
