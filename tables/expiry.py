"""Removing expired windows from a table: from RocksDB, and from its changelog (a tombstone).

Scans the keys the worker holds now, so keys restored from the changelog after
a rebalance expire like the others (faust-streaming #385: Faust's own windowed
tables only expire keys they wrote themselves). Each delete is sent to the
changelog partition the key lives in (``flights_app.partitioner``), without
needing an event in context, so it runs from a timer.
"""

from __future__ import annotations

from collections.abc import Callable

from faust.types import TableT

from flights_app.partitioner import partition_for


def owned_partitions(table: TableT) -> set[int]:
    changelog = table.changelog_topic.get_topic_name()
    return {tp.partition for tp in table.app.assignor.assigned_actives() if tp.topic == changelog}


def expire(table: TableT, expired: Callable[[str], bool], partitions: int) -> list[str]:
    """Delete every key of this worker's active partitions for which ``expired(key)``; the keys deleted."""
    owned = owned_partitions(table)
    removed = []
    for key in list(table.keys()):
        if not expired(key):
            continue
        partition = partition_for(key.encode(), partitions)
        if partition not in owned:
            continue
        table.send_changelog(partition, key, None, value_serializer="raw")  # tombstone: compaction drops the key
        del table.data[key]
        removed.append(key)
    return removed
