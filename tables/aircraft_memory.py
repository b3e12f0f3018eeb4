"""Each aircraft's last two states (``ml.features.AircraftMemory``), by icao24, in RocksDB.

Co-partitioned with flight-raw-data (same key, same partition count), so a
worker holds the previous states of exactly the aircraft it scores, and a
restart rebuilds them from the changelog.
"""

from __future__ import annotations

from tables.store import table

aircraft_memory = table("aircraft-memory", help="icao24 -> the aircraft's last two states (features) and its last scored state")
