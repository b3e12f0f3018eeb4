"""Each aircraft's entry in one RocksDB table, by icao24: one changelog message per aircraft and batch.

    aircraft: icao24 -> tables.entry.AircraftEntry.stored(): its memory (the model's), its newest
              scored state (the scoring stage's) and its windows (the window core's)

Co-partitioned with flight-raw-data (same key, same partition count), so a worker holds
exactly the aircraft it scores, and a restart rebuilds them from the changelog. The scoring
agent reads an aircraft's entry once per batch and writes it once. A window leaves an entry
when the entry is next written after the window expired; an entry whose windows have all
expired (an aircraft gone for longer than the expiry) is deleted.
"""

from __future__ import annotations

from ml.features import AircraftMemory
from tables.entry import AircraftEntry
from tables.store import table

aircraft = table("aircraft", help="icao24 -> the aircraft's last two states, last scored state and window counts")


def memory_of(entry: AircraftEntry) -> AircraftMemory | None:
    """The aircraft's memory in ``entry`` (None for an aircraft not seen yet)."""
    return AircraftMemory.from_dict(entry.memory) if entry.memory else None
