"""Deduplicated, event-time tumbling-window statistics per country and per airline.

    scored states, in the scoring agent's batch (by icao24, partition of flight-raw-data)
      --> aircraft stage: drop states already counted; update the aircraft's window partial (in its
          entry of the aircraft table, written with its memory: tables.aircraft)
      --> flight-window-partials (one message per partition and batch: the partials of the countries
          and airlines living there, each the aircraft's whole partial, an upsert), with its sender's
          event-time watermark (a tick, without partials, to the partitions a sender has not written
          to for a while)
      --> group stage: store the partial by icao24 (replacing any earlier copy)
      --> flight-aggregated-data: at most once per key per flush interval, and a final record
          when the window closes (the event-time watermark of its partials partition past end + grace)

Windows older than the expiry (closed for FLIGHTS_WINDOW_EXPIRY of event time)
are deleted from the group table and its changelog, and leave an aircraft's entry
when it is next written (an aircraft whose windows have all expired is deleted);
states that old are counted as expired and not windowed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence

from flights_app.app import app, settings
from flights_app.decode import decode_partial, rejections, where
from flights_app.partitioner import partition_for
from flights_app.publish import Outbox
from flights_app.records import InvalidState, ScoredState
from flights_app.topics import aggregated_stats, invalid_states, raw_states, window_partials
from ml.rules import EMERGENCY_SQUAWKS
from tables.aircraft import aircraft, newest_seen, windows_of
from tables.direct import TableWrites, read
from tables.expiry import expire, owned_partitions
from tables.keys import (
    FINAL,
    SHARDS,
    final_key,
    group_key,
    group_name,
    parse_group_key,
    shard_of,
    window_of_key,
)
from tables.partitions import by_partition, partition_of
from tables.watermarks import PartitionWatermarks, TickSchedule
from tables.window_tables import group_windows
from tables.windows import Partial, airline_of, is_expired, is_late, summarize, window_start

log = logging.getLogger("flights_app.windows")

#: Aircraft partials per message of flight-window-partials at most (about 250 bytes each: a batch
#: of a busy feed holds thousands of one country's aircraft, and Kafka refuses messages over 1 MiB).
MAX_PARTIALS = 1000
SIZE = settings.window_s
GRACE = settings.window_grace_s
EXPIRY = settings.window_expiry_s


class WindowStats:
    """Counters of this worker (exposed by the web endpoints and /metrics)."""

    states = 0
    duplicates_dropped = 0
    late_events = 0
    expired_events = 0
    partials_sent = 0
    records_published = 0
    finals_published = 0
    windows_expired = 0  # entries deleted: group window shards, and aircraft whose windows all expired
    aircraft_windows_dropped = 0  # expired windows left out of an aircraft's entry when it was written
    watermark_ticks = 0  # ticks sent with a batch's partials
    watermark_ticks_between_batches = 0  # by the timer, where a source's watermark rose since

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in WindowStats.__dict__ if not k.startswith("_") and k != "as_dict"}


stats = WindowStats()
#: The event-time watermark of the aircraft stage: the highest event time seen in each partition
#: of flight-raw-data (recovered from the table after a restart).
aircraft_watermark: dict[int, float] = {}
#: The group stage's, one per partition of flight-window-partials (see tables.watermarks).
watermarks = PartitionWatermarks(settings.topic_partitions, settings.watermark_idle_s)
#: When each aircraft-stage partition last wrote to each partials partition (ticks fill the gaps).
ticks = TickSchedule(settings.topic_partitions, min(1.0, settings.watermark_idle_s / 3))
#: Each source's newest watermark (and backlog flag) whose partials were handed to the producer.
sent_watermark: dict[int, tuple[float, bool]] = {}
#: (dimension, name, window_start) updated since the last flush, on this worker.
dirty: set[tuple[str, str, int]] = set()
#: Windows whose final record this worker has asked for (not asked twice while the first is in flight).
closing: set[tuple[str, str, int]] = set()
_last_expiry: dict = {"aircraft": None, "groups": None}
#: Set after every rebalance (the first start included), once the tables are recovered: the next
#: flush republishes every window this worker holds. The set of windows updated since the last flush
#: lives in memory, so a worker killed between a commit and its flush would otherwise leave a window's
#: newest record behind its table for good (the partials that updated it are committed, never replayed).
republish = {"pending": False}


@app.on_rebalance_complete.connect
async def _after_rebalance(sender, **kwargs) -> None:
    republish["pending"] = True


def _expired(start: int, watermark: float | None) -> bool:
    return watermark is not None and is_expired(start, watermark, SIZE, GRACE, EXPIRY)


def _new_aircraft_window(state) -> dict:
    return {"seen": [], "partial": Partial().as_dict(), "country": state.origin_country,
            "airline": airline_of(state.callsign)}


def count_in_windows(partition: int, items: Sequence[ScoredState], stored: dict[str, dict | None],
                     behind: bool = False) -> tuple[list[tuple[str | None, dict, int | None]], dict[str, dict]]:
    """The aircraft stage, for scored states of one partition of flight-raw-data (run by the scoring
    agent in that partition's table context): drop states already counted and update each aircraft's
    window partial. ``stored``: each aircraft's entry of the aircraft table (tables.aircraft), for every
    aircraft of ``items``. Returns the messages to send to flight-window-partials as (key, value,
    partition): one per partials partition holding its countries' and airlines' partial updates, and a
    tick carrying only the watermark to each partials partition not written to for a while; and each
    aircraft's windows after the batch (window start -> entry), without those the watermark expired.
    ``behind``: the partition has more states waiting (so it must not be taken for idle downstream)."""
    windows = {icao24: windows_of(entry) for icao24, entry in stored.items()}
    touched: dict[tuple[str, int], dict] = {}  # (icao24, window start) -> its entry, changed by the batch
    # The partials carry the lowest watermark any state of the batch was judged by (the one after its
    # first state), so none of them holds a window that its own watermark expires (tables.watermarks).
    stamp = None
    for scored in items:
        state = scored.state
        event_time = state.event_time
        watermark = max(aircraft_watermark.get(partition, event_time), event_time)
        aircraft_watermark[partition] = watermark
        stamp = watermark if stamp is None else stamp
        start = window_start(event_time, SIZE)
        stats.states += 1
        if _expired(start, watermark):  # its window is gone: neither counted nor windowed
            stats.expired_events += 1
            continue
        own = windows[state.icao24]
        entry = own.get(str(start)) or _new_aircraft_window(state)
        own[str(start)] = touched[(state.icao24, start)] = entry
        if event_time in entry["seen"]:
            # Not counted again, but its partial is sent again: after a crash the
            # entry's mark may have reached the changelog while the partial did not.
            stats.duplicates_dropped += 1
            continue
        entry["seen"].append(event_time)
        partial = Partial.from_dict(entry["partial"])
        if is_late(event_time, watermark, SIZE, GRACE):
            partial.late += 1
            stats.late_events += 1
        else:
            altitude = state.baro_altitude if state.baro_altitude is not None else state.geo_altitude
            partial.add(state.velocity, altitude, scored.ml_is_anomaly, state.on_ground,
                        state.squawk in EMERGENCY_SQUAWKS)
        entry["partial"] = partial.as_dict()
    mark = aircraft_watermark.get(partition)
    for own in windows.values():  # windows the partition's watermark has expired leave the entry
        gone = [start for start in own if _expired(int(start), mark)]
        for start in gone:
            del own[start]
        stats.aircraft_windows_dropped += len(gone)
    updates = defaultdict(list)  # (dimension, name) -> the partials of its aircraft updated in the batch
    for (icao24, start), entry in touched.items():
        for dimension, name in (("country", entry["country"]), ("airline", entry["airline"])):
            if name:
                updates[(dimension, name)].append({"window_start": start, "icao24": icao24,
                                                   "partial": entry["partial"]})
    by_target: dict[int, list[dict]] = defaultdict(list)  # partials partition -> its groups' updates
    for (dimension, name), partials in updates.items():
        by_target[key_partition(group_name(dimension, name))].append(
            {"dimension": dimension, "name": name, "partials": partials})
        stats.partials_sent += len(partials)
    messages: list[tuple[str | None, dict, int | None]] = []
    now = time.monotonic()
    for target, groups in sorted(by_target.items()):  # one message per partials partition and batch
        for chunk in _chunks(groups, MAX_PARTIALS):
            messages.append((None, partials_message(partition, stamp, behind, chunk), target))
        ticks.wrote(partition, target, now, stamp)
    if stamp is not None:  # after the partials, so the batch's newest watermark may go
        for target in ticks.due(partition, now, aircraft_watermark[partition]):
            messages.append((None, partials_message(partition, aircraft_watermark[partition], behind), target))
            stats.watermark_ticks += 1
    return messages, windows


def partials_message(source: int, watermark: float, behind: bool, groups: Sequence[dict] = ()) -> dict:
    """A message of flight-window-partials: the partials of the ``groups`` (countries, airlines) that
    live in one partition, with their sender's watermark; without groups, a tick carrying only that."""
    return {"kind": "partials", "source": source, "watermark": watermark, "behind": behind, "groups": list(groups)}


def _chunks(groups: list[dict], most: int) -> list[list[dict]]:
    """``groups`` split so that no chunk holds more than ``most`` partials (Kafka refuses messages
    over 1 MiB); a group split across chunks appears in each with a part of its partials."""
    chunks: list[list[dict]] = [[]]
    room = most
    for group in groups:
        partials = group["partials"]
        while partials:
            if room == 0:
                chunks.append([])
                room = most
            part, partials = partials[:room], partials[room:]
            chunks[-1].append({**group, "partials": part})
            room -= len(part)
    return chunks


async def send_partials(outbox: Outbox, partition: int, messages: list[tuple[str | None, dict, int | None]],
                        behind: bool) -> None:
    """Hand ``count_in_windows``' messages to the producer, in order; then the timer may tick the
    partition's newest watermark (sent before the partials, it could expire a window they hold)."""
    for key, value, target in messages:
        await outbox.send(window_partials, key, value, target)
    if partition in aircraft_watermark:
        sent_watermark[partition] = (aircraft_watermark[partition], behind)


@app.timer(ticks.every_s)
async def tick_watermarks() -> None:
    """Between batches, tick the partials partitions with each source's newest watermark sent, where
    it rose since (so a source's last batch's watermark reaches every partition, e.g. at a stream's
    end). Only for the partitions of flight-raw-data this worker holds now."""
    try:
        held = {tp.partition for tp in app.consumer.assignment() if tp.topic == raw_states.get_topic_name()}
    except Exception:  # noqa: BLE001 - the consumer is not up yet
        return
    outbox = Outbox(app)
    now = time.monotonic()
    for source, (watermark, behind) in list(sent_watermark.items()):
        if source in held:
            for target in ticks.due(source, now, watermark, rose_only=True):
                await outbox.send(window_partials, None, partials_message(source, watermark, behind), target)
                stats.watermark_ticks_between_batches += 1
    await outbox.sent()


@app.agent(window_partials)
async def window_groups(stream):
    async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_within_s):
        for group in by_partition(events):
            await apply_partials(group)


