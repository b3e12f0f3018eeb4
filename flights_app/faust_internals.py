"""Every reach into faust-streaming's private state, in one place, for the version it was read from.

The app uses Faust's public API everywhere else. What it needs beyond that is here, each with the
reason, and each patch with a test that fails on unpatched Faust (tests/test_faust_internals.py):

Patches (``install()``, once, when the app is created):

1. **Never commit past a message that was not acknowledged** (``Consumer._new_offset``).
2. **Seek before resuming after a rebalance** (``Recovery.on_recovery_completed``).
3. **No stall of the stream behind the producer buffer** (``ProducerBuffer.max_messages``).
4. **No commit over messages fetched and never delivered** (``Consumer._add_gap``).

Reads and writes of private state (the functions below): the current event's context variable
(``partition_of``), a table's RocksDB database per partition and its raw ``_set``
(``rocksdb_of``, ``store_set``, ``store_delete``), a record built and read without its per-field
descriptors (``built``, ``fields_of``),
the consumer's bookkeeping of committed and acknowledged offsets,
its unacknowledged and queued messages and its thread's aiokafka consumer (the commit watchdog,
``/health``; leaving the group on a clean stop as a static member), and the running aiokafka
producer (its client for ``/health``, its record batches for ``Outbox.send_many``).

``check_version()`` refuses a faust-streaming version other than the ones these were read from
(``TESTED``) unless ``FLIGHTS_FAUST_UNTESTED=1``: the private names may have moved or changed meaning.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import faust
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import CollectionT, EventT
from faust.types.enums import ProcessingGuarantee

R = TypeVar("R", bound=faust.Record)

log = logging.getLogger("flights_app.faust_internals")

#: The faust-streaming versions this module was read from and the test suite passed on.
TESTED = ("0.15.3",)
#: Changelog messages waiting in Faust's producer buffer before it stalls the stream (Faust: 100).
PRODUCER_BUFFER_MESSAGES = 10_000


def version_problem(installed: str, allow_untested: bool) -> str | None:
    """Why the worker must not start on faust-streaming ``installed`` (None: it may)."""
    if installed in TESTED or allow_untested:
        return None
    return (f"faust-streaming {installed} is installed, but this app reaches into Faust's internals as "
            f"they are in {', '.join(TESTED)} (flights_app/faust_internals.py); install that version "
            f"(make install), or set FLIGHTS_FAUST_UNTESTED=1 to run anyway")


def check_version(allow_untested: bool) -> None:
    """Stop with one line if the installed faust-streaming is not a tested version."""
    problem = version_problem(faust.__version__, allow_untested)
    if problem is not None:
        raise SystemExit(f"flights-app: {problem}")


# ---------------------------------------------------------------------------------------------
# 1. Never commit past a message that was not acknowledged.
#
# Faust keeps ``Consumer._committed_offset[tp]`` as the next offset to process (what Kafka stores:
# it is set from ``seek_to_committed`` and from ``_new_offset``'s ``batch[-1] + 1``), but its head
# check in ``_new_offset`` reads it as the last offset processed: it refuses to commit only when the
# lowest acknowledged offset is more than one above it. So when the message at the committed offset
# itself is never acknowledged (one dropped from Faust's queues in a rebalance, faust-streaming #596)
# and the next one is, Faust commits past it and nothing reads it again. Here the head check also
# holds when exactly the committed offset is missing: the partition's commits then wait, and the
# commit watchdog (flights_app/commit_stall.py) reads it again from there.

_original_new_offset = Consumer._new_offset


def holds_at_head(committed: int | None, acked: list[int], gap) -> bool:
    """Whether the committed offset itself waits: neither acknowledged nor a known gap (a gap is an
    offset the consumer skipped over, with no message to acknowledge)."""
    if not committed or not acked:  # None and 0 are Faust's "nothing committed": it takes what it has
        return False
    return min(acked) > committed and not (gap and gap.overlaps(committed))


def _new_offset(self, tp):
    if holds_at_head(self._committed_offset[tp], self._acked[tp], self._gap.get(tp)):
        return None
    return _original_new_offset(self, tp)


# ---------------------------------------------------------------------------------------------
# 2. After a rebalance, seek the stream partitions to their committed offsets before resuming them.
#
# Faust's ``Recovery.on_recovery_completed`` resumes the stream partitions and then seeks them to
# their committed offsets. The fetcher is already running (it read the changelogs), so in between it
# fetches from wherever the consumer stood and hands those messages to the agents; the seek then sets
# the read offset back and the same messages come a second time. Every restart thus delivered its
# first fetch twice: with one Kafka message per poll and partition (flights_app.batches) that is up to
# ``FLIGHTS_SCORE_BATCH`` messages, tens of thousands of states, each scored twice. Here the seek
# comes first, on paused partitions. The rest of the method is Faust's, unchanged.

_original_on_recovery_completed = Recovery.on_recovery_completed


async def on_recovery_completed(self, generation_id: int = 0) -> None:
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                          self.standbys_for_table[table]))
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {self.app.consumer_generation_id} "
                         f"param {generation_id}")
        return
    if assignment:  # while the stream partitions are still paused
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


# ---------------------------------------------------------------------------------------------
# 4. No commit over messages fetched and never delivered.
#
# Faust's fetch loop (``Consumer._drain_messages``) takes every jump between two offsets it hands to
# a stream for a gap (``Consumer._add_gap``) and commits over it. That is right where offsets hold no
# message: a compacted topic, transaction markers. On a topic with neither (this app's inputs:
# at-least-once, delete retention) a jump means messages were fetched and dropped before a stream got
# them (``getmany`` drops the rest of a fetch once the flow stops or a partition leaves the active
# set), and committing over them loses them for good. There no gap is recorded and a warning names
# the offsets: the partition's commits wait at the first missing offset (patch 1), and the commit
# watchdog reads it again from there (flights_app/commit_stall.py, "a dropped message").

_original_add_gap = Consumer._add_gap


def offsets_may_jump(app, topic: str) -> bool:
    """Whether ``topic``'s offsets may skip with no message in between (compaction, transactions)."""
    if app.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE:
        return True
    channels = app.topics._topic_name_index.get(topic) or ()
    return not channels or any(getattr(channel, "compacting", False) for channel in channels)


