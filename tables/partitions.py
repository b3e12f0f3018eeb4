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


def raw_keys(table):
    """Store and route ``table``'s str keys as raw UTF-8, like the topics' keys.

    Faust serializes str table keys as JSON (``"abc123"`` with quotes), so its
    table routing would hash other bytes than the stream's key and send a
    ``/table/{name}/{key}/`` request to the wrong worker.
    """
    table.key_serializer = "raw"
    changelog = table.changelog_topic  # already made when the table was declared
    changelog.key_serializer = changelog.schema.key_serializer = "raw"
    return table
