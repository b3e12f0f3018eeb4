"""Event-time tumbling windows and the aggregates kept in them: pure functions.

Exact totals under at-least-once delivery come from two idempotent steps:

1. Per aircraft and window, one entry holds the event times already counted
   (deduplication) and that aircraft's partial aggregate; both change in one
   write, so a replayed state is either counted with its mark or not at all.
2. Per country (or airline) and window, the aggregate is the sum of the
   aircraft partials, each stored by icao24 and replaced whole on every
   update: a replayed partial overwrites itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_AIRLINE_RE = re.compile(r"^([A-Z]{3})\d")


def window_start(event_time: float, size_s: int) -> int:
    """The start of the tumbling window holding ``event_time`` (an event at a boundary opens the next)."""
    return int(event_time // size_s) * size_s


def is_late(event_time: float, watermark: float, size_s: int, grace_s: float) -> bool:
    """Whether the event's window had already closed when it arrived (window end + grace <= watermark)."""
    return window_start(event_time, size_s) + size_s + grace_s <= watermark


def airline_of(callsign: str | None) -> str | None:
    """The ICAO airline designator of an airline callsign ("DLH4AB" -> "DLH"); None for registrations."""
    if not callsign:
        return None
    match = _AIRLINE_RE.match(callsign.strip().upper())
    return match.group(1) if match else None


@dataclass
class Partial:
    """One aircraft's contribution to a window. Replaced whole downstream, never added twice."""

    count: int = 0
    velocity_sum: float = 0.0
    velocity_min: float | None = None
    velocity_max: float | None = None
    altitude_count: int = 0
    altitude_sum: float = 0.0
    altitude_min: float | None = None
    altitude_max: float | None = None
    anomalies: int = 0
    on_ground: int = 0
    emergencies: int = 0
    late: int = 0

    def add(self, velocity: float, altitude: float | None, anomaly: bool, on_ground: bool, emergency: bool) -> None:
        self.count += 1
        self.velocity_sum += velocity
        self.velocity_min = velocity if self.velocity_min is None else min(self.velocity_min, velocity)
        self.velocity_max = velocity if self.velocity_max is None else max(self.velocity_max, velocity)
        if altitude is not None:
            self.altitude_count += 1
            self.altitude_sum += altitude
            self.altitude_min = altitude if self.altitude_min is None else min(self.altitude_min, altitude)
            self.altitude_max = altitude if self.altitude_max is None else max(self.altitude_max, altitude)
        self.anomalies += anomaly
        self.on_ground += on_ground
        self.emergencies += emergency

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> Partial:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _min(values):
    values = [v for v in values if v is not None]
    return min(values) if values else None


def _max(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def summarize(partials: dict[str, dict]) -> dict:
    """The window's statistics from its aircraft partials (icao24 -> Partial.as_dict())."""
    ps = [Partial.from_dict(p) for p in partials.values()]
    events = sum(p.count for p in ps)
    altitude_n = sum(p.altitude_count for p in ps)
    anomalies = sum(p.anomalies for p in ps)
    return {
        "events": events,
        "aircraft": sum(1 for p in ps if p.count),
        "velocity_min": _min(p.velocity_min for p in ps),
        "velocity_mean": sum(p.velocity_sum for p in ps) / events if events else None,
        "velocity_max": _max(p.velocity_max for p in ps),
        "altitude_min": _min(p.altitude_min for p in ps),
        "altitude_mean": sum(p.altitude_sum for p in ps) / altitude_n if altitude_n else None,
        "altitude_max": _max(p.altitude_max for p in ps),
        "anomalies": anomalies,
        "anomaly_rate": anomalies / events if events else 0.0,
        "on_ground": sum(p.on_ground for p in ps),
        "emergencies": sum(p.emergencies for p in ps),
        "late_events": sum(p.late for p in ps),
    }


def is_expired(start: int, watermark: float, size_s: int, grace_s: float, expiry_s: float) -> bool:
    """Whether a window is past keeping: closed (end + grace) for ``expiry_s`` of event time."""
    return start + size_s + grace_s + expiry_s <= watermark
