"""A micro-batch's table reads and writes, without Faust's per-key path.

``table[key] = value`` in Faust runs the sensors, serialises, writes RocksDB,
and queues a changelog message in the producer buffer (drained one message per
event-loop turn) whose callback records the changelog offset in the store:
about 200 us a key here, the largest single cost of the worker (py-spy, #6).

``TableWrites`` does the same three things for a batch: the value is encoded
once (JSON, like Faust's codec reads it back), put into the RocksDB database of
the current event's partition, and sent to the changelog partition of that
event through the batch's ``Outbox``; once the outbox's sends are acknowledged,
``persist_offsets()`` records the highest changelog offset per partition in the
store, as Faust's ``_on_changelog_sent`` does, so recovery starts after it.
Faust's commit comes after the agent's batch (the agent awaits the outbox
first), so a committed input always has its table changes on the changelog.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from faust.types import CollectionT

from flights_app.faust_internals import count_keys_updated, rocksdb_of, set_persisted_offset, store_delete, store_set
from flights_app.publish import Outbox, encode


def read(table: CollectionT, key: str, partition: int) -> Any:
    """The value of ``key`` in ``partition``'s database, or None (no sensors, no default factory)."""
    db = rocksdb_of(table, partition)
    if db is None:
        return table.data.get(key)
    raw = db.get(key.encode())
    return None if raw is None else orjson.loads(raw)


class TableWrites:
    """Table writes of one micro-batch, sent with the batch's other records."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        #: each changelog batch: its table, its delivery future and how many records it holds
        self.sent: list[tuple[CollectionT, Any, int]] = []

    async def put_many(self, table: CollectionT, entries: Iterable[tuple[str, Any]], partition: int) -> None:
        """Write each (key, value) of ``entries`` (in ``partition``'s context: see tables.partitions.partition_of),
        and hand their changelog records to the outbox in whole batches."""
        in_rocksdb = rocksdb_of(table, partition) is not None
        records = []
        for key, value in entries:
            key_bytes, value_bytes = key.encode(), encode(value)
            if in_rocksdb:
                store_set(table, key_bytes, value_bytes)  # the current event's partition, as Faust's set
            else:  # the memory store keeps the value as a read gives it back (not an orjson.Fragment)
                table.data[key] = orjson.loads(value_bytes)
            records.append((key_bytes, value_bytes))
        await self._to_changelog(table, records, partition)
        count_keys_updated(table, len(records))

    async def delete_many(self, table: CollectionT, keys: Iterable[str], partition: int) -> None:
        """Delete each of ``keys`` (all of ``partition``) from the table, and hand their tombstones to the
        changelog in whole batches (Faust's ``del table[key]`` sends each alone: about 200 us a key)."""
        records = []
        for key in keys:
            key_bytes = key.encode()
            store_delete(table, partition, key_bytes)
            records.append((key_bytes, None))
        await self._to_changelog(table, records, partition)

    async def _to_changelog(self, table: CollectionT, records: list[tuple[bytes, bytes | None]],
                            partition: int) -> None:
        """Hand ``records`` to ``partition`` of the table's changelog in whole batches."""
        if records:
            changelog = table.changelog_topic.get_topic_name()
            self.sent += [(table, future, count) for future, count
                          in await self.outbox.send_many(changelog, records, partition)]

    def persist_offsets(self) -> None:
        """After the outbox's acknowledgements: the highest changelog offset per table and partition."""
        highest: dict[tuple[int, Any], tuple[CollectionT, Any, int]] = {}
        for table, future, count in self.sent:
            meta = future.result()
            offset = meta.offset + count - 1  # the batch's last record
            slot = (id(table), meta.partition)
            if slot not in highest or offset > highest[slot][2]:
                highest[slot] = (table, meta.topic_partition, offset)
        for table, tp, offset in highest.values():
            set_persisted_offset(table, tp, offset)
        self.sent.clear()
