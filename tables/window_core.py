"""The window core: every decision of the windowed statistics, pure (no Faust, no Kafka, no I/O).

    scored states of one partition of flight-raw-data, their aircraft's windows, the clock
      --> AircraftWindows.count(): dedup, each aircraft's window partials, the partials messages
          (one per partials partition and batch) and watermark ticks, the windows to write back
    partials messages of one partition of flight-window-partials, a reader of the group table
      --> GroupWindows.apply(): the group entries to write, the final records to publish
    the flush: GroupWindows.records() (the updated windows' records), clock.to_close() (the windows to ask
      a final for), HeldWindows (the windows held, and the expired ones' keys), aircraft_expired

The agents (agents/windows.py, agents/scoring.py) only drive it: read the tables, call, write, send,
commit. ``tests/test_window_core.py`` runs it against a brute-force oracle with crashes and partitions
moving between workers, in process.

Exact totals under at-least-once delivery come from two idempotent steps (docs/architecture.md):
an aircraft's window holds the event times already counted and its partial aggregates, in one table
write; a group's window stores each aircraft's partial by icao24, replaced whole by a newer one.

A dimension is fixed per aircraft (its group comes from the state that opened the aircraft's window;
all fixed dimensions share one partial) or per state (``Dimension.per_state``: each state counts in
the group it was in, and the aircraft's window keeps one partial per group it visited).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from flights_app.squawks import EMERGENCY_SQUAWKS
from tables.clock import Window, WindowClock
from tables.dimensions import Dimension
from tables.keys import FINAL, SHARDS, final_key, group_key, group_name, parse_group_key, shard_of
from tables.windows import Partial, summarize, upsert_partial

#: Aircraft partials per message of flight-window-partials at most (about 250 bytes each: a batch
#: of a busy feed holds thousands of one country's aircraft, and Kafka refuses messages over 1 MiB).
MAX_PARTIALS = 1000

#: Where an aircraft window keeps its per-state dimensions' partials: {dimension: {group: Partial}}.
BY_STATE = "by_state"


# -- the messages of flight-window-partials (tables/partials.py reads them back as Faust records) ------
@dataclass(frozen=True)
class PartialUpdate:
    """One aircraft's whole partial of one window of one group: stored by icao24, replacing any copy."""

    window_start: int
    icao24: str
    partial: dict


@dataclass(frozen=True)
class GroupPartials:
    dimension: str
    name: str
    partials: list[PartialUpdate]


@dataclass(frozen=True)
class WindowPartials:
    """Partials of the groups living in one partials partition, from partition ``source`` of
    flight-raw-data at its ``watermark`` (None: the source knows none yet); no groups: a tick.
    ``idle``: the source has nothing to process (its watermark holds no window: tables/watermarks.py)."""

    source: int | None
    watermark: float | None
    groups: list[GroupPartials] = field(default_factory=list)
    idle: bool = False
    kind: str = "partials"


@dataclass(frozen=True)
class WindowClose:
    """Ask the group's partition to publish the final record of the window starting at ``close``."""

    dimension: str
    name: str
    close: int
    kind: str = "close"


#: (partials partition, message)
Outgoing = tuple[int, WindowPartials]


def partials_chunks(groups: list[GroupPartials], most: int = MAX_PARTIALS) -> list[list[GroupPartials]]:
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
                              GroupPartials(group.dimension, group.name, part))
            room -= len(part)
    return chunks


# -- an aircraft's windows ----------------------------------------------------------------------
def seen_mask(window: dict, start: int) -> int:
    """The event times counted in an aircraft's window starting at ``start``: bit ``t - start`` is set
    for each. Kept in the entry as hex (an aircraft polled every 5 s has 120 a 10-minute window: 150
    characters). Entries written before it keep a list of event times, read here alike."""
    seen = window.get("seen")
    if isinstance(seen, str):
        return int(seen, 16) if seen else 0
    mask = 0
    for t in seen or ():
        mask |= 1 << (int(t) - start)
    return mask


