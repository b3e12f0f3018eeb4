"""Faust must not commit past a message it never acknowledged.

Faust keeps ``Consumer._committed_offset[tp]`` as the next offset to process (what Kafka stores: it
is set from ``seek_to_committed`` and from ``_new_offset``'s ``batch[-1] + 1``), but its head check
in ``_new_offset`` reads it as the last offset processed: it refuses to commit only when the lowest
acknowledged offset is more than one above it. So when the message at the committed offset itself
is never acknowledged (one dropped from Faust's queues in a rebalance, faust-streaming #596) and the
next one is, Faust commits past it and nothing reads it again (found reading Faust 0.15.3 while
tracing the soak's short windows; those turned out to have another cause, README: Reliability).

Here the head check also holds when exactly the committed offset is missing: the partition's
commits then wait, and the commit watchdog (flights_app/commit_stall.py) reads it again from there.
A message that can no longer be read (deleted by retention before the worker got to it) is handled
there too: the watchdog starts again from the partition's first offset.
"""

from __future__ import annotations

from faust.transport.consumer import Consumer

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


def install() -> None:
    """Patch Faust's consumer (idempotent)."""
    Consumer._new_offset = _new_offset