async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
    if offsets_may_jump(self.app, tp.topic):
        return await _original_add_gap(self, tp, offset_from, offset_to)
    log.warning("%s[%d]: offsets %d..%d were fetched and never delivered to a stream; not committed over "
                "(the commit watchdog reads them again)", tp.topic, tp.partition, offset_from, offset_to - 1)
    return None


def install() -> None:
    """Apply the patches (idempotent).

    3. Table writes made through Faust's own path (``table[key] = value``: the final marks, expiry's
    tombstones) go through its producer buffer, which stalls the stream once more than
    ``max_messages`` (100) wait; every commit flushes the buffer first, so a larger bound only removes
    the stall."""
    Consumer._new_offset = _new_offset
    Recovery.on_recovery_completed = on_recovery_completed
    ProducerBuffer.max_messages = PRODUCER_BUFFER_MESSAGES
    Consumer._add_gap = _add_gap


# ---------------------------------------------------------------------------------------------
# Tables: the current event, and a table's RocksDB databases.

@contextmanager
def current_event(event: EventT) -> Iterator[None]:
    """Run as if ``event`` were the one being processed: Faust's RocksDB store reads and writes the
    database of the current event's partition, and sends the changelog there (faust-streaming #497)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def leader_topic_name(app) -> str:
    """The topic Faust's leader election assigns (``LeaderAssignor``: one partition; its holder is the leader)."""
    return app._leader_assignor._leader_topic_name


def rocksdb_of(table: CollectionT, partition: int):
    """The RocksDB database of ``partition`` (None with the memory store: then Faust's own path)."""
    db_for = getattr(table.data, "_db_for_partition", None)
    return db_for(partition) if db_for is not None else None