def newest_window_start(windows: dict[str, dict]) -> int | None:
    """The start of an aircraft's newest window (None: it has none)."""
    return max(map(int, windows), default=None)


def newest_seen(windows: dict[str, dict]) -> int | None:
    """The newest event time counted in any of an aircraft's windows."""
    newest = None
    for start, window in windows.items():
        mask = seen_mask(window, int(start))
        if mask:
            t = int(start) + mask.bit_length() - 1
            newest = t if newest is None else max(newest, t)
    return newest


def add_state(partial: Partial, state: Any, anomaly: bool, late: bool) -> None:
    """Count one state in ``partial``: in its figures, or as late (reported, not averaged)."""
    if late:
        partial.late += 1
        return
    altitude = state.baro_altitude if state.baro_altitude is not None else state.geo_altitude
    partial.add(state.velocity, altitude, anomaly, state.on_ground, state.squawk in EMERGENCY_SQUAWKS)


class WindowCount:
    """One window of an aircraft while a batch counts states into it: its seen mask, the fixed
    dimensions' partial and the per-state dimensions' partials held as an int and ``Partial``s,
    written back into the window once (``close``), not per state."""

    def __init__(self, window: dict, start: int, per_state: Sequence[Dimension]):
        self.window, self.start, self.per_state = window, start, per_state
        self.mask = seen_mask(window, start)
        self.partial = Partial.from_dict(window["partial"])
        stored = window.get(BY_STATE) or {}
        self.by_state: dict[str, dict[str, Partial]] = {
            d.name: {g: Partial.from_dict(p) for g, p in (stored.get(d.name) or {}).items()} for d in per_state}

    def mark(self, event_time: int) -> bool:
        """Count ``event_time`` in the window; False if it was counted already."""
        bit = 1 << (event_time - self.start)
        if self.mask & bit:
            return False
        self.mask |= bit
        return True

    def add(self, state: Any, anomaly: bool, late: bool) -> None:
        add_state(self.partial, state, anomaly, late)
        for dimension in self.per_state:
            group = dimension.group_of(state)
            if group:
                add_state(self.by_state[dimension.name].setdefault(group, Partial()), state, anomaly, late)

    def close(self) -> dict:
        """The window's entry, holding what was counted."""
        self.window["seen"] = format(self.mask, "x")
        self.window["partial"] = self.partial.as_dict()
        if self.per_state:
            self.window[BY_STATE] = {name: {g: p.as_dict() for g, p in groups.items()}
                                     for name, groups in self.by_state.items()}
        return self.window


@dataclass
class AircraftStep:
    """What one batch of one partition of flight-raw-data did to the windows."""

    #: icao24 -> its windows after the batch (window start -> window), expired ones left out
    windows: dict[str, dict[str, dict]]
    #: the partials messages and ticks, in the order to send them
    messages: list[Outgoing]
    counts: Counter


