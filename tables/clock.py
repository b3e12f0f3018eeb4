"""The window clock: when a window of event time closes and when it expires (docs/window-clock.md).

One object holds every piece of event time the window stage keeps in memory:

- the aircraft stage's watermark per partition of flight-raw-data (the newest event time
  seen there; recovered from the aircraft table after a restart);
- the group stage's watermark per partition of flight-window-partials
  (``tables.watermarks.PartitionWatermarks``: the lowest of the working sources' as heard there);
- the tick schedule (``tables.watermarks.TickSchedule``), each source's newest watermark handed
  to the producer (which the tick timer sends on between batches) and when, and since when this
  worker holds each source (so the timer can tell an idle source);
- the windows whose final record has been asked for (a close message on its way);
- whether the next flush must republish every window (after every rebalance);
- what the aircraft table's expiry scan last saw, so it is scanned only when that moved.

Pure: no Faust, no Kafka. ``agents/windows.py`` drives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tables.watermarks import PartitionWatermarks, TickSchedule
from tables.windows import is_expired, is_late, window_start

Window = tuple[str, str, int]  # (dimension, group name, window start)


class WindowClock:
    def __init__(self, size_s: int, grace_s: float, expiry_s: float, partitions: int, idle_s: float):
        self.size_s, self.grace_s, self.expiry_s = size_s, grace_s, expiry_s
        #: the aircraft stage's watermark, per partition of flight-raw-data
        self.sources: dict[int, float] = {}
        #: the group stage's watermarks, per partition of flight-window-partials
        self.idle_s = idle_s
        self.partials = PartitionWatermarks(partitions)
        self.ticks = TickSchedule(partitions, min(1.0, idle_s / 3))
        #: each source's newest watermark whose partials were handed to the producer, and when
        self.sent: dict[int, tuple[float, float]] = {}
        #: when this worker first ticked each source it holds (monotonic)
        self.held_since: dict[int, float] = {}
        #: windows whose final record was asked for (not asked twice while the first is on its way)
        self.closing: set[Window] = set()
        self.republish_pending = False
        self._scanned: tuple | None = None

    # -- the arithmetic of one window ------------------------------------------------------------
    def window_of(self, event_time: float) -> int:
        return window_start(event_time, self.size_s)

    def expired(self, start: int, watermark: float | None) -> bool:
        """Past keeping: closed for the expiry (never, while the watermark is unknown)."""
        return watermark is not None and is_expired(start, watermark, self.size_s, self.grace_s, self.expiry_s)

    def late(self, event_time: float, watermark: float) -> bool:
        return is_late(event_time, watermark, self.size_s, self.grace_s)

    def closed(self, start: int, watermark: float | None) -> bool:
        return watermark is not None and start + self.size_s + self.grace_s <= watermark

    # -- the aircraft stage ------------------------------------------------------------------
    def saw(self, source: int, event_time: float) -> float:
        """A state of ``source`` (a partition of flight-raw-data) was seen: its watermark now."""
        watermark = max(self.sources.get(source, event_time), event_time)
        self.sources[source] = watermark
        return watermark

    def recover(self, newest_by_source: Iterable[tuple[int, float]]) -> None:
        """After a start, each source's watermark is the newest event time its table entries hold."""
        if self.sources:
            return
        for source, newest in newest_by_source:
            self.sources[source] = max(self.sources.get(source, newest), newest)

    def handed_over(self, source: int, now: float) -> None:
        """The source's partials are with the producer: the tick timer may send its watermark on (sent
        before them, it could expire a window they hold)."""
        if source in self.sources:
            self.sent[source] = (self.sources[source], now)

    def tick_of(self, source: int, now: float, waiting: bool | None) -> tuple[float | None, bool]:
        """What a tick of ``source`` between batches says: its watermark handed over (None: none since this
        worker started), and whether it is idle: nothing waits in it (``waiting`` False; None: not known)
        and no batch of it handed over for the idle time."""
        since = self.held_since.setdefault(source, now)
        watermark, last = self.sent.get(source, (None, since))
        return watermark, waiting is False and now - last >= self.idle_s

    # -- the group stage --------------------------------------------------------------------
    def heard(self, partition: int, source: int, watermark: float | None, idle: bool) -> None:
        self.partials.hear(partition, source, watermark, idle)

    def group_mark(self, partition: int) -> float | None:
        return self.partials.mark(partition)

    def to_close(self, known: Iterable[Window], partition_of: Callable[[Window], int],
                 finished: Callable[[Window], bool]) -> list[Window]:
        """The windows whose final record to ask for now: closed by their partition's watermark, not
        finished, not already asked for. Windows no longer held here are forgotten."""
        known = set(known)
        self.closing.intersection_update(known)
        due = [w for w in sorted(known - self.closing)
               if self.closed(w[2], self.group_mark(partition_of(w))) and not finished(w)]
        self.closing.update(due)
        return due

    def finished(self, window: Window) -> None:
        """The window's final record is out (and marked)."""
        self.closing.discard(window)

    # -- after a rebalance -------------------------------------------------------------------
    def rebalanced(self) -> None:
        self.republish_pending = True

    def take_republish(self, settled: bool) -> bool:
        """Whether this flush republishes every window held (once the tables are recovered)."""
        if self.republish_pending and settled:
            self.republish_pending = False
            return True
        return False

    # -- expiry ----------------------------------------------------------------------------
    def _horizons(self, marks: dict[int, float]) -> tuple:
        """Per partition, the newest window start its watermark may have expired."""
        return tuple(sorted((p, window_start(m - self.size_s - self.grace_s - self.expiry_s, self.size_s))
                            for p, m in marks.items()))

    def aircraft_scan_due(self) -> bool:
        """Whether a source's watermark crossed into a window that may expire since the last scan of the
        aircraft table. (The group windows need no scan: ``window_core.HeldWindows``.)"""
        horizons = self._horizons(self.sources)
        if not horizons or horizons == self._scanned:
            return False
        self._scanned = horizons
        return True