def store_set(table: CollectionT, key: bytes, value: bytes) -> None:
    """Put encoded ``key`` and ``value`` into the current event's partition's database, as Faust's
    ``table[key] = value`` does before its changelog send (no sensors, no encoding)."""
    table.data._set(key, value)


def store_delete(table: CollectionT, partition: int, key: bytes) -> None:
    """Delete encoded ``key`` from ``partition``'s database (the memory store: from its dict), as Faust's
    ``del table[key]`` does before its changelog send."""
    db = rocksdb_of(table, partition)
    if db is None:
        table.data.data.pop(key.decode(), None)
    else:
        db.delete(key)


def set_persisted_offset(table: CollectionT, tp, offset: int) -> None:
    """Record in the store that ``table``'s changelog ``tp`` holds everything up to ``offset``, as
    Faust's ``_on_changelog_sent`` does (recovery starts after it)."""
    table.data.set_persisted_offset(tp, offset)


def count_keys_updated(table: CollectionT, count: int) -> None:
    """Add ``count`` to the keys-updated figure Faust's monitor keeps for ``table`` (its sensors are
    skipped by the batched writes)."""
    state = table.app.monitor.tables.get(table.name)
    if state is not None:
        state.keys_updated += count


def raw_keys(table: CollectionT) -> CollectionT:
    """Store and route ``table``'s str keys as raw UTF-8, like the topics' keys.

    Faust serializes str table keys as JSON (``"abc123"`` with quotes), so its
    table routing would hash other bytes than the stream's key and send a
    ``/table/{name}/{key}/`` request to the wrong worker.
    """
    table.key_serializer = "raw"
    changelog = table.changelog_topic  # already made when the table was declared
    changelog.key_serializer = changelog.schema.key_serializer = "raw"
    return table


def active_partitions(app: faust.App, topic: str) -> set[int]:
    """The partitions of ``topic`` this worker holds as active (not standby) now (Faust's assignor)."""
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


# ---------------------------------------------------------------------------------------------
# Records: built from values already checked.

def record_defaults(record_type: type[faust.Record]) -> dict[str, Any]:
    """The default of each field of ``record_type`` that has one."""
    return record_type._options.defaults


def record_fields(record_type: type[faust.Record]) -> list[str]:
    """The field names of ``record_type``, in declaration order."""
    return list(record_type._options.fields)


def built(record_type: type[R], fields: dict[str, Any]) -> R:
    """A ``record_type`` holding ``fields`` (every field, each already of its type), as its
    constructor builds it but without a descriptor call per field (about 1 us each: 20 us for a
    ``StateVector``). For records without ``__post_init__`` or validation, from values the app
    itself produced or checked; anything else goes through the constructor."""
    if len(fields) != len(record_type._options.fields):
        raise TypeError(f"{record_type.__name__} needs {sorted(record_type._options.fields)}, "
                        f"got {sorted(fields)}")
    record = record_type.__new__(record_type)
    record.__dict__.update(fields)
    record.__evaluated_fields__ = set()  # what the generated __init__ sets first
    return record


def fields_of(record: faust.Record) -> dict[str, Any]:
    """``record.to_representation()`` read straight from its ``__dict__`` (no descriptor call per
    field: a fifth of the cost of encoding a scored state). Records with metadata go the usual way."""
    if record._options.include_metadata:
        return record.to_representation()
    fields = record.__dict__.copy()
    fields.pop("__evaluated_fields__", None)
    return fields


# ---------------------------------------------------------------------------------------------
# The consumer's bookkeeping (duck-typed: the commit watchdog's tests use stand-ins).

def committed_offset(consumer, tp) -> int | None:
    """What Faust believes is committed for ``tp``: the next offset to process (None: nothing)."""
    return consumer._committed_offset.get(tp)


def set_committed_offset(consumer, tp, offset: int | None) -> None:
    consumer._committed_offset[tp] = offset


def read_offset(consumer, tp) -> int | None:
    """The offset of the last message of ``tp`` Faust handed to its streams (after a seek: the offset it
    seeked to); None: none since the partition was assigned."""
    return consumer._read_offset.get(tp)