class AircraftWindows:
    """The aircraft stage: dedup and each aircraft's partials, per partition of flight-raw-data."""

    def __init__(self, clock: WindowClock, dimensions: Sequence[Dimension], route: Callable[[str], int],
                 max_partials: int = MAX_PARTIALS):
        self.clock = clock
        self.fixed = tuple(d for d in dimensions if not d.per_state)
        self.per_state = tuple(d for d in dimensions if d.per_state)
        self.route = route  # a group's name -> its partials partition
        self.max_partials = max_partials

    def _new_window(self, state: Any) -> dict:
        return {"seen": "", "partial": Partial().as_dict(), **{d.name: d.group_of(state) for d in self.fixed}}

    def count(self, partition: int, items: Iterable[Any], windows: dict[str, dict[str, dict]],
              now: float | None = None) -> AircraftStep:
        """Count scored states (``item.state``, ``item.ml_is_anomaly``) of ``partition`` of flight-raw-data
        into their aircraft's windows. ``windows``: each aircraft's windows as stored (window start ->
        window), for every aircraft of ``items`` (changed in place). Returns the windows after the batch,
        the messages to send to flight-window-partials (one per partials partition holding its groups'
        partials, and a tick carrying only the watermark to each partials partition not written to for
        a while) and the counters."""
        clock = self.clock
        now = time.monotonic() if now is None else now
        counts: Counter = Counter()
        touched: dict[tuple[str, int], WindowCount] = {}  # (icao24, window start) -> its window, counted into
        # The partials carry the lowest watermark any state of the batch was judged by (the one after its
        # first state), so none of them holds a window that its own watermark expires (tables.watermarks).
        stamp = None
        for item in items:
            state = item.state
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
                own = windows.setdefault(state.icao24, {})
                window = own.get(str(start)) or self._new_window(state)
                for dimension in self.fixed:  # a window written before a dimension was declared
                    if dimension.name not in window:
                        window[dimension.name] = dimension.group_of(state)
                own[str(start)] = window
                count = touched[(state.icao24, start)] = WindowCount(window, start, self.per_state)
            if not count.mark(event_time):
                # Not counted again, but its partials are sent again: after a crash the
                # window's mark may have reached the changelog while the partials did not.
                counts["duplicates_dropped"] += 1
                continue
            late = clock.late(event_time, watermark)
            counts["late_events"] += late
            count.add(state, item.ml_is_anomaly, late)
        mark = clock.sources.get(partition)
        for own in windows.values():  # windows the partition's watermark has expired leave the aircraft
            gone = [start for start in own if clock.expired(int(start), mark)]
            for start in gone:
                del own[start]
            counts["aircraft_windows_dropped"] += len(gone)
        messages = self._messages(partition, touched, stamp, now, counts)
        return AircraftStep(windows, messages, counts)

    def _messages(self, partition: int, touched: dict[tuple[str, int], WindowCount], stamp: float | None,
                  now: float, counts: Counter) -> list[Outgoing]:
        updates = defaultdict(list)  # (dimension, group) -> the partials of its aircraft updated in the batch
        for (icao24, start), count in touched.items():
            window = count.close()
            for dimension in self.fixed:
                name = window[dimension.name]
                if name:
                    updates[(dimension.name, name)].append(PartialUpdate(start, icao24, window["partial"]))
            for dimension in self.per_state:
                for name, partial in window[BY_STATE][dimension.name].items():
                    updates[(dimension.name, name)].append(PartialUpdate(start, icao24, partial))
        by_target: dict[int, list[GroupPartials]] = defaultdict(list)  # partials partition -> its groups'
        for (dimension, name), partials in updates.items():
            by_target[self.route(group_name(dimension, name))].append(GroupPartials(dimension, name, partials))
            counts["partials_sent"] += len(partials)
        clock = self.clock
        messages: list[Outgoing] = []
        for target, groups in sorted(by_target.items()):  # one message per partials partition and batch
            for chunk in partials_chunks(groups, self.max_partials):
                messages.append((target, WindowPartials(partition, stamp, chunk)))
            clock.ticks.wrote(partition, target, now)
        if stamp is not None:  # after the partials, so the batch's newest watermark may go
            newest = clock.sources[partition]
            for target in clock.ticks.due(partition, now):
                messages.append((target, WindowPartials(partition, newest, [])))
                counts["watermark_ticks"] += 1
        return messages

    def handed_over(self, partition: int, now: float | None = None) -> None:
        """A batch's messages are with the producer: the timer may tick its newest watermark."""
        self.clock.handed_over(partition, time.monotonic() if now is None else now)

    def ticks(self, held: Iterable[int], waiting: Callable[[int], bool | None], now: float | None = None
              ) -> list[Outgoing]:
        """Between batches: for each source this worker holds, a tick to every partials partition it has
        not written to lately, with its newest watermark handed over and whether it is idle. ``waiting``:
        whether messages wait in a source partition (None: not known, as while recovering)."""
        now = time.monotonic() if now is None else now
        out = []
        for source in sorted(held):
            watermark, idle = self.clock.tick_of(source, now, waiting(source))
            for target in self.clock.ticks.due(source, now):
                out.append((target, WindowPartials(source, watermark, [], idle)))
        return out


