"""What the dashboard shows, computed from the output topics' records: bounded, pure, no Panel.

Records arrive as decoded JSON (``flight-processed-data``: a ScoredState;
``flight-aggregated-data``: a window summary). Everything here is bounded:
the event buffer by count, the aircraft map by count (least recently seen
evicted), each aircraft's trail by length, the window buffer by count.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from web.dashboard.totals import FeedTotals

#: Fields whose completeness the data-quality chart shows (share of events where present).
QUALITY_FIELDS = ("callsign", "time_position", "baro_altitude", "geo_altitude", "true_track",
                  "vertical_rate", "squawk")
_BOOTSTRAP_RE = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


def flatten(scored: dict) -> dict:
    """One row per processed event, the fields the charts and tables use."""
    s = scored["state"]
    altitude = s.get("baro_altitude")
    if altitude is None:
        altitude = s.get("geo_altitude")
    return {
        "event_time": s["time_position"] if s.get("time_position") is not None else s["last_contact"],
        "processed_time": scored.get("processed_time"),
        "icao24": s["icao24"], "callsign": s.get("callsign") or "", "country": s.get("origin_country") or "",
        "latitude": s["latitude"], "longitude": s["longitude"], "altitude": altitude,
        "velocity": s["velocity"], "heading": s.get("true_track"), "vertical_rate": s.get("vertical_rate"),
        "on_ground": bool(s.get("on_ground")), "squawk": s.get("squawk"),
        "phase": scored.get("flight_phase") or "unknown",
        "score": float(scored.get("ml_anomaly_score") or 0.0),
        "model_anomaly": bool(scored.get("ml_is_anomaly")),
        "reason": scored.get("anomaly_reason") or "", "alerts": list(scored.get("alerts") or []),
        "faults": list(scored.get("data_faults") or []),
        "present": {f: s.get(f) is not None for f in QUALITY_FIELDS},
    }


def valid_bootstrap(text: str) -> bool:
    """A comma-separated list of host:port, nothing else (the sidebar's broker field)."""
    parts = [p.strip() for p in text.split(",")]
    return bool(parts) and all(_BOOTSTRAP_RE.match(p) and 0 < int(p.rsplit(":", 1)[1]) < 65536 for p in parts)


@dataclass
class Filters:
    """The sidebar's filters; ``threshold`` re-classifies events by score, live."""

    country: str = ""
    callsign: str = ""
    anomalies_only: bool = False
    altitude_min: float = -1000.0
    altitude_max: float = 20000.0
    threshold: float = 0.6

    def is_anomaly(self, row: dict) -> bool:
        return row["score"] >= self.threshold or bool(row["alerts"])

    def keep(self, row: dict) -> bool:
        if self.country and row["country"] != self.country:
            return False
        if self.callsign and self.callsign.strip().upper() not in row["callsign"].upper():
            return False
        if self.anomalies_only and not self.is_anomaly(row):
            return False
        altitude = row["altitude"] if row["altitude"] is not None else 0.0
        return self.altitude_min <= altitude <= self.altitude_max

    def apply(self, rows: Iterable[dict]) -> list[dict]:
        return [r for r in rows if self.keep(r)]


@dataclass
class Traffic:
    """The dashboard's memory of the processed topic: recent events, aircraft, trails, windows."""

    max_events: int = 5000
    max_aircraft: int = 60000
    trail_length: int = 20
    max_windows: int = 500
    events: deque = field(init=False)
    aircraft: OrderedDict = field(default_factory=OrderedDict)  # icao24 -> newest row
    trails: dict = field(default_factory=dict)  # icao24 -> deque of (lon, lat)
    windows: OrderedDict = field(default_factory=OrderedDict)  # (dimension, name, start) -> record
    total_events: int = 0
    invalid_by_reason: Counter = field(default_factory=Counter)
    duplicates_dropped: int = 0
    totals: FeedTotals = field(default_factory=FeedTotals)  # every distinct state read, per minute

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.max_events)

    def resize(self, max_events: int, max_windows: int) -> None:
        """New buffer bounds (the newest records kept)."""
        self.max_events, self.max_windows = max_events, max_windows
        self.events = deque(self.events, maxlen=max_events)
        while len(self.windows) > max_windows:
            self.windows.popitem(last=False)

    def add_processed(self, scored: dict) -> dict:
        row = flatten(scored)
        self.events.append(row)
        self.total_events += 1
        self.totals.add(row)
        icao24 = row["icao24"]
        current = self.aircraft.get(icao24)
        if current is None or row["event_time"] >= current["event_time"]:
            self.aircraft[icao24] = row
            self.aircraft.move_to_end(icao24)
            trail = self.trails.setdefault(icao24, deque(maxlen=self.trail_length))
            trail.append((row["longitude"], row["latitude"]))
        while len(self.aircraft) > self.max_aircraft:
            gone, _ = self.aircraft.popitem(last=False)
            self.trails.pop(gone, None)
        return row

    def add_window(self, record: dict) -> None:
        key = (record["dimension"], record["name"], record["window_start"])
        self.windows[key] = record
        self.windows.move_to_end(key)
        while len(self.windows) > self.max_windows:
            self.windows.popitem(last=False)

    def add_invalid(self, record: dict) -> None:
        self.invalid_by_reason[record.get("reason") or "unknown"] += 1

    def tracked(self, now: float, within_s: float = 300.0) -> list[dict]:
        """Aircraft whose newest state is less than ``within_s`` old (by ``now``, event time)."""
        return [r for r in self.aircraft.values() if now - r["event_time"] <= within_s]

    def tracked_now(self) -> list[dict]:
        """The aircraft tracked as of the newest state held (``tracked`` by its event time)."""
        newest = self.newest_event_time()
        return self.tracked(newest) if newest is not None else []

    def newest_event_time(self) -> float | None:
        return max((r["event_time"] for r in self.aircraft.values()), default=None)


