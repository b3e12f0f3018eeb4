"""Each aircraft's state in one RocksDB table, by icao24: one changelog message per aircraft and batch.

    aircraft: icao24 -> {"memory": its last two states (ml.features.AircraftMemory),
                         "last": its newest scored state (what /aircraft/{icao24}/ shows),
                         "windows": {window_start: {"seen": [event times counted],
                                                    "partial": tables.windows.Partial,
                                                    "country", "airline"}}}

Co-partitioned with flight-raw-data (same key, same partition count), so a worker holds
exactly the aircraft it scores, and a restart rebuilds them from the changelog. The scoring
agent reads an aircraft's entry once per batch and writes it once, memory and windows
together (one value, so a crash never leaves one updated without the other). A window
leaves an entry when the entry is next written after the window expired; an entry whose
windows have all expired (an aircraft gone for longer than the expiry) is deleted.
"""

from __future__ import annotations

from ml.features import AircraftMemory
from tables.store import table

aircraft = table("aircraft", help="icao24 -> the aircraft's last two states, last scored state and window counts")


def memory_of(entry: dict | None) -> AircraftMemory | None:
    """The aircraft's memory in ``entry`` (None for an aircraft not seen yet)."""
    return AircraftMemory.from_dict(entry["memory"]) if entry and entry.get("memory") else None


def windows_of(entry: dict | None) -> dict[str, dict]:
    """The aircraft's windows in ``entry``, by window start (a copy: the entry is not changed)."""
    return dict((entry or {}).get("windows") or {})


def newest_seen(entry: dict | None) -> float | None:
    """The newest event time counted in any of the entry's windows."""
    return max((max(w["seen"]) for w in windows_of(entry).values() if w.get("seen")), default=None)
