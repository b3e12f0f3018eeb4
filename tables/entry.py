"""One aircraft's entry of the aircraft table, typed: each field has one owner.

    memory   -- the model's: the aircraft's last two states (ml.features.AircraftMemory.as_dict()),
                written by the scoring stage from ml.track
    last     -- the scoring stage's: its newest scored state (what /aircraft/{icao24}/ shows)
    windows  -- the window core's (tables.window_core.AircraftWindows): window start -> the event
                times counted, the partials and the window's groups

Read once per aircraft and batch (``from_stored``) and written once (``stored``): memory, last
state and windows in one value, so a crash never leaves one updated without the others. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AircraftEntry:
    memory: dict | None = None
    last: Any = None
    windows: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_stored(cls, value: dict | None) -> AircraftEntry:
        """The entry as the table holds it (None: an aircraft not seen yet). Its windows are a copy."""
        if not value:
            return cls()
        return cls(value.get("memory"), value.get("last"), dict(value.get("windows") or {}))

    def stored(self) -> dict:
        """The value to write."""
        return {"memory": self.memory, "last": self.last, "windows": self.windows}