def top_counts(counts: Counter, n: int) -> list[tuple[str, int]]:
    """The ``n`` biggest counts, biggest first (ties by name); without sorting them all (40,000 aircraft)."""
    return heapq.nsmallest(n, counts.items(), key=lambda kv: (-kv[1], kv[0]))


def completeness(rows: list[dict]) -> dict[str, float]:
    """Share of events in which each quality field is present."""
    n = len(rows)
    return {f: (sum(r["present"][f] for r in rows) / n if n else 0.0) for f in QUALITY_FIELDS}


def alerts(rows: list[dict], filters: Filters, n: int = 50) -> list[dict]:
    """Alerts (emergency squawks) newest first, then the model's anomalies above the threshold,
    highest score first, then data faults (reports that cannot be true) newest first."""
    seen: set[tuple[str, float]] = set()
    flagged = []
    for r in rows:  # a state OpenSky repeated (or a replay delivered twice) is one alert
        identity = (r["icao24"], r["event_time"])
        if (r["alerts"] or r["faults"] or r["score"] >= filters.threshold) and identity not in seen:
            seen.add(identity)
            flagged.append(r)

    def order(r: dict) -> tuple:
        if r["alerts"]:
            return 0, -r["event_time"]
        if r["score"] >= filters.threshold and not r["faults"]:
            return 1, -r["score"]
        return 2, -r["event_time"]

    flagged.sort(key=order)
    return flagged[:n]


def why(row: dict, filters: Filters) -> str:
    """Why a state is flagged, in words: its alerts, else its data faults, else the model's reason."""
    if row["alerts"]:
        return "; ".join(row["alerts"])
    if row["faults"]:
        return "data fault: " + "; ".join(row["faults"])
    if row["score"] >= filters.threshold:
        return row["reason"] or "model score"
    return ""


def window_series(traffic: Traffic, dimension: str = "country", name: str | None = None) -> list[dict]:
    """Per window start (oldest first): min/mean/max velocity and anomalies, summed over names
    (or of one name), from the newest record of each (dimension, name, window)."""
    by_start: dict[int, list[dict]] = {}
    for (dim, n, start), record in traffic.windows.items():
        if dim == dimension and (name is None or n == name):
            by_start.setdefault(start, []).append(record)
    series = []
    for start in sorted(by_start):
        records = by_start[start]
        events = sum(r["events"] for r in records)
        mins = [r["velocity_min"] for r in records if r["velocity_min"] is not None]
        maxs = [r["velocity_max"] for r in records if r["velocity_max"] is not None]
        weighted = sum(r["velocity_mean"] * r["events"] for r in records if r["velocity_mean"] is not None)
        series.append({"window_start": start, "events": events, "anomalies": sum(r["anomalies"] for r in records),
                       "velocity_min": min(mins) if mins else None, "velocity_max": max(maxs) if maxs else None,
                       "velocity_mean": weighted / events if events else None,
                       "final": all(r.get("final") for r in records)})
    return series


def dimensions_seen(traffic: Traffic) -> list[str]:
    """The window dimensions of the records kept (country first, as the worker declares them)."""
    seen = dict.fromkeys(dim for dim, _, _ in traffic.windows)
    return sorted(seen, key=lambda d: (d != "country", d))


def newest_window_groups(traffic: Traffic, dimension: str, n: int) -> tuple[int | None, list[tuple[str, int]]]:
    """The newest window start of ``dimension`` and its ``n`` biggest groups by events, biggest first."""
    starts = [start for dim, _, start in traffic.windows if dim == dimension]
    if not starts:
        return None, []
    newest = max(starts)
    groups = [(name, r["events"]) for (dim, name, start), r in traffic.windows.items()
              if dim == dimension and start == newest]
    return newest, sorted(groups, key=lambda g: (-g[1], g[0]))[:n]

