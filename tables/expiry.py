"""Finding expired entries of a table: the keys of the partitions the worker holds now.

Scans the keys, so keys restored from the changelog after a rebalance expire like the others
(faust-streaming #385: Faust's own windowed tables only expire keys they wrote themselves).
``tables.direct.TableWrites.delete_many`` deletes them, from RocksDB and from the changelog
partition each lives in (tombstones in whole batches), from a timer.
"""

from __future__ import annotations

from collections.abc import Callable

from faust.types import TableT

from flights_app.faust_internals import active_partitions
from flights_app.partitioner import partition_for


def owned_partitions(table: TableT) -> set[int]:
    """The partitions of ``table`` this worker holds as active now."""
    return active_partitions(table.app, table.changelog_topic.get_topic_name())


def expired_keys(table: TableT, expired: Callable[[str], bool], most: int) -> list[str]:
    """Up to ``most`` keys of this worker's active partitions for which ``expired(key)``."""
    owned = owned_partitions(table)
    partitions = table.partitions
    found = []
    for key in list(table.keys()):
        if partition_for(key.encode(), partitions) in owned and expired(key):
            found.append(key)
            if len(found) >= most:
                break
    return found