# -- the group windows ------------------------------------------------------------------------
#: A reader of the group table in one partition: key -> value or None.
Reader = Callable[[str], Any]


@dataclass
class GroupStep:
    """What one batch of one partition of flight-window-partials did to its windows."""

    #: the group entries to write, by key (each shard once)
    writes: dict[str, dict]
    #: the final records to publish, in order: (window, its record, or None when nothing was counted)
    finals: list[tuple[Window, dict | None]]
    #: the windows whose figures changed
    changed: set[Window]
    stale: int = 0

    def add(self, later: GroupStep) -> None:
        """Take in the step of a later part of the same batch."""
        self.writes.update(later.writes)
        self.finals += later.finals
        self.changed |= later.changed
        self.stale += later.stale


class GroupWindows:
    """The group stage: per group of every dimension and window, each aircraft's partial by icao24."""

    def __init__(self, clock: WindowClock, size_s: int):
        self.clock, self.size_s = clock, size_s

    def summary(self, dimension: str, name: str, start: int, read: Reader) -> dict | None:
        """The window's statistics, from its shards (None if nothing was counted)."""
        partials: dict[str, dict] = {}
        found = False
        for shard in range(SHARDS):
            entry = read(group_key(dimension, name, start, shard))
            if entry:
                found = True
                partials.update(entry["partials"])
        if not found:
            return None
        return {"dimension": dimension, "name": name, "window_start": start, "window_end": start + self.size_s,
                **summarize(partials)}

    def exists(self, dimension: str, name: str, start: int, read: Reader) -> bool:
        """Whether the window is still held (any shard, or its final mark)."""
        keys = [group_key(dimension, name, start, shard) for shard in range(SHARDS)]
        keys.append(final_key(dimension, name, start))
        return any(read(key) for key in keys)

    def apply(self, partition: int, messages: Iterable[Any], read: Reader, asked: set[Window] | None = None
              ) -> GroupStep:
        """Store each aircraft's partial of ``messages`` (WindowPartials and WindowClose, or records of
        the same fields) of ``partition`` in its window; a close whose window has no final mark yet gives
        the window's final record, computed with the writes before it. ``read``: the group table of this
        partition, as stored. ``asked``: the windows whose final an earlier call of the same batch gave."""
        clock = self.clock
        writes: dict[str, dict] = {}

        def current(key: str) -> Any:
            return writes[key] if key in writes else read(key)

        step = GroupStep(writes, [], set())
        asked = set() if asked is None else asked
        for message in messages:
            if message.kind == "close":
                window = (message.dimension, message.name, message.close)
                if window not in asked and not read(final_key(*window)):
                    asked.add(window)
                    record = self.summary(*window, current)
                    step.finals.append((window, None if record is None else {**record, "final": True}))
                continue
            if message.source is not None:  # (partials written before watermarks travelled with them lack it)
                clock.heard(partition, message.source, message.watermark, getattr(message, "idle", False))
            # Until this worker knows the partition's watermark (just after a start), the sender's own
            # watermark judges expiry. A partial of an expired window is dropped only if the window is
            # gone (a replayed partial must not bring a deleted window back); one whose window is still
            # here is applied (its close comes after it, in order).
            mark = clock.group_mark(partition)
            if mark is None:
                mark = message.watermark
            for group in message.groups:
                dimension, name = group.dimension, group.name
                for update in group.partials:
                    start = update.window_start
                    if clock.expired(start, mark) and not self.exists(dimension, name, start, current):
                        continue  # a replayed partial of a window already deleted
                    key = group_key(dimension, name, start, shard_of(update.icao24))
                    entry = current(key) or {"partials": {}}
                    if not upsert_partial(entry["partials"], update.icao24, _as_dict(update.partial)):
                        step.stale += 1  # an older copy of a partial the window holds
                        continue
                    writes[key] = entry
                    step.changed.add((dimension, name, start))
        return step

    def steps(self, partition: int, messages: Sequence[Any], read: Reader, finals_per_step: int
              ) -> Iterator[GroupStep]:
        """``apply`` over a batch in parts of at most ``finals_per_step`` close requests (every window closes
        at once: its driver lets other work run between parts), each part reading the writes of those
        before it. ``GroupStep.add`` sums them up."""
        pending: dict[str, dict] = {}
        asked: set[Window] = set()

        def current(key: str) -> Any:
            return pending[key] if key in pending else read(key)

        part: list = []
        closes = 0
        for i, message in enumerate(messages):
            part.append(message)
            closes += message.kind == "close"
            if closes == finals_per_step or i == len(messages) - 1:
                step = self.apply(partition, part, current, asked)
                pending.update(step.writes)
                yield step
                part, closes = [], 0

    def records(self, windows: Iterable[Window], read_of: Callable[[Window], Reader]) -> Iterable[dict]:
        """The current (not final) record of each window (those with nothing counted left out)."""
        for window in windows:
            summary = self.summary(*window, read_of(window))
            if summary is not None:
                yield {**summary, "final": False}


