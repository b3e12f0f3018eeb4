"""The RocksDB tables behind the windowed statistics (see tables/windows.py for the design).

aircraft-windows: "icao24|window_start" -> {"seen": [event times], "partial": Partial, country, airline}
    co-partitioned with flight-processed-data (keyed by icao24)
group-windows:    "dimension|name|window_start|shard" -> {"partials": {icao24: Partial}, "final": bool}
    co-partitioned with flight-window-partials (keyed by "dimension|name"); 16 shards by icao24
    keep each changelog message small for busy countries
"""

from __future__ import annotations

import zlib

from flights_app.app import app, settings

SHARDS = 16

aircraft_windows = app.Table("aircraft-windows", default=None, partitions=settings.topic_partitions)
group_windows = app.Table("group-windows", default=None, partitions=settings.topic_partitions)


def shard_of(icao24: str) -> int:
    return zlib.crc32(icao24.encode()) % SHARDS


def group_key(dimension: str, name: str, start: int, shard: int) -> str:
    return f"{dimension}|{name}|{start}|{shard}"
