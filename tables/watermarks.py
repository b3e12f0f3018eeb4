"""The group stage's event-time watermarks: one per partition of flight-window-partials.

Every partial (and every tick, a message carrying only a watermark) says which partition of
flight-raw-data sent it (its *source*) and that source's watermark then. In one partials
partition a source's messages arrive in the order it sent them, and its watermark never goes
back, so once a partials partition has processed a source's message carrying watermark M, no
later message of that source there holds a state of a window M expires (the aircraft stage
does not window such states). A window of a partials partition may therefore be closed and
expired once every working source's watermark *as heard in that partition* has passed it.

One watermark over all partials partitions is not enough: while a worker catches up (after a
crash), it consumes its partials partitions at different speeds, and the ones ahead carry
every source's newer watermark; a window of a lagging partition would expire before that
partition's late partial for it is processed, and the partial would then be dropped as
belonging to a window already gone.

A source is *working* in a partition if heard there in the last ``idle_s`` seconds, or if its
last message there said it had a backlog (an idle source, e.g. a partition whose aircraft all
landed, must not stop the clock; one working through a backlog must hold it even if its
messages come slowly). Sources tick every partition they have not written to for a while, so
each partition hears every working source.
"""

from __future__ import annotations


class PartitionWatermarks:
    """Per partials partition: each source's newest watermark heard there, and the partition's
    watermark (the lowest of the working sources'; it never goes back)."""

    def __init__(self, sources: int, idle_s: float):
        self.sources = sources
        self.idle_s = idle_s
        #: partition -> source -> (watermark, monotonic time heard, whether the source had a backlog)
        self.heard: dict[int, dict[int, tuple[float, float, bool]]] = {}
        self.first_heard: dict[int, float] = {}
        self.marks: dict[int, float] = {}

    def hear(self, partition: int, source: int, watermark: float, behind: bool, now: float) -> None:
        heard = self.heard.setdefault(partition, {})
        previous = heard.get(source, (watermark, now, behind))[0]
        heard[source] = (max(previous, watermark), now, behind)
        self.first_heard.setdefault(partition, now)
        self._advance(partition, now)

    def advance(self, now: float) -> None:
        """Let every partition's watermark move past sources that fell idle without a message."""
        for partition in self.heard:
            self._advance(partition, now)

    def _advance(self, partition: int, now: float) -> None:
        heard = self.heard[partition]
        if len(heard) < self.sources and now - self.first_heard[partition] < self.idle_s:
            return  # after a (re)start, hear from every source here (or wait the idle time) first
        working = [mark for mark, at, busy in heard.values() if busy or now - at < self.idle_s]
        if working:
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
    for ``every_s`` seconds. Between its batches (from a timer) only where its watermark rose since
    what it last sent there: a source with nothing new must fall idle, not be heard forever."""

    def __init__(self, partitions: int, every_s: float):
        self.partitions = partitions
        self.every_s = every_s
        #: (source, partials partition) -> (monotonic time, watermark) of the last message sent there
        self.last: dict[tuple[int, int], tuple[float, float]] = {}

    def wrote(self, source: int, partition: int, now: float, watermark: float) -> None:
        self.last[(source, partition)] = (now, watermark)

    def due(self, source: int, now: float, watermark: float, rose_only: bool = False) -> list[int]:
        """The partitions ``source`` should tick now (marked as written)."""
        due = []
        for partition in range(self.partitions):
            at, sent = self.last.get((source, partition), (float("-inf"), None))
            if now - at >= self.every_s and not (rose_only and sent is not None and watermark <= sent):
                due.append(partition)
        for partition in due:
            self.wrote(source, partition, now, watermark)
        return due