class HeldWindows:
    """The group windows this worker holds (the group table's keys of its partitions), by window, and those
    whose final record is out: kept as the group stage writes, marks and deletes, so that a flush neither
    scans the table to find them nor to expire them. ``stale`` after a rebalance, until rebuilt from the
    table's keys once the partitions held are recovered."""

    def __init__(self) -> None:
        self.shards: dict[Window, set[str]] = {}
        self.finished: set[Window] = set()
        self.stale = True

    def rebuild(self, keys: Iterable[str]) -> None:
        self.shards, self.finished = {}, set()
        self.wrote(keys)
        self.stale = False

    @classmethod
    def of_keys(cls, keys: Iterable[str]) -> HeldWindows:
        """The windows a group table's keys hold."""
        held = cls()
        held.rebuild(keys)
        return held

    def wrote(self, keys: Iterable[str]) -> None:
        for key, window, final in _windows_of(keys):
            if final:
                self.finished.add(window)
            else:
                self.shards.setdefault(window, set()).add(key)

    def deleted(self, keys: Iterable[str]) -> None:
        for key, window, final in _windows_of(keys):
            if final:
                self.finished.discard(window)
            elif window in self.shards:
                self.shards[window].discard(key)
                if not self.shards[window]:
                    del self.shards[window]

    def held(self) -> set[Window]:
        """The windows with something counted."""
        return set(self.shards)

    def expired_keys(self, clock: WindowClock, partition_of: Callable[[Window], int], most: int) -> list[str]:
        """The keys of windows expired by their partition's watermark whose final record is out (a close may
        still be on its way otherwise), whole windows up to about ``most`` keys."""
        keys: list[str] = []
        for window in sorted(self.finished, key=lambda w: w[2]):
            if len(keys) >= most:
                break
            if clock.expired(window[2], clock.group_mark(partition_of(window))):
                keys += sorted(self.shards.get(window, ()))
                keys.append(final_key(*window))
        return keys


def _windows_of(keys: Iterable[str]) -> Iterator[tuple[str, Window, bool]]:
    """Each group table key, its window, and whether it is the window's final mark."""
    for key in keys:
        dimension, name, start, shard = parse_group_key(key)
        yield key, (dimension, name, start), shard == FINAL


def _as_dict(partial: Any) -> dict:
    return partial if isinstance(partial, dict) else partial.as_dict()


def aircraft_expired(clock: WindowClock, newest_window: int | None, partition: int,
                     track_gap_s: float = 0.0) -> bool:
    """Whether an aircraft whose newest window starts at ``newest_window`` can be forgotten, judged by its
    partition's watermark: it has no window left (a window expires after every older one) and its newest
    state (before the window's end) is over ``track_gap_s`` old, so the next one starts a new track
    anyway: expiring windows never forgets a track that is still going on, however short the expiry."""
    mark = clock.sources.get(partition)
    if mark is None:
        return False
    return newest_window is None or (clock.expired(newest_window, mark)
                                     and mark >= newest_window + clock.size_s + track_gap_s)