def acked_offsets(consumer, tp) -> list[int]:
    """The offsets of ``tp`` acknowledged and not yet committed."""
    return list(consumer._acked.get(tp) or ())


def unacked_messages(consumer, conductor) -> list[Any]:
    """Messages handed to Faust and not yet acknowledged: taken by a stream (tracked by the consumer)
    or waiting in an agent's queue (not tracked until a stream takes them)."""
    messages = [m for m in list(consumer._unacked_messages) if not m.acked]
    for channel in list(conductor._topics):
        queue = getattr(channel, "_queue", None)  # created when a stream first reads the channel
        for item in list(getattr(queue, "_queue", ())):
            message = getattr(item, "message", None)
            if message is not None and not message.acked:
                messages.append(message)
    return messages


def flow_state(consumer) -> dict[str, Any]:
    """What decides whether the consumer fetches: its flow, and the partitions it fetches, has paused
    or holds back because their stream buffers were full (for ``kill -USR1``'s dump)."""
    def names(tps) -> list[str]:
        return sorted(f"{tp.topic}[{tp.partition}]" for tp in (tps or ()))
    return {"flow_active": consumer.flow_active, "suspended": consumer.suspend_flow.is_set(),
            "assigned": names(consumer.assignment()), "active": names(consumer._active_partitions),
            "paused": names(consumer._paused_partitions), "buffer_full": names(consumer._buffered_partitions),
            "read_offsets": {f"{tp.topic}[{tp.partition}]": o for tp, o in consumer._read_offset.items()},
            "committed": {f"{tp.topic}[{tp.partition}]": o for tp, o in consumer._committed_offset.items()},
            "aiokafka": aiokafka_state(consumer)}


def consumer_thread_loop(consumer):
    """The event loop of the thread Faust runs aiokafka's consumer in (its fetches and commits)."""
    return consumer._thread.thread_loop


def aiokafka_state(consumer) -> dict[str, Any]:
    """aiokafka's own view of each assigned partition (the fetcher fetches what it holds unpaused with a
    valid position): paused, position, status, the last fetch's highwater and time (ms)."""
    assignment = consumer._thread._ensure_consumer()._fetcher._subscriptions.subscription.assignment
    if assignment is None:
        return {"assignment": None}
    out = {}
    for tp in assignment.tps:
        state = assignment.state_value(tp)
        out[f"{tp.topic}[{tp.partition}]"] = {
            "paused": state.paused, "position": state._position, "status": str(state._status),
            "highwater": state.highwater, "fetched_at_ms": state.timestamp}
    return out


async def broker_committed_offset(consumer, tp) -> int | None:
    """The offset the broker holds committed for ``tp`` (None: none), asked of the consumer's thread."""
    thread = consumer._thread
    return await thread.call_thread(thread._ensure_consumer().committed, tp)


def leave_group_when_stopping(app: faust.App) -> None:
    """A static member (``consumer_group_instance_id``) does not leave its group when it stops: its
    partitions wait for it for the session timeout (aiokafka sends no LeaveGroup then). Called on a clean
    stop, this makes the consumer leave as a dynamic member would (LeaveGroup by member id), so the others
    take its partitions at once; a kill -9 sends nothing, and a worker back in time keeps its partitions."""
    thread = getattr(app._consumer, "_thread", None)  # (not app.consumer: that would make one)
    client = getattr(thread, "_consumer", None)
    coordinator = getattr(client, "_coordinator", None)
    if coordinator is not None:
        coordinator._group_instance_id = None


def producer_client(app: faust.App):
    """The running aiokafka producer's client (its metadata says whether the brokers answer)."""
    return app.producer._producer.client


def aiokafka_producer(app: faust.App):
    """The running aiokafka producer under Faust's: ``Outbox.send_many`` hands it whole record batches
    (its ``create_batch``/``send_batch``), which Faust's producer does not offer."""
    return app.producer._ensure_producer()
