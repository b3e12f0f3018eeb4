"""The commit watchdog's judgement (agents/commit_watchdog.py, flights_app/commit_stall.py): a partition is
read again only when its commits cannot move by themselves, for several checks in a row: the message at
its committed offset was read past yet is neither acknowledged nor waiting in a stream, or the broker
holds an older commit than Faust believes it made."""

import asyncio
from collections import namedtuple

from flights_app.commit_stall import StallDetector, stuck_at, unstick

TP = namedtuple("TP", "topic partition")


def test_a_committed_offset_that_is_acknowledged_waiting_or_not_yet_read_is_not_stuck():
    assert stuck_at(100, 103, {100, 101, 102}, 100) is None  # acknowledged: Faust commits it next
    assert stuck_at(100, 103, {101, 100}, 100) is None  # in a stream or a queue
    assert stuck_at(100, 100, set(), 100) is None  # caught up (or not fetched yet)
    assert stuck_at(100, None, set(), 100) is None  # no position (being assigned)
    assert stuck_at(None, 7, {5, 6}, None) is None  # nothing committed: Faust commits what it acknowledges
    assert stuck_at(100, 100, set(), 120) is None  # the broker already has a newer commit than Faust knows


def test_a_dropped_message_is_read_again_from_the_committed_offset():
    assert stuck_at(100, 107, {103, 104, 105, 106}, 100) == 100  # a gap at the head
    # The tail of a partition dropped: nothing above it is ever acknowledged (the case the first
    # watchdog, which looked only for acknowledged offsets above the commit, missed).
    assert stuck_at(500, 512, set(), 500) == 500


def test_a_commit_the_broker_refused_is_read_again_from_the_brokers_offset():
    assert stuck_at(900, 900, set(), 640) == 640  # every state processed, the group's offset behind
    assert stuck_at(900, 950, {950}, 640) == 640  # both at once: the older offset
    assert stuck_at(900, 900, set(), None) == 0  # the broker never took any commit of this partition


def test_a_stall_is_acted_on_after_three_checks_in_a_row_then_counted_again():
    detector = StallDetector(checks=3)
    assert detector.observe("tp", 100, 105, {103, 104}, 100) is None
    assert detector.observe("tp", 100, 106, {103, 104, 105}, 100) is None
    assert detector.observe("tp", 100, 107, {103, 104, 105, 106}, 100) == 100  # the third check in a row
    assert detector.unstuck == 1 and detector.judged == 3
    assert detector.observe("tp", 100, 107, {103, 104}, 100) is None  # counted again from the start


def test_a_gap_that_closes_or_a_stall_that_moves_resets_the_count():
    detector = StallDetector(checks=3)
    assert detector.observe("tp", 100, 103, {102}, 100) is None
    assert detector.observe("tp", 100, 103, {100, 101, 102}, 100) is None  # the missing offsets arrived
    assert detector.observe("tp", 100, 103, {102}, 100) is None
    assert detector.observe("tp", 100, 103, {102}, 100) is None
    assert detector.observe("tp", 150, 153, {152}, 150) is None  # the commit moved on: a new count
    assert detector.observe("tp", 150, 153, {152}, 150) is None
    assert detector.observe("tp", 150, 153, {152}, 150) == 150
    assert detector.observe("other", 150, 153, {152}, 150) is None  # partitions are counted apart
    assert detector.unstuck == 1


# The remedy, on stand-ins for the parts of Faust's consumer and conductor it uses.

class FakeMessage:
    def __init__(self, tp, offset, acked=False):
        self.tp, self.offset, self.acked = tp, offset, acked


class FakeEvent:
    def __init__(self, message):
        self.message = message


class FakeThread:
    def __init__(self, broker):
        self.broker = broker

    def _ensure_consumer(self):
        return self

    async def committed(self, tp):
        return self.broker.get(tp)

    async def call_thread(self, fun, *args):
        return await fun(*args)


class FakeConsumer:
    def __init__(self, committed, positions, broker, acked=(), unacked=(), earliest=None, ends=None):
        self.earliest = earliest or {}
        self.ends = ends or {}  # the log end of each partition: by default, its position (nothing waits)
        self._read_offset = {}  # the last offset Faust handed to a stream, per partition
        self._committed_offset = dict(committed)
        self.positions = positions
        self._acked = {tp: list(offsets) for tp, offsets in dict(acked).items()}
        self._unacked_messages = set(unacked)
        self._thread = FakeThread(broker)
        self.seeks = []

    def assignment(self):
        return set(self.positions)

    async def position(self, tp):
        return self.positions[tp]

    async def highwaters(self, *tps):
        return {tp: self.ends.get(tp, self.positions[tp]) for tp in tps}

    async def earliest_offsets(self, *tps):
        return {tp: self.earliest.get(tp, 0) for tp in tps}

    async def seek(self, tp, offset):
        self.seeks.append((tp, offset))


class FakeConductor:
    def __init__(self, queued=(), acking=("raw",)):
        queue = type("Q", (), {"_queue": [FakeEvent(m) for m in queued]})()
        self._topics = [type("Channel", (), {"_queue": queue})()]
        self.acking = acking

    def acks_enabled_for(self, topic):
        return topic in self.acking


