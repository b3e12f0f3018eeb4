"""The group stage's event-time watermarks: one per partition of flight-window-partials.

Every partial (and every tick, a message carrying only a watermark) says which partition of
flight-raw-data sent it (its *source*), that source's watermark then, and whether the source is
idle. In one partials partition a source's messages arrive in the order it sent them, and its
watermark never goes back, so once a partials partition has processed a source's message carrying
watermark M, no later message of that source there holds a state of a window M expires (the
aircraft stage does not window such states). A window of a partials partition may therefore be
closed and expired once every working source's watermark *as heard in that partition* has passed it.

One watermark over all partials partitions is not enough: while a worker catches up (after a
crash), it consumes its partials partitions at different speeds, and the ones ahead carry
every source's newer watermark; a window of a lagging partition would expire before that
partition's late partial for it is processed, and the partial would then be dropped as
belonging to a window already gone.

A source is *working* unless its last message there said it is idle. Only the source knows: it is
idle when nothing waits in its partition of flight-raw-data and it has handed over no batch for
FLIGHTS_WATERMARK_IDLE (an idle source, e.g. a partition whose aircraft all landed, must not stop
the clock). A source nobody consumes (its worker killed, its partition being recovered or
reassigned) says nothing, and so holds the clock where its last message left it: its states are
not closed out of their windows while it is down. (Until December 2026 a source fell idle after
FLIGHTS_WATERMARK_IDLE without a message, and a partition that took longer to come back lost its
states to windows already closed and expired; tests/test_window_core.py found it.) Every held
source ticks every partition it has not written to for a second, so after a (re)start a
partition hears every source before its watermark moves.
"""

from __future__ import annotations


class PartitionWatermarks:
    """Per partials partition: each source's newest watermark heard there and whether it is idle, and the
    partition's watermark (the lowest of the working sources'; it never goes back)."""

    def __init__(self, sources: int):
        self.sources = sources
        #: partition -> source -> (watermark or None when the source knows none yet, whether it is idle)
        self.heard: dict[int, dict[int, tuple[float | None, bool]]] = {}
        self.marks: dict[int, float] = {}

    def hear(self, partition: int, source: int, watermark: float | None, idle: bool) -> None:
        heard = self.heard.setdefault(partition, {})
        previous = heard.get(source, (None, idle))[0]
        if previous is not None and (watermark is None or watermark < previous):
            watermark = previous
        heard[source] = (watermark, idle)
        self._advance(partition)

    def _advance(self, partition: int) -> None:
        heard = self.heard[partition]
        if len(heard) < self.sources:
            return  # after a (re)start, hear from every source here first
        working = [mark for mark, idle in heard.values() if not idle]
        if not working or None in working:
            return  # every source idle: stay; a working source without a watermark yet: wait for it
        current = self.marks.get(partition)
        self.marks[partition] = min(working) if current is None else max(current, min(working))

    def mark(self, partition: int) -> float | None:
        """The partition's watermark (None until known)."""
        return self.marks.get(partition)

    def lowest(self) -> float | None:
        """The lowest watermark of the partitions known (None if none is)."""
        return min(self.marks.values()) if self.marks else None


class TickSchedule:
    """When a source ticks each partials partition: one it has not written to (a partial or a tick)
    for ``every_s`` seconds."""

    def __init__(self, partitions: int, every_s: float):
        self.partitions = partitions
        self.every_s = every_s
        #: (source, partials partition) -> monotonic time of the last message sent there
        self.last: dict[tuple[int, int], float] = {}

    def wrote(self, source: int, partition: int, now: float) -> None:
        self.last[(source, partition)] = now

    def due(self, source: int, now: float) -> list[int]:
        """The partitions ``source`` should tick now (marked as written)."""
        due = [p for p in range(self.partitions) if now - self.last.get((source, p), float("-inf")) >= self.every_s]
        for partition in due:
            self.wrote(source, partition, now)
        return due
