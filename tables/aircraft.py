"""Each aircraft's state in one RocksDB table, by icao24: one changelog message per aircraft and batch.

    aircraft: icao24 -> {"memory": its last two states (ml.features.AircraftMemory),
                         "last": its newest scored state (what /aircraft/{icao24}/ shows),
                         "windows": {window_start: {"seen": the event times counted, a bitmask
                                                            over the window's seconds in hex,
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
from tables.windows import Partial

aircraft = table("aircraft", help="icao24 -> the aircraft's last two states, last scored state and window counts")


def memory_of(entry: dict | None) -> AircraftMemory | None:
    """The aircraft's memory in ``entry`` (None for an aircraft not seen yet)."""
    return AircraftMemory.from_dict(entry["memory"]) if entry and entry.get("memory") else None


def windows_of(entry: dict | None) -> dict[str, dict]:
    """The aircraft's windows in ``entry``, by window start (a copy: the entry is not changed)."""
    return dict((entry or {}).get("windows") or {})


def seen_mask(window: dict, start: int) -> int:
    """The event times counted in an aircraft's window starting at ``start``: bit ``t - start`` is set
    for each. Kept in the entry as hex (an aircraft polled every 5 s has 120 a 10-minute window: 150
    characters, where a list of them took 1,300 and an entry holds up to an hour of windows). Entries
    written before it keep a list of event times, read here alike."""
    seen = window.get("seen")
    if isinstance(seen, str):
        return int(seen, 16) if seen else 0
    mask = 0
    for t in seen or ():
        mask |= 1 << (int(t) - start)
    return mask


class WindowCount:
    """One window of an aircraft's entry while a batch counts states into it: its seen mask and its
    partial held as an int and a ``Partial``, written back into the entry once (``close``), not per state."""

    def __init__(self, window: dict, start: int):
        self.window, self.start = window, start
        self.mask = seen_mask(window, start)
        self.partial = Partial.from_dict(window["partial"])

    def mark(self, event_time: int) -> bool:
        """Count ``event_time`` in the window; False if it was counted already."""
        bit = 1 << (event_time - self.start)
        if self.mask & bit:
            return False
        self.mask |= bit
        return True

    def close(self) -> dict:
        """The window's entry, holding what was counted."""
        self.window["seen"] = format(self.mask, "x")
        self.window["partial"] = self.partial.as_dict()
        return self.window


def newest_seen(entry: dict | None) -> float | None:
    """The newest event time counted in any of the entry's windows."""
    newest = None
    for start, window in windows_of(entry).items():
        mask = seen_mask(window, int(start))
        if mask:
            t = int(start) + mask.bit_length() - 1
            newest = t if newest is None else max(newest, t)
    return newest
