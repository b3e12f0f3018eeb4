"""An in-process model of the window pipeline around the pure window core (tables/window_core.py): Kafka
topics, changelogs, each worker's local stores and memory, crashes and partitions moving between workers.

It drives the core the way agents/scoring.py and agents/windows.py do: a scoring batch reads each aircraft's
entry, counts the states, writes the entries and sends the partials, then commits; a group batch applies
partials, writes the shards, publishes finals, commits, then marks the finals; a flush publishes the updated
windows, asks for finals and expires; a timer ticks watermarks. What it models of Kafka and Faust:

- a topic partition is a list; a consumer group commits an offset per partition after a batch's outputs are
  acknowledged, and a batch is replayed from the committed offset after a crash;
- a crash mid-batch delivers a prefix of the batch's sends to each destination partition (a changelog
  partition or a topic partition: a producer's sends to one partition arrive in order) and nothing else;
- a table is a changelog per partition plus each worker's local store (RocksDB) of the partitions it has
  held: a put lands in the local store at once and in the changelog when delivered; the store remembers up
  to which changelog offset it is known to hold (persisted after a batch's acknowledgements); taking a
  partition, a worker applies the changelog from there (its store kept, or emptied with its data directory);
- a worker's memory (the clock, the windows to flush) is lost with a crash; a rebalance marks a republish.

Pure Python, no broker: the property test (tests/test_window_core.py) runs it thousands of times.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tables.clock import WindowClock
from tables.dimensions import Dimension
from tables.entry import AircraftEntry
from tables.keys import final_key, group_name
from tables.window_core import (
    AircraftWindows,
    GroupStep,
    GroupWindows,
    HeldWindows,
    WindowClose,
    aircraft_expired,
    newest_seen,
    newest_window_start,
)


@dataclass(frozen=True)
class State:
    """The fields of a StateVector the windows read."""

    icao24: str
    event_time: int
    velocity: float
    baro_altitude: float | None
    geo_altitude: float | None
    on_ground: bool
    squawk: str | None
    origin_country: str
    callsign: str | None
    category: int | None = None


@dataclass(frozen=True)
class Scored:
    state: State
    ml_is_anomaly: bool


def route(key: str, partitions: int) -> int:
    """The partition of a key (the sim's own hash: which partition does not matter, only that it is fixed)."""
    return zlib.crc32(key.split("@")[0].encode()) % partitions


@dataclass
class Store:
    """A worker's local copy of one table partition, and the changelog offset it is known to hold."""

    data: dict = field(default_factory=dict)
    persisted: int = 0


class Worker:
    def __init__(self, sim: Sim, name: str):
        self.sim, self.name = sim, name
        self.stores: dict[tuple[str, int], Store] = {}
        self.restart()

    def restart(self) -> None:
        """A new process: nothing in memory."""
        sim = self.sim
        self.clock = WindowClock(sim.size_s, sim.grace_s, sim.expiry_s, sim.partitions, sim.idle_s)
        self.aircraft_step = AircraftWindows(self.clock, sim.dimensions, lambda key: route(key, sim.partitions),
                                             sim.max_partials)
        self.group_step = GroupWindows(self.clock, sim.size_s)
        self.dirty: set = set()
        self.held = HeldWindows()
        self.rebalanced()

    def rebalanced(self) -> None:
        self.clock.rebalanced()
        self.held.stale = True

    def owned(self) -> list[int]:
        return sorted(p for p, w in self.sim.owner.items() if w is self)

    def store(self, table: str, partition: int) -> Store:
        """The partition's table as this worker has it, recovered from the changelog."""
        store = self.stores.setdefault((table, partition), Store())
        log = self.sim.changelog[(table, partition)]
        for key, value in log[store.persisted:]:
            if value is None:
                store.data.pop(key, None)
            else:
                store.data[key] = value
        store.persisted = len(log)
        return store


class Sim:
    """The cluster: topics, changelogs, workers, the outputs."""

    def __init__(self, dimensions: tuple[Dimension, ...], partitions: int, workers: int, size_s: int, grace_s: float,
                 expiry_s: float, idle_s: float, chunk_states: int, max_partials: int):
        self.dimensions, self.partitions = dimensions, partitions
        self.size_s, self.grace_s, self.expiry_s, self.idle_s = size_s, grace_s, expiry_s, idle_s
        self.chunk_states, self.max_partials = chunk_states, max_partials
        self.finals_per_step = 2  # the group agent's parts (FINALS_PER_STEP there): several in a batch here
        self.expire_per_flush = 40  # EXPIRE_PER_FLUSH there: expiry spread over flushes here too
        self.now = 0.0
        self.raw: dict[int, list[list[Scored]]] = {p: [] for p in range(partitions)}
        self.partials: dict[int, list[Any]] = {p: [] for p in range(partitions)}
        self.changelog: dict[tuple[str, int], list] = defaultdict(list)
        self.committed: dict[tuple[str, int], int] = defaultdict(int)
        self.published: list[dict] = []  # flight-aggregated-data, in order
        self.workers = [Worker(self, f"w{i}") for i in range(workers)]
        self.owner: dict[int, Worker] = {p: self.workers[p % workers] for p in range(partitions)}

    # -- what the agents do ------------------------------------------------------------------
    def _deliver(self, sends: list[tuple[Any, Any]], cut: dict | None) -> None:
        """Deliver ``sends`` ((destination, item), in order); a crash (``cut``: destination -> how many of its
        sends got through, missing: all) delivers a prefix per destination."""
        delivered: dict[Any, int] = defaultdict(int)
        for destination, item in sends:
            if cut is not None and delivered[destination] >= cut.get(destination, 10**9):
                continue
            delivered[destination] += 1
            kind, partition = destination
            if kind == "published":
                self.published.append(item)
            elif kind == "partials":
                self.partials[partition].append(item)
            else:
                self.changelog[(kind, partition)].append(item)

    def _recover_watermarks(self, worker: Worker) -> None:
        if not worker.clock.sources:
            worker.clock.recover(
                (p, seen) for p in worker.owned() for value in worker.store("aircraft", p).data.values()
                if (seen := newest_seen(AircraftEntry.from_stored(value).windows)) is not None)

    def score(self, partition: int, messages: int, crash: dict | None = None) -> bool:
        """The scoring agent's batch of up to ``messages`` polls of ``partition``; False if none waited."""
        worker = self.owner[partition]
        start = self.committed[("raw", partition)]
        polls = self.raw[partition][start:start + messages]
        if not polls:
            return False
        self._recover_watermarks(worker)
        store = worker.store("aircraft", partition)
        states = [item for poll in polls for item in poll]
        sends: list = []
        for i in range(0, len(states), self.chunk_states):
            chunk = states[i:i + self.chunk_states]
            entries = {s.state.icao24: AircraftEntry.from_stored(store.data.get(s.state.icao24)) for s in chunk}
            step = worker.aircraft_step.count(partition, chunk, {k: e.windows for k, e in entries.items()},
                                              self.now)
            for icao24, entry in entries.items():
                entry.windows = step.windows[icao24]
                store.data[icao24] = entry.stored()  # RocksDB: at once
                sends.append((("aircraft", partition), (icao24, entry.stored())))
            sends += [(("partials", target), message) for target, message in step.messages]
        self._deliver(sends, crash)
        if crash is not None:
            self.crash(worker, keep_data=crash.get("keep_data", True))
            return True
        worker.aircraft_step.handed_over(partition, self.now)
        store.persisted = len(self.changelog[("aircraft", partition)])
        self.committed[("raw", partition)] = start + len(polls)
        return True

    def group(self, partition: int, messages: int, crash: dict | None = None) -> bool:
        """The group agent's batch of up to ``messages`` messages of partials partition ``partition``."""
        worker = self.owner[partition]
        start = self.committed[("partials", partition)]
        batch = self.partials[partition][start:start + messages]
        if not batch:
            return False
        store = worker.store("groups", partition)
        step = GroupStep({}, [], set())
        for part in worker.group_step.steps(partition, batch, store.data.get, self.finals_per_step):
            step.add(part)
        sends = []
        for key, value in step.writes.items():
            store.data[key] = value
            sends.append((("groups", partition), (key, value)))
        worker.held.wrote(step.writes)  # (the index is memory: a crash takes it too)
        sends += [(("published", 0), record) for _, record in step.finals if record is not None]
        self._deliver(sends, crash)
        if crash is not None:
            self.crash(worker, keep_data=crash.get("keep_data", True))
            return True
        worker.dirty.update(step.changed)
        store.persisted = len(self.changelog[("groups", partition)])
        self.committed[("partials", partition)] = start + len(batch)
        for window, _ in step.finals:  # after the acknowledgements
            store.data[final_key(*window)] = {"final": True}
            self.changelog[("groups", partition)].append((final_key(*window), {"final": True}))
            worker.clock.finished(window)
        worker.held.wrote(final_key(*window) for window, _ in step.finals)
        return True

    def tick(self, worker: Worker) -> None:
        def waiting(p: int) -> bool:
            return self.committed[("raw", p)] < len(self.raw[p])

        for target, message in worker.aircraft_step.ticks(worker.owned(), waiting, self.now):
            self.partials[target].append(message)

    def flush(self, worker: Worker) -> None:
        """The flush timer: the updated windows' records, finals asked for, expiry."""
        owned = worker.owned()
        stores = {p: worker.store("groups", p) for p in owned}
        if worker.held.stale:
            worker.held.rebuild(k for p in owned for k in stores[p].data)
        if worker.clock.take_republish(True):
            worker.dirty.update(worker.held.held())

        def partition_of(window) -> int:
            return route(group_name(*window[:2]), self.partitions)

        updated = [w for w in worker.dirty if partition_of(w) in stores]
        worker.dirty.clear()
        self.published += worker.group_step.records(updated, lambda w: stores[partition_of(w)].data.get)
        self._recover_watermarks(worker)
        for window in worker.clock.to_close(worker.held.held(), partition_of, worker.held.finished.__contains__):
            self.partials[partition_of(window)].append(WindowClose(*window))
        self._expire(worker, owned, partition_of)

    def _expire(self, worker: Worker, owned: list[int], partition_of) -> None:
        clock = worker.clock
        for p in owned:
            store = worker.store("aircraft", p)
            for icao24, value in list(store.data.items()):
                newest = newest_window_start(AircraftEntry.from_stored(value).windows)
                if aircraft_expired(clock, newest, p):
                    del store.data[icao24]
                    self.changelog[("aircraft", p)].append((icao24, None))
            store.persisted = len(self.changelog[("aircraft", p)])
        gone = worker.held.expired_keys(clock, partition_of, self.expire_per_flush)
        for key in gone:
            p = route(key, self.partitions)
            del worker.store("groups", p).data[key]
            self.changelog[("groups", p)].append((key, None))
        worker.held.deleted(gone)
        for p in owned:
            worker.store("groups", p).persisted = len(self.changelog[("groups", p)])

    # -- what happens to workers ---------------------------------------------------------------
    def crash(self, worker: Worker, keep_data: bool) -> None:
        """kill -9 and restart (its data directory kept or emptied): its partitions come back to it."""
        if not keep_data:
            worker.stores.clear()
        worker.restart()
        for other in self.workers:
            other.rebalanced()

    def move(self, partition: int, to: int) -> None:
        """A rebalance gives ``partition`` (of both topics and both tables) to worker ``to``."""
        self.owner[partition] = self.workers[to % len(self.workers)]
        for worker in self.workers:
            worker.rebalanced()

    def caught_up(self) -> bool:
        return all(self.committed[("raw", p)] == len(self.raw[p]) and
                   self.committed[("partials", p)] == len(self.partials[p]) for p in range(self.partitions))
