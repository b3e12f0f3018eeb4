"""Each aircraft's last two states (``ml.features.AircraftMemory``), by icao24, in RocksDB.

Co-partitioned with flight-raw-data (same key, same partition count), so a
worker holds the previous states of exactly the aircraft it scores, and a
restart rebuilds them from the changelog.
"""

from __future__ import annotations

from flights_app.app import app, settings
from tables.partitions import raw_keys

aircraft_memory = raw_keys(app.Table(
    "aircraft-memory",
    key_type=str,
    default=None,  # values: AircraftMemory.as_dict(), stored as JSON (the app's value serializer)
    partitions=settings.topic_partitions,
    help="icao24 -> the aircraft's last two states (features) and its last scored state",
))