async def apply_partials(events: Sequence) -> None:
    """The group stage, for messages of one partition of flight-window-partials: store each aircraft's
    partial in its window (one write per window shard touched), publish a closed window's final record.
    Every write and record is acknowledged before the messages' offsets commit."""
    finals: list[tuple[str, str, int]] = []
    outbox = Outbox(app)
    writes = TableWrites(outbox)
    partition = events[0].message.partition
    with partition_of(events[-1]):
        touched: dict[str, dict] = {}
        # Windows changed, marked for the flush only once their entries are in RocksDB: writes await
        # the producer, and a flush in between would publish the window without the change and forget it.
        changed: set[tuple[str, str, int]] = set()
        for event in events:
            raw = event.message
            message = decode_partial(raw.value, raw.key, where(raw.topic, raw.partition, raw.offset))
            if isinstance(message, InvalidState):  # not a partial: counted, sent on with its reason
                rejections.note(raw.topic, message)
                await outbox.send(invalid_states, "", message)
                continue
            if message["kind"] == "close":
                for key, entry in touched.items():  # the summary reads the table: write first
                    await writes.put(group_windows, key, entry, partition)
                touched.clear()
                dirty.update(changed)
                changed.clear()
                window = (message["dimension"], message["name"], message["close"])
                if window not in finals and not read(group_windows, final_key(*window), partition):
                    summary = window_summary(*window)
                    finals.append(window)
                    if summary is not None:
                        await outbox.send(aggregated_stats, group_name(*window[:2]), {
                            **summary, "final": True, "emitted_at": time.time()})
                        stats.finals_published += 1
                continue
            if message["source"] is not None:  # (partials written before watermarks travelled with them lack it)
                watermarks.hear(partition, message["source"], message["watermark"], message["behind"],
                                time.monotonic())
            # Until this worker knows the partition's watermark (just after a start), the sender's
            # own watermark judges expiry. A partial of an expired window is dropped only if the
            # window is gone (a replayed partial must not bring a deleted window back); one whose
            # window is still here is applied (its close comes after it, in order).
            mark = watermarks.mark(partition)
            if mark is None:
                mark = message["watermark"]
            for updates in message["groups"]:
                dimension, name = updates["dimension"], updates["name"]
                for update in updates["partials"]:
                    start = update["window_start"]
                    if _expired(start, mark) and not window_exists(dimension, name, start, touched, partition):
                        continue  # a replayed partial of a window already deleted
                    key = group_key(dimension, name, start, shard_of(update["icao24"]))
                    entry = touched.get(key) or read(group_windows, key, partition) or {"partials": {}}
                    entry["partials"][update["icao24"]] = update["partial"]  # an upsert: replays overwrite
                    touched[key] = entry
                    changed.add((dimension, name, start))
        for key, entry in touched.items():  # one write per window shard touched
            await writes.put(group_windows, key, entry, partition)
        dirty.update(changed)
    await outbox.sent()
    writes.persist_offsets()
    if finals:
        # Marked only once the final record is acknowledged: a crash in between
        # publishes the (same) final again rather than losing it.
        with partition_of(events[-1]):
            for window in finals:
                group_windows[final_key(*window)] = {"final": True}
                closing.discard(window)