def run_checks(consumer, conductor, detector, n):
    for _ in range(n):
        asyncio.run(unstick(consumer, conductor, detector, check_s=10))


def test_a_partition_whose_commit_the_broker_refused_is_read_again_from_the_brokers_offset():
    stuck, fine, changelog = TP("raw", 0), TP("raw", 1), TP("changelog", 0)
    consumer = FakeConsumer(committed={stuck: 900, fine: 50, changelog: 7},
                            positions={stuck: 900, fine: 50, changelog: 9},
                            broker={stuck: 640, fine: 50, changelog: 0})
    detector = StallDetector(checks=3)
    run_checks(consumer, FakeConductor(), detector, 2)
    assert consumer.seeks == []  # not yet: three checks in a row
    run_checks(consumer, FakeConductor(), detector, 1)
    assert consumer.seeks == [(stuck, 640)]  # changelogs (no acks) are never judged
    assert consumer._committed_offset[stuck] == 640  # Faust then accepts the acks of what it reads again
    assert detector.unstuck == 1 and detector.judged == 6


def test_messages_waiting_in_a_queue_or_a_stream_are_not_taken_for_dropped_ones():
    queued, taken, dropped = TP("raw", 0), TP("raw", 1), TP("raw", 2)
    consumer = FakeConsumer(committed={queued: 10, taken: 20, dropped: 30},
                            positions={queued: 15, taken: 25, dropped: 35},
                            broker={queued: 10, taken: 20, dropped: 30},
                            acked={dropped: [31, 32]},
                            unacked=[FakeMessage(taken, 20), FakeMessage(dropped, 30, acked=True)])
    detector = StallDetector(checks=3)
    run_checks(consumer, FakeConductor(queued=[FakeMessage(queued, 10)]), detector, 3)
    assert consumer.seeks == [(dropped, 30)]


def test_a_partition_stuck_below_what_retention_kept_is_read_again_from_its_first_offset():
    stuck = TP("raw", 0)
    consumer = FakeConsumer(committed={stuck: 100}, positions={stuck: 5000}, broker={stuck: 100},
                            acked={stuck: [4000, 4001]}, earliest={stuck: 4000})
    run_checks(consumer, FakeConductor(), StallDetector(checks=3), 3)
    assert consumer.seeks == [(stuck, 4000)] and consumer._committed_offset[stuck] == 4000


def test_a_partition_with_messages_waiting_and_none_fetched_is_fetched_again_from_its_position():
    idle, busy, caught_up = TP("raw", 0), TP("raw", 1), TP("raw", 2)
    consumer = FakeConsumer(committed={idle: 268, busy: 40, caught_up: 70},
                            positions={idle: 268, busy: 45, caught_up: 70},
                            broker={idle: 268, busy: 40, caught_up: 70},
                            unacked=[FakeMessage(busy, 40), FakeMessage(busy, 41)],
                            ends={idle: 493, busy: 90, caught_up: 70})
    detector = StallDetector(checks=3)
    run_checks(consumer, FakeConductor(), detector, 2)
    assert consumer.seeks == []  # not yet: three checks in a row
    run_checks(consumer, FakeConductor(), detector, 1)
    # messages in flight (busy) or none waiting (caught up): not idle
    assert consumer.seeks == [(idle, 268)] and detector.refetched == 1 and detector.unstuck == 0
    consumer.positions[idle] = 300  # it fetches again: the count starts over
    run_checks(consumer, FakeConductor(), detector, 2)
    assert consumer.seeks == [(idle, 268)]


def test_a_partition_fetching_is_never_taken_for_an_idle_one():
    tp = TP("raw", 0)
    consumer = FakeConsumer(committed={tp: 0}, positions={tp: 0}, broker={tp: 0}, ends={tp: 100})
    detector = StallDetector(checks=3)
    for position in (0, 10, 20, 30, 40):  # it moves between checks
        consumer.positions[tp] = consumer._committed_offset[tp] = position
        consumer._thread.broker[tp] = position
        run_checks(consumer, FakeConductor(), detector, 1)
    assert consumer.seeks == [] and detector.refetched == 0


def test_a_partition_read_past_what_faust_delivered_is_read_again_from_there():
    # As in CI after a rebalance: the consumer read a dead worker's partition to its end (450), Faust's
    # streams got none of it, nothing is committed here and the broker holds 120.
    skipped, fine = TP("raw", 2), TP("raw", 0)
    consumer = FakeConsumer(committed={fine: 268}, positions={skipped: 450, fine: 268},
                            broker={skipped: 120, fine: 268}, ends={skipped: 450, fine: 268})
    consumer._read_offset[fine] = 267  # the last message delivered: the consumer is right after it
    detector = StallDetector(checks=3)
    run_checks(consumer, FakeConductor(), detector, 2)
    assert consumer.seeks == []
    run_checks(consumer, FakeConductor(), detector, 1)
    assert consumer.seeks == [(skipped, 120)] and detector.refetched == 1
