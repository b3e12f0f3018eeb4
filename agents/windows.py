"""Deduplicated, event-time tumbling-window statistics per country and per airline.

    flight-processed-data (by icao24)
      --> aircraft stage: drop states already counted; update the aircraft's window partial
      --> flight-window-partials (by "country|name" and "airline|name"): the whole partial, an upsert
      --> group stage: store the partial by icao24 (replacing any earlier copy)
      --> flight-aggregated-data: at most once per key per flush interval, and a final record
          when the window closes (event-time watermark past end + grace)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from flights_app.app import app, settings
from flights_app.topics import aggregated_stats, processed_states, window_partials
from ml.rules import EMERGENCY_SQUAWKS
from tables.partitions import by_partition, partition_of
from tables.window_tables import SHARDS, aircraft_windows, group_key, group_windows, shard_of
from tables.windows import Partial, airline_of, is_late, summarize, window_start

log = logging.getLogger("flights_app.windows")

SIZE = settings.window_s
GRACE = settings.window_grace_s


class WindowStats:
    """Counters of this worker (exposed by the web endpoints)."""

    states = 0
    duplicates_dropped = 0
    late_events = 0
    partials_sent = 0
    records_published = 0
    finals_published = 0


stats = WindowStats()
#: Highest event time seen by each stage on this worker: the event-time watermark.
aircraft_watermark: dict[int, float] = {}
group_watermark = {"event_time": None}
#: (dimension, name, window_start) updated since the last flush, on this worker.
dirty: set[tuple[str, str, int]] = set()


def _new_aircraft_entry(state) -> dict:
    return {"seen": [], "partial": Partial().as_dict(), "country": state.origin_country,
            "airline": airline_of(state.callsign)}


@app.agent(processed_states)
async def window_aircraft(stream):
    async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_within_s):
        sends = []
        for group in by_partition(events):
            partition = group[0].message.partition
            with partition_of(group[-1]):
                touched: dict[str, dict] = {}
                for event in group:
                    scored = event.value
                    state = scored.state
                    event_time = state.event_time
                    watermark = max(aircraft_watermark.get(partition, event_time), event_time)
                    aircraft_watermark[partition] = watermark
                    start = window_start(event_time, SIZE)
                    key = f"{state.icao24}|{start}"
                    entry = touched.get(key) or aircraft_windows.get(key) or _new_aircraft_entry(state)
                    stats.states += 1
                    if event_time in entry["seen"]:
                        # Not counted again, but its partial is sent again: after a crash the
                        # entry's mark may have reached the changelog while the partial did not.
                        stats.duplicates_dropped += 1
                        touched[key] = entry
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
                    touched[key] = entry
                updates = defaultdict(list)  # (dimension, name) -> partials: one message per group per batch
                for key, entry in touched.items():  # one table write per aircraft-window per batch
                    aircraft_windows[key] = entry
                    icao24, start = key.split("|")
                    for dimension, name in (("country", entry["country"]), ("airline", entry["airline"])):
                        if name:
                            updates[(dimension, name)].append({
                                "window_start": int(start), "icao24": icao24, "partial": entry["partial"],
                                "event_time": max(entry["seen"])})
                for (dimension, name), partials in updates.items():
                    sends.append(window_partials.send_soon(key=f"{dimension}|{name}", value={
                        "dimension": dimension, "name": name, "partials": partials}))
                    stats.partials_sent += len(partials)
        await asyncio.gather(*sends)


@app.agent(window_partials)
async def window_groups(stream):
    async for events in stream.take_events(settings.score_batch_max, within=settings.score_batch_within_s):
        sends = []
        for group in by_partition(events):
            with partition_of(group[-1]):
                touched: dict[str, dict] = {}
                for event in group:
                    message = event.value
                    if "close" in message:
                        sends += _close(message["dimension"], message["name"], message["close"])
                        continue
                    dimension, name = message["dimension"], message["name"]
                    for update in message["partials"]:
                        seen = group_watermark["event_time"]
                        group_watermark["event_time"] = (update["event_time"] if seen is None
                                                         else max(seen, update["event_time"]))
                        key = group_key(dimension, name, update["window_start"], shard_of(update["icao24"]))
                        entry = touched.get(key) or group_windows.get(key) or {"partials": {}}
                        entry["partials"][update["icao24"]] = update["partial"]  # an upsert: replays overwrite
                        touched[key] = entry
                        dirty.add((dimension, name, update["window_start"]))
                for key, entry in touched.items():
                    group_windows[key] = entry
        await asyncio.gather(*sends)


def window_summary(dimension: str, name: str, start: int) -> dict | None:
    """The window's statistics, from its 16 shards (None if nothing was counted)."""
    partials: dict[str, dict] = {}
    found = False
    for shard in range(SHARDS):
        entry = group_windows.get(group_key(dimension, name, start, shard))
        if entry:
            found = True
            partials.update(entry["partials"])
    if not found:
        return None
    return {"dimension": dimension, "name": name, "window_start": start, "window_end": start + SIZE,
            **summarize(partials)}


def known_windows() -> set[tuple[str, str, int]]:
    """Every (dimension, name, window_start) this worker's tables hold."""
    out = set()
    for key in list(group_windows.keys()):
        dimension, name, start, shard = key.split("|")
        if shard != "final":
            out.add((dimension, name, int(start)))
    return out


def _final_key(dimension: str, name: str, start: int) -> str:
    return f"{dimension}|{name}|{start}|final"


def _close(dimension: str, name: str, start: int) -> list:
    """In the partition's context: publish the window's final record once, and mark it."""
    marker = _final_key(dimension, name, start)
    if group_windows.get(marker):
        return []
    summary = window_summary(dimension, name, start)
    group_windows[marker] = {"final": True}
    if summary is None:
        return []
    stats.finals_published += 1
    return [aggregated_stats.send_soon(key=f"{dimension}|{name}",
                                       value={**summary, "final": True, "emitted_at": time.time()})]


@app.timer(settings.aggregate_flush_s)
async def flush_window_updates() -> None:
    """Publish the windows updated since the last flush (at most once per key per interval),
    and ask for the final record of every window the watermark has passed."""
    updated = list(dirty)
    dirty.clear()
    sends = []
    for dimension, name, start in updated:
        summary = window_summary(dimension, name, start)
        if summary is not None:
            sends.append(aggregated_stats.send_soon(key=f"{dimension}|{name}",
                                                    value={**summary, "final": False, "emitted_at": time.time()}))
            stats.records_published += 1
    watermark = group_watermark["event_time"]
    if watermark is not None:
        closing = defaultdict(set)
        for dimension, name, start in known_windows():
            if start + SIZE + GRACE <= watermark:
                closing[(dimension, name)].add(start)
        for (dimension, name), starts in closing.items():
            for start in starts:
                if not group_windows.get(_final_key(dimension, name, start)):
                    # Through the partials topic, so the final is written in its partition's context.
                    sends.append(window_partials.send_soon(key=f"{dimension}|{name}", value={
                        "dimension": dimension, "name": name, "close": start}))
    if sends:
        await asyncio.gather(*sends)