def key_partition(key: str) -> int:
    """The partition ``key`` lives in (a topic's or a table's key: they route alike)."""
    return partition_for(key.encode(), settings.topic_partitions)


def window_exists(dimension: str, name: str, start: int, touched: dict[str, dict], partition: int) -> bool:
    """Whether the group stage still holds the window (any shard, or its final mark)."""
    keys = [group_key(dimension, name, start, shard) for shard in range(SHARDS)] + [final_key(dimension, name, start)]
    return any(key in touched or read(group_windows, key, partition) for key in keys)


def window_summary(dimension: str, name: str, start: int) -> dict | None:
    """The window's statistics, from its 16 shards in its partition's database (None if nothing was
    counted). Not through Faust's table lookup: outside an event that searches every database the
    worker has open, a partition's that was revoked and opened again among them (stale copies)."""
    partition = key_partition(group_name(dimension, name))
    partials: dict[str, dict] = {}
    found = False
    for shard in range(SHARDS):
        entry = read(group_windows, group_key(dimension, name, start, shard), partition)
        if entry:
            found = True
            partials.update(entry["partials"])
    if not found:
        return None
    return {"dimension": dimension, "name": name, "window_start": start, "window_end": start + SIZE,
            **summarize(partials)}


def known_windows() -> set[tuple[str, str, int]]:
    """Every (dimension, name, window_start) of the partitions this worker holds now (a database of a
    partition moved to another worker may still be open here, with a stale copy)."""
    owned = owned_partitions(group_windows)
    out = set()
    for key in list(group_windows.keys()):
        if key_partition(key) not in owned:
            continue
        dimension, name, start, shard = parse_group_key(key)
        if shard != FINAL:
            out.add((dimension, name, start))
    return out


