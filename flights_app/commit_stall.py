"""When a partition's offset commits are stuck, and the remedy: agents/commit_watchdog.py's work, given
Faust's consumer and conductor (duck-typed: tested with stand-ins).

Two ways Faust's commits of a partition stop for good while the worker carries on (both seen after a
kill -9 and the rebalance that follows it):

- **A dropped message.** Faust commits only up to the first offset its streams have not
  acknowledged. A message read from Kafka and then dropped from Faust's queues in a rebalance
  (faust-streaming #596) is never acknowledged, so its partition's commits stop there, whether later
  offsets are processed or not (the tail of a partition dropped leaves nothing acknowledged above it).
- **A commit that failed in a rebalance.** Faust records an offset as committed even when the broker
  refused the commit (``Consumer._commit_offsets`` updates ``_committed_offset`` whatever
  ``_commit`` returned), and the rebalance that refused it may already have reset the partition to the
  broker's older offset. The messages read again below Faust's belief are then never acknowledged
  (``ack`` ignores offsets below it): the broker's committed offset stays behind for good when nothing
  follows them.

Either way the remedy is the same: read the partition again from the older of the two offsets, and
let Faust believe that one.

A third way a partition stops: **nothing fetched**. After a rebalance a worker has been seen with
every input partition assigned and active, its flow running, messages waiting, and nothing fetched
for minutes (the two-worker test, a few times in CI). A partition with messages waiting beyond its
position, none in flight and the position unchanged for as many checks is fetched again from its
position (a seek resets the fetcher's state for it).

A fourth: **fetched but never delivered**. The consumer's position moved past messages Faust never
handed to a stream (nothing read since the partition was assigned, or a jump past the last message
read), none in flight: seen in CI after the two-worker test's rebalance, a dead worker's partitions
read to their end by the consumer and none of it processed. They are read again from the last offset
delivered (or committed, or the start).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from flights_app.faust_internals import (
    acked_offsets,
    broker_committed_offset,
    committed_offset,
    read_offset,
    set_committed_offset,
    unacked_messages,
)
from flights_app.metrics import Metric, StageMetrics

log = logging.getLogger("flights_app.commits")

TIMEOUT_S = 2.0  # for each question to the consumer's thread
# With checks every 10 s: 30 s. A batch is acknowledged as a whole, so a gap at the head never lasts that long.
STALL_CHECKS = 3


def stuck_at(committed: int | None, position: int | None, pending: Collection[int],
             broker_committed: int | None) -> int | None:
    """The offset to read a partition again from, or None when its commits can still move.

    ``committed``: what Faust believes is committed (the next offset to process); ``position``: the
    next offset the consumer will fetch; ``pending``: the partition's offsets acknowledged or waiting
    in a stream or queue; ``broker_committed``: what the broker holds (None: nothing, or unknown
    when ``committed`` is None too)."""
    if committed is None:
        return None  # Faust then commits whatever it acknowledges first: nothing to hold it up
    if broker_committed is None:
        broker_committed = 0  # Faust believes in a commit the broker never took
    if broker_committed < committed:
        return broker_committed
    if position is not None and position > committed and committed not in pending:
        return committed
    return None


class StallDetector(StageMetrics):
    """Per partition: how many checks in a row its commits have been stuck at the same offset. Counts
    ``unstuck`` (partitions read again) and ``judged`` (partition checks made)."""

    def __init__(self, checks: int = STALL_CHECKS):
        super().__init__([
            Metric("unstuck", "flights_commit_stalls", "Partitions read again because their commits were stuck "
                   "(agents/commit_watchdog.py)"),
            Metric("judged", "flights_commit_checks", "Partition checks the commit watchdog made"),
            Metric("refetched", "flights_fetch_stalls", "Partitions fetched again because messages waited and "
                   "none were fetched, or were fetched and never delivered to a stream (agents/commit_watchdog.py)"),
        ])
        self.checks = checks
        self.seen: dict[object, tuple[int, int]] = {}  # tp -> (offset stuck at, checks in a row)
        self.idle: dict[object, tuple[int, int]] = {}  # tp -> (position with messages waiting, checks in a row)

    def observe(self, tp, committed: int | None, position: int | None, pending: Collection[int],
                broker_committed: int | None) -> int | None:
        """Record one check of ``tp``; the offset to read it again from once it has been stuck at the
        same place for ``checks`` checks in a row, else None."""
        self.inc("judged")
        offset = stuck_at(committed, position, pending, broker_committed)
        if offset is None:
            self.seen.pop(tp, None)
            return None
        previous, count = self.seen.get(tp, (offset, 0))
        count = count + 1 if previous == offset else 1
        self.seen[tp] = (offset, count)
        if count >= self.checks:
            self.seen.pop(tp, None)
            self.inc("unstuck")
            return offset
        return None

    def _held(self, key, position: int | None, holds: bool) -> bool:
        """Whether ``holds`` has been true at the same ``position`` for ``checks`` checks in a row (then
        counted in ``refetched``, for both ways a partition is fetched again, and the count starts over)."""
        if position is None or not holds:
            self.idle.pop(key, None)
            return False
        previous, count = self.idle.get(key, (position, 0))
        count = count + 1 if previous == position else 1
        self.idle[key] = (position, count)
        if count < self.checks:
            return False
        self.idle.pop(key, None)
        self.inc("refetched")
        return True

    def observe_skip(self, tp, position: int | None, delivered: int | None, pending: Collection[int]) -> bool:
        """Record whether ``tp``'s consumer position is beyond ``delivered`` (the next offset Faust's streams
        would get) with nothing in flight; True once that held for ``checks`` checks in a row."""
        return self._held(("skip", tp), position,
                          delivered is not None and position is not None and position > delivered and not pending)

    def observe_fetch(self, tp, position: int | None, highwater: int | None, pending: Collection[int]) -> int | None:
        """Record whether ``tp`` fetches: the position to fetch it again from once messages have waited
        beyond an unchanged position, with none in flight, for ``checks`` checks in a row, else None."""
        waiting = highwater is not None and position is not None and highwater > position and not pending
        return position if self._held(tp, position, waiting) else None

    def reset(self) -> None:
        self.seen.clear()
        self.idle.clear()


async def unstick(consumer, conductor, detector: StallDetector, check_s: float) -> None:
    """One check of every assigned input partition of Faust's ``consumer``; a partition stuck for
    ``detector.checks`` checks is read again from where it is stuck, and Faust is told so."""
    in_flight = in_flight_offsets(consumer, conductor)
    inputs = [tp for tp in list(consumer.assignment()) if conductor.acks_enabled_for(tp.topic)]
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*inputs), TIMEOUT_S) if inputs else {}
    except Exception:  # the broker is away: judged next time
        ends = {}
    for tp in inputs:
        committed = committed_offset(consumer, tp)  # read first: the broker's can only be newer
        try:
            position = await asyncio.wait_for(consumer.position(tp), TIMEOUT_S)
        except Exception:  # the partition is being revoked, or the broker is away: judged next time
            continue
        pending = set(acked_offsets(consumer, tp)) | in_flight.get(tp, set())
        last = read_offset(consumer, tp)
        if last is not None:
            delivered = last + 1
        elif committed is not None:
            delivered = committed
        else:  # nothing read and nothing committed here: what the broker holds, else the start
            try:
                delivered = await asyncio.wait_for(broker_committed_offset(consumer, tp), TIMEOUT_S) or 0
            except Exception:  # the partition is being revoked, or the broker is away: judged next time
                continue
        if detector.observe_skip(tp, position, delivered, pending) and tp in consumer.assignment():
            log.warning("%s[%d]: the consumer is at offset %d but Faust's streams got nothing past %d, and "
                        "nothing is in flight; reading it again from %d", tp.topic, tp.partition, position,
                        delivered, delivered)
            await consumer.seek(tp, delivered)
            continue
        refetch = detector.observe_fetch(tp, position, ends.get(tp), pending)
        if refetch is not None and tp in consumer.assignment():
            log.warning("%s[%d] has messages up to offset %d waiting and none fetched from %d for %.0f s; "
                        "fetching it again from %d", tp.topic, tp.partition, ends.get(tp), refetch,
                        check_s * detector.checks, refetch)
            await consumer.seek(tp, refetch)
            continue
        if committed is None:
            continue
        try:
            broker_committed = await asyncio.wait_for(broker_committed_offset(consumer, tp), TIMEOUT_S)
        except Exception:  # the partition is being revoked, or the broker is away: judged next time
            continue
        offset = detector.observe(tp, committed, position, pending, broker_committed)
        if offset is not None and tp in consumer.assignment():
            log.warning("Commits of %s[%d] are stuck (Faust holds offset %d committed, the broker %s; the "
                        "consumer is at %s) for %.0f s: a message dropped or a commit refused in a rebalance "
                        "(faust-streaming #596); reading the partition again from %d", tp.topic,
                        tp.partition, committed, broker_committed, position, check_s * detector.checks, offset)
            try:  # what retention deleted can no longer be read: start from the partition's first offset
                earliest = (await asyncio.wait_for(consumer.earliest_offsets(tp), TIMEOUT_S)).get(tp) or 0
            except Exception:
                earliest = 0
            offset = max(offset, earliest)
            set_committed_offset(consumer, tp, offset or None)  # Faust's own spelling of "from the start"
            await consumer.seek(tp, offset)


def in_flight_offsets(consumer, conductor) -> dict:
    """tp -> offsets of the messages handed to Faust and not yet acknowledged: waiting in an agent's
    queue (not tracked by the consumer until a stream takes them) or taken and not acknowledged."""
    offsets: dict = {}
    for message in unacked_messages(consumer, conductor):
        offsets.setdefault(message.tp, set()).add(message.offset)
    return offsets
