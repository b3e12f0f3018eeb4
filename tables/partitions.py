"""Table access from a micro-batch, in the right partition.

Faust's RocksDB store reads and writes the database of the *current event's*
partition, and sends the changelog there too (faust-streaming #497). A batch
from ``stream.take_events()`` mixes partitions, so each partition's events are
handled under an event of that partition.
"""

from __future__ import annotations

from collections.abc import Sequence

from faust.types import EventT

from flights_app.faust_internals import current_event


def by_partition(events: Sequence[EventT]) -> list[list[EventT]]:
    """The events grouped by their partition, each group in arrival order."""
    groups: dict[int, list[EventT]] = {}
    for event in events:
        groups.setdefault(event.message.partition, []).append(event)
    return list(groups.values())


def partition_of(event: EventT):
    """Run table reads and writes as if ``event`` were the one being processed (a context manager)."""
    return current_event(event)