def recover_watermarks() -> None:
    """After a restart, each partition's watermark is the newest event time its table entries hold.
    (The group stage's comes back with the next partials.)"""
    if not aircraft_watermark:
        for icao24, entry in list(aircraft.items()):
            seen = newest_seen(entry)
            if seen is not None:
                partition = key_partition(icao24)
                aircraft_watermark[partition] = max(aircraft_watermark.get(partition, 0), seen)


def _horizons(marks: dict[int, float]) -> tuple:
    """Per partition, the newest window start its watermark may have expired: a scan for expired
    windows can find something new only when one of these moves."""
    return tuple(sorted((p, window_start(m - SIZE - GRACE - EXPIRY, SIZE)) for p, m in marks.items()))


def expire_windows() -> None:
    """Delete the windows past their expiry from both tables. Each table is scanned only when what
    decides its expiry moved: the aircraft table when a partition's watermark crossed into a window
    that may expire; the group table also when a final record was published."""
    aircraft_horizons = _horizons(aircraft_watermark)
    group_horizons = (_horizons(watermarks.marks), stats.finals_published)
    removed = 0
    if aircraft_horizons and aircraft_horizons != _last_expiry["aircraft"]:
        _last_expiry["aircraft"] = aircraft_horizons

        def aircraft_gone(icao24: str) -> bool:  # every window expired, judged by its partition's watermark
            partition = key_partition(icao24)
            mark = aircraft_watermark.get(partition)
            return mark is not None and all(_expired(int(start), mark)
                                            for start in windows_of(read(aircraft, icao24, partition)))

        removed += expire(aircraft, aircraft_gone, settings.topic_partitions)
    if group_horizons[0] and group_horizons != _last_expiry["groups"]:
        _last_expiry["groups"] = group_horizons
        # A country's window goes only once its final record is out (a close may still be on its way),
        # judged by the watermark of its own partials partition.
        finished = {(d, n, s) for d, n, s, shard in map(parse_group_key, list(group_windows.keys())) if shard == FINAL}
        removed += expire(group_windows, lambda key: _expired(window_of_key(key), watermarks.mark(key_partition(key)))
                          and parse_group_key(key)[:3] in finished, settings.topic_partitions)
    if removed:
        stats.windows_expired += removed
        log.info("Expired %d window entries", removed)


