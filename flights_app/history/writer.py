"""The history writer: a consumer group of its own (``{FLIGHTS_APP_ID}-history``) that keeps every
record of flight-processed-data, flight-aggregated-data and flight-alerts as Parquet
(flights_app/history/store.py). A process of its own (``flights-app history-writer``, started by
``flights-app up``), so a slow disk shows as its group's lag and never slows the scoring.

Exactly what was published, once: the records of a partition are gathered into an offset range
(``RANGE_RECORDS`` records or ``FLIGHTS_HISTORY_FLUSH`` old), written as one file per event-time hour, and
only then is the range's end committed. A writer killed in between leaves files of an uncommitted
range; whoever is assigned the partition next deletes them (their range starts at or after the
committed offset) and reads the range again. Compaction and retention run between ranges.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from flights_app.history.layout import FileName, hour_of
from flights_app.history.rows import ROW_OF
from flights_app.history.store import HistoryStore
from flights_app.metrics import Metric, StageMetrics
from flights_app.settings import Settings
from flights_app.topic_names import AGGREGATED, ALERTS, PROCESSED

log = logging.getLogger("flights_app.history")

RANGE_RECORDS = 20_000
#: An hour is compacted once it ended this long ago (late records still arrive for a while).
COMPACT_AFTER_S = 900
CHORES_EVERY_S = 30.0
#: What the writer logs before FLIGHTS_HISTORY_COMMIT_DELAY's wait (crash tests kill it then).
COMMIT_DELAY_SAYS = "History (FLIGHTS_HISTORY_COMMIT_DELAY)"

KIND_OF_BASE = {PROCESSED: "states", AGGREGATED: "windows", ALERTS: "alerts"}

#: The writer's counters, on its own ``/metrics`` (FLIGHTS_HISTORY_PORT).
HISTORY_METRICS = (
    Metric("rows", "flights_history_rows", "Rows written to the history, by kind (states, windows, alerts)",
           ("kind",)),
    Metric("files", "flights_history_files", "History files written (one per offset range and hour), by kind",
           ("kind",)),
    Metric("skipped", "flights_history_skipped", "Records not kept: not a record, or an event time no calendar "
                                                 "holds"),
    Metric("commits", "flights_history_commits", "Offset commits after written ranges"),
    Metric("compacted", "flights_history_compacted", "Partition-hours merged into one file, by kind", ("kind",)),
    Metric("expired_hours", "flights_history_expired_hours", "Hours deleted by retention (FLIGHTS_HISTORY_DAYS)"),
    Metric("lag", "flights_history_lag", "Records on the topic not yet written and committed, by topic",
           ("topic",), gauge=True),
)


@dataclass
class PendingRange:
    """Records of one partition read and not yet written."""

    first: int
    started: float
    last: int = -1
    rows_by_hour: dict[datetime, list[dict]] = field(default_factory=dict)
    records: int = 0


class HistoryWriter:
    def __init__(self, settings: Settings, store: HistoryStore | None = None):
        self.settings = settings
        self.store = store or HistoryStore(settings.history_dir)
        self.kind_of = {settings.topic_name(base): kind for base, kind in KIND_OF_BASE.items()}
        self.group = f"{settings.app_id}-history"
        self.pending: dict[object, PendingRange] = {}
        self.stats = StageMetrics(HISTORY_METRICS)
        self.committed: dict[object, int] = {}  # per assigned partition, the offset committed last
        self.consumer = None
        self._chores_at = 0.0

    # -- what arrives -----------------------------------------------------------------------
    def add(self, tp, offset: int, value: bytes | None) -> None:
        """One record of ``tp`` at ``offset``: its row goes into the partition's pending range."""
        pending = self.pending.get(tp)
        if pending is None:
            pending = self.pending[tp] = PendingRange(first=offset, started=time.monotonic())
        pending.last = offset
        pending.records += 1
        kind = self.kind_of[tp.topic]
        try:
            record = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            record = None
        found = ROW_OF[kind](record) if isinstance(record, dict) else None
        if found is None:
            self.stats.inc("skipped")
            return
        when, row = found
        try:
            hour = hour_of(when)
        except (ValueError, OverflowError, OSError):  # an event time no calendar holds: not a record to keep
            self.stats.inc("skipped")
            return
        row["kafka_partition"], row["kafka_offset"] = tp.partition, offset
        pending.rows_by_hour.setdefault(hour, []).append(row)

    def due(self, now: float) -> list:
        """The partitions whose pending range is full or old enough to write."""
        return [tp for tp, p in self.pending.items()
                if p.records >= RANGE_RECORDS or now - p.started >= self.settings.history_flush_s]

    def write(self, tp) -> int:
        """Write ``tp``'s pending range (one file per hour); the offset to commit after it."""
        pending = self.pending.pop(tp)
        kind = self.kind_of[tp.topic]
        name = FileName(tp.topic, tp.partition, pending.first, pending.last)
        written = self.store.write_range(kind, name, pending.rows_by_hour)
        self.stats.inc("files", len(written), kind)
        self.stats.inc("rows", sum(len(rows) for rows in pending.rows_by_hour.values()), kind)
        return pending.last + 1

    def chores(self, now: float | None = None) -> None:
        """Compaction of closed hours (a few at a time) and retention: the hours more than
        FLIGHTS_HISTORY_DAYS before now, or before the newest hour the history holds if that is earlier
        (a replay of an old recording keeps its days; a live feed's newest hour is now)."""
        wall = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
        closed_before = hour_of((wall - timedelta(seconds=COMPACT_AFTER_S)).timestamp())
        for kind in self.kind_of.values():
            self.stats.inc("compacted", len(self.store.compact(kind, closed_before, most=4)), kind)
        newest = self.store.newest_hour()
        reference = wall if newest is None else min(wall, newest + timedelta(hours=1))
        self.stats.inc("expired_hours", self.store.expire(hour_of(
            (reference - timedelta(days=self.settings.history_days)).timestamp())))

    def note_lag(self) -> None:
        """Per topic, the records of the assigned partitions beyond the last commit (read or not)."""
        lag = dict.fromkeys(self.kind_of, 0)
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is not None and tp in self.committed:
                lag[tp.topic] += max(0, end - self.committed[tp])
        for topic, behind in lag.items():
            self.stats.set("lag", behind, topic)

    # -- Kafka --------------------------------------------------------------------------------
    async def assigned(self, tps) -> None:
        """A partition given to this writer: files of its uncommitted range deleted, read from its commit."""
        for topic in {tp.topic for tp in tps}:  # queries prune a track's files by its key's partition
            count = len(self.consumer.partitions_for_topic(topic) or ())
            if count:
                self.store.note_partitions(topic, count)
        for tp in tps:
            committed = self.committed[tp] = await self.consumer.committed(tp) or 0
            self.store.drop_uncommitted(self.kind_of[tp.topic], tp.topic, tp.partition, committed)
            self.consumer.seek(tp, committed)

    def revoked(self, tps) -> None:
        for tp in tps:
            self.pending.pop(tp, None)  # read again by the next owner, from the commit
            self.committed.pop(tp, None)

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener

        writer = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                writer.revoked(revoked)

            async def on_partitions_assigned(self, assigned):
                await writer.assigned(assigned)

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers, group_id=self.group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=5000, **self.settings.kafka_security.client_options())
        await self.consumer.start()
        await self.wait_for_topics(stop)
        self.consumer.subscribe(list(self.kind_of), listener=Listener())
        log.info("History writer: %s -> %s (group %s)", ", ".join(self.kind_of), self.store.root, self.group)
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        self.add(tp, record.offset, record.value)
                await self.flush(time.monotonic())
                self.note_lag()
                if time.monotonic() - self._chores_at >= CHORES_EVERY_S:
                    self._chores_at = time.monotonic()
                    await asyncio.get_running_loop().run_in_executor(None, self.chores)
            await self.flush(float("inf"))
        finally:
            await self.consumer.stop()

    async def wait_for_topics(self, stop: asyncio.Event) -> None:
        """Until the worker has made the topics (asked by name, a broker that creates topics on first use
        would make them with its own partition count, which the worker then refuses)."""
        said = False
        while not stop.is_set():
            missing = set(self.kind_of) - await self.consumer.topics()  # every topic's metadata: creates none
            if not missing:
                return
            if not said:
                log.info("History writer: waiting for the worker to create %s", ", ".join(sorted(missing)))
                said = True
            await asyncio.sleep(1.0)

    async def flush(self, now: float) -> None:
        """Write every range that is due, then commit their ends."""
        offsets = {}
        for tp in self.due(now):
            if tp in self.consumer.assignment():
                offsets[tp] = self.write(tp)
            else:
                self.pending.pop(tp, None)
        if offsets and self.settings.history_commit_delay_s:
            log.info("%s: %d range(s) written, committing in %.1f s", COMMIT_DELAY_SAYS, len(offsets),
                     self.settings.history_commit_delay_s)
            await asyncio.sleep(self.settings.history_commit_delay_s)
        if offsets:
            from aiokafka.errors import CommitFailedError, IllegalStateError

            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as error:  # a rebalance took them: read again
                log.warning("History: commit refused (%s); the next owner rewrites those ranges", error)
            else:
                self.stats.inc("commits")
                self.committed.update(offsets)
