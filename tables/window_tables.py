"""The RocksDB tables behind the windowed statistics (see tables/windows.py for the design).

aircraft (tables/aircraft.py): icao24 -> its windows' {"seen": event times (a bitmask), "partial": Partial,
    and its group in each dimension}, beside its last states; co-partitioned with flight-raw-data (keyed by icao24)
group-windows:    "dimension|name@window_start@shard" -> {"partials": {icao24: Partial}}
                  "dimension|name@window_start@final" -> {"final": true} once the final record is out
    co-partitioned with flight-window-partials (keyed by "dimension|name"); 16 shards by icao24
    keep each changelog message small for busy countries

Keys are raw UTF-8 (like the topics' keys) and route by their part before the
first "@" (flights_app.partitioner), so Faust's table routing finds each key on
the worker that owns its stream key.
"""

from __future__ import annotations

from tables.store import table

group_windows = table("group-windows",
                      help="dimension|name@window_start@shard -> the aircraft partials of a country or airline")