@app.timer(settings.aggregate_flush_s)
async def flush_window_updates() -> None:
    """Publish the windows updated since the last flush (at most once per key per interval),
    ask for the final record of every window the watermark has passed, and expire old windows."""
    if republish["pending"] and not getattr(app, "rebalancing", False) and not getattr(app, "in_recovery", False):
        republish["pending"] = False
        # Closed windows too: late states may have changed one after its final record.
        dirty.update(known_windows())
    owned = owned_partitions(group_windows)  # the windows of partitions moved away are the new owner's
    updated = [window for window in dirty if key_partition(group_name(*window[:2])) in owned]
    dirty.clear()
    outbox = Outbox(app)
    for dimension, name, start in updated:
        summary = window_summary(dimension, name, start)
        if summary is not None:
            await outbox.send(aggregated_stats, group_name(dimension, name),
                              {**summary, "final": False, "emitted_at": time.time()})
            stats.records_published += 1
    recover_watermarks()
    watermarks.advance(time.monotonic())  # sources fall idle without a message
    known = known_windows()
    closing.intersection_update(known)  # forget requests for windows that moved to another worker
    for window in sorted(known - closing):
        dimension, name, start = window
        watermark = watermarks.mark(key_partition(group_name(dimension, name)))
        if watermark is not None and start + SIZE + GRACE <= watermark \
                and not group_windows.get(final_key(*window)):
            # Through the partials topic, so the final is written in its partition's context.
            closing.add(window)
            await outbox.send(window_partials, group_name(dimension, name),
                              {"kind": "close", "dimension": dimension, "name": name, "close": start})
    await outbox.sent()
    expire_windows()
