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

from flights_app.counts import NonNegative

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

    count: NonNegative = 0
    velocity_sum: float = 0.0
    velocity_min: float | None = None
    velocity_max: float | None = None
    altitude_count: NonNegative = 0
    altitude_sum: float = 0.0
    altitude_min: float | None = None
    altitude_max: float | None = None
    anomalies: NonNegative = 0
    on_ground: NonNegative = 0
    emergencies: NonNegative = 0
    late: NonNegative = 0

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


def states_in(partial: dict) -> int:
    """How many states a partial (``Partial.as_dict()``) holds, late ones included."""
    return partial.get("count", 0) + partial.get("late", 0)


def upsert_partial(partials: dict[str, dict], icao24: str, partial: dict) -> bool:
    """Store ``partial`` as ``icao24``'s in a window's ``partials``, unless the one held there has more
    states: an aircraft's partial only grows, so a copy with fewer is an older one arriving late.
    Whether it was stored."""
    held = partials.get(icao24)
    if held is not None and states_in(held) > states_in(partial):
        return False
    partials[icao24] = partial
    return True


def _total(ps: list[dict], name: str) -> float:
    return sum(p.get(name, 0) for p in ps)


def _extreme(ps: list[dict], name: str, pick) -> float | None:
    values = [v for p in ps if (v := p.get(name)) is not None]
    return pick(values) if values else None


def summarize(partials: dict[str, dict]) -> dict:
    """The window's statistics from its aircraft partials (icao24 -> Partial.as_dict(); a field
    missing from an older partial counts as its default). Read as dicts: a flush summarizes every
    aircraft of every window it publishes."""
    ps = list(partials.values())
    events = _total(ps, "count")
    altitude_n = _total(ps, "altitude_count")
    anomalies = _total(ps, "anomalies")
    return {
        "events": events,
        "aircraft": sum(1 for p in ps if p.get("count")),
        "velocity_min": _extreme(ps, "velocity_min", min),
        "velocity_mean": _total(ps, "velocity_sum") / events if events else None,
        "velocity_max": _extreme(ps, "velocity_max", max),
        "altitude_min": _extreme(ps, "altitude_min", min),
        "altitude_mean": _total(ps, "altitude_sum") / altitude_n if altitude_n else None,
        "altitude_max": _extreme(ps, "altitude_max", max),
        "anomalies": anomalies,
        "anomaly_rate": anomalies / events if events else 0.0,
        "on_ground": _total(ps, "on_ground"),
        "emergencies": _total(ps, "emergencies"),
        "late_events": _total(ps, "late"),
    }


def is_expired(start: int, watermark: float, size_s: int, grace_s: float, expiry_s: float) -> bool:
    """Whether a window is past keeping: closed (end + grace) for ``expiry_s`` of event time."""
    return start + size_s + grace_s + expiry_s <= watermark
