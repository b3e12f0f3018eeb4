"""How the app's tables are declared: one place for their store options.

Faust's RocksDB defaults give each partition's database its own 2 GiB block
cache and up to three 64 MiB memtables. A worker holds one database per table
and partition (3 tables x 4 partitions here), so its memory grew past 1.4 GB
within ten minutes of `make bench` (40,000 aircraft). These bound each database
to about 16 MiB (two 4 MiB memtables, an 8 MiB block cache): the data lives on
disk, and the hot keys (aircraft seen in the last polls) stay in the OS page cache.
"""

from __future__ import annotations

from flights_app.app import app, settings
from flights_app.faust_internals import raw_keys

ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 << 20,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 << 20,
    "block_cache_size": 8 << 20,
}


def table(name: str, help: str):
    """A table keyed by raw UTF-8 str keys (see flights_app.faust_internals.raw_keys), co-partitioned with the
    topics (same partition count), values stored as JSON, missing keys read as None."""
    options = ROCKSDB_OPTIONS if settings.store.startswith("rocksdb") else None
    return raw_keys(app.Table(name, key_type=str, default=None, partitions=settings.topic_partitions,
                              options=options, help=help))
