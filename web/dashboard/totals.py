"""What the dashboard says of all traffic, not of a buffer (pure, no Panel).

Every processed record the feed reads is added to the minute of event time it belongs to (the last
``KEEP_MINUTES`` are kept), each state once: a record of an aircraft at an event time already
counted (OpenSky repeats states; a replay may deliver a record twice; a stale position is re-reported
minutes later) is not counted again, as the worker's windows count distinct states. A period (the
last 10 minutes, the last hour, ...) is the sum of its minutes, so its totals equal the worker's
window totals over the same event time.

The anomaly threshold stays live over aggregates: each minute keeps its states' scores in
``SCORE_BINS`` bins (the slider moves in steps of 1/SCORE_BINS), so the states at or above any
threshold are counted without the states themselves.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
MINUTE_S = 60
KEEP_MINUTES = 6 * 60
SCORE_BINS = 100
VELOCITY_BINS, VELOCITY_MAX = 30, 330.0
#: How far back (event time, from an aircraft's newest state) a repeat of its state is recognised: one
#: bit a second per aircraft (at most 0.9 KB each); a state re-reported minutes later (a stale position)
#: is still known as a repeat, as the worker's windows know it.
DEDUP_HORIZON_S = 7200


@dataclass
class Minute:
    events: int = 0
    model_anomalies: int = 0  # ml_is_anomaly, as the worker's windows count anomalies
    alerted: int = 0  # states with an alert (emergency squawk): anomalies at any threshold
    scores: list = field(default_factory=lambda: [0] * SCORE_BINS)  # states without an alert, by score bin
    velocity_n: int = 0
    velocity_sum: float = 0.0
    velocity_min: float = math.inf
    velocity_max: float = -math.inf
    altitude_n: int = 0
    altitude_sum: float = 0.0
    on_ground: int = 0
    velocity_hist: list = field(default_factory=lambda: [0] * VELOCITY_BINS)
    phases: Counter = field(default_factory=Counter)
    compass: Counter = field(default_factory=Counter)
    countries: Counter = field(default_factory=Counter)

    def add(self, row: dict) -> None:
        self.events += 1
        self.model_anomalies += bool(row["model_anomaly"])
        if row["alerts"]:
            self.alerted += 1
        else:
            self.scores[score_bin(row["score"])] += 1
        velocity = row["velocity"]
        if velocity is not None:
            self.velocity_n += 1
            self.velocity_sum += velocity
            self.velocity_min = min(self.velocity_min, velocity)
            self.velocity_max = max(self.velocity_max, velocity)
            self.velocity_hist[min(VELOCITY_BINS - 1, max(0, int(velocity // (VELOCITY_MAX / VELOCITY_BINS))))] += 1
        if row["altitude"] is not None:
            self.altitude_n += 1
            self.altitude_sum += row["altitude"]
        self.on_ground += bool(row["on_ground"])
        self.phases[row["phase"]] += 1
        sector = compass_sector(row["heading"])
        if sector is not None:
            self.compass[sector] += 1
        self.countries[row["country"] or "?"] += 1

    def anomalies(self, threshold: float) -> int:
        return self.alerted + sum(self.scores[score_bin(threshold):])


def compass_sector(heading: float | None) -> str | None:
    """The 45-degree compass sector of a track angle (N is 337.5..22.5)."""
    if heading is None or not math.isfinite(heading):
        return None
    return COMPASS[int(((heading % 360) + 22.5) // 45) % 8]


def score_bin(score: float) -> int:
    return min(SCORE_BINS - 1, max(0, int(round(score * SCORE_BINS, 6))))


class _Seconds:
    """The seconds of event time at which an aircraft's states were counted, over DEDUP_HORIZON_S: a
    bit per second from ``base``."""

    __slots__ = ("base", "bits")

    def __init__(self, base: int):
        self.base, self.bits = base, 0

    def add(self, t: int) -> bool:
        """Mark ``t``; False when it was marked (a repeat). A time older than the horizon before the
        newest one marked cannot be told apart and counts as new."""
        if t < self.base:
            top = self.bits.bit_length()
            if top + (self.base - t) > DEDUP_HORIZON_S:
                return True
            self.bits <<= self.base - t
            self.base = t
        elif t - self.base >= DEDUP_HORIZON_S:  # the oldest seconds let go
            shift = t - self.base - DEDUP_HORIZON_S + 1
            self.bits >>= shift
            self.base += shift
        mask = 1 << (t - self.base)
        if self.bits & mask:
            return False
        self.bits |= mask
        return True


@dataclass
class Summary:
    """A period's totals: what the KPI cards, the timelines and the distributions show."""
    start: float | None  # first minute's start (event time), None when nothing was counted
    end: float | None  # the newest state's event time
    minutes: list[tuple[int, Minute]]
    threshold: float

    @property
    def events(self) -> int:
        return sum(m.events for _, m in self.minutes)

    def kpis(self) -> dict:
        events = self.events
        anomalies = sum(m.anomalies(self.threshold) for _, m in self.minutes)
        velocity_n = sum(m.velocity_n for _, m in self.minutes)
        altitude_n = sum(m.altitude_n for _, m in self.minutes)
        span = (self.end - self.start) if self.start is not None and self.end is not None else 0.0
        return {"events": events, "anomalies": anomalies, "anomaly_rate": anomalies / events if events else 0.0,
                "mean_velocity": sum(m.velocity_sum for _, m in self.minutes) / velocity_n if velocity_n else None,
                "mean_altitude": sum(m.altitude_sum for _, m in self.minutes) / altitude_n if altitude_n else None,
                "events_per_s": events / span if span > 0 else None,
                "model_anomalies": sum(m.model_anomalies for _, m in self.minutes)}

    def series(self) -> list[dict]:
        """Per minute, oldest first: events, anomalies (at the threshold), velocity min/mean/max, mean altitude."""
        return [{"minute": start, "events": m.events, "anomalies": m.anomalies(self.threshold),
                 "velocity_min": m.velocity_min if m.velocity_n else None,
                 "velocity_mean": m.velocity_sum / m.velocity_n if m.velocity_n else None,
                 "velocity_max": m.velocity_max if m.velocity_n else None,
                 "altitude_mean": m.altitude_sum / m.altitude_n if m.altitude_n else None}
                for start, m in self.minutes]

    def counts(self, name: str) -> Counter:
        total: Counter = Counter()
        for _, m in self.minutes:
            total.update(getattr(m, name))
        return total

    def velocity_hist(self) -> list[int]:
        return [sum(m.velocity_hist[i] for _, m in self.minutes) for i in range(VELOCITY_BINS)]

    def compass(self) -> dict[str, int]:
        counted = self.counts("compass")
        return {sector: counted.get(sector, 0) for sector in COMPASS}

    def on_ground(self) -> int:
        return sum(m.on_ground for _, m in self.minutes)


class FeedTotals:
    """Per-minute aggregates of every distinct state read, and events per aircraft since the first."""

    def __init__(self, keep_minutes: int = KEEP_MINUTES, max_aircraft: int = 60000):
        self.keep_minutes, self.max_aircraft = keep_minutes, max_aircraft
        self.minutes: dict[int, Minute] = {}
        self.seen: dict[str, _Seconds] = {}  # icao24 -> the event times of it counted
        self.per_aircraft: Counter = Counter()  # since the first record read
        self.first_read: float | None = None  # event time of the first state counted
        self.newest: float | None = None
        self.repeats = 0

    def add(self, row: dict) -> bool:
        """Count ``row`` (a flattened processed record) once; False when it repeats a counted state."""
        icao24, when = row["icao24"], row["event_time"]
        seen = self.seen.get(icao24)
        if seen is None:
            if len(self.seen) >= self.max_aircraft:  # the first aircraft read is forgotten first
                gone = next(iter(self.seen))
                del self.seen[gone]
                self.per_aircraft.pop(gone, None)
            seen = self.seen[icao24] = _Seconds(int(when))
        if not seen.add(int(when)):
            self.repeats += 1
            return False
        minute = int(when) // MINUTE_S * MINUTE_S
        if self.newest is not None and minute < self.newest - self.keep_minutes * MINUTE_S:
            return True  # older than what is kept: a distinct state, but no minute of it is shown
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = Minute()
        bucket.add(row)
        self.per_aircraft[icao24] += 1
        self.first_read = when if self.first_read is None else min(self.first_read, when)
        if self.newest is None or when > self.newest:
            self.newest = when
            oldest = int(when) // MINUTE_S * MINUTE_S - self.keep_minutes * MINUTE_S
            for start in [s for s in self.minutes if s < oldest] if len(self.minutes) > self.keep_minutes else ():
                del self.minutes[start]
        return True

    def period(self, seconds: float | None, threshold: float) -> Summary:
        """The minutes of the last ``seconds`` before the newest state (``None``: every minute kept)."""
        if self.newest is None:
            return Summary(None, None, [], threshold)
        first = -math.inf if seconds is None else int(self.newest - seconds) // MINUTE_S * MINUTE_S + MINUTE_S
        minutes = sorted((s, m) for s, m in self.minutes.items() if s >= first)
        if not minutes:
            return Summary(None, self.newest, [], threshold)
        return Summary(max(minutes[0][0], self.first_read), self.newest, minutes, threshold)

    def between(self, start: float, end: float, threshold: float) -> Summary:
        """The minutes starting in [start, end) (event time): a window's or an hour's totals."""
        minutes = sorted((s, m) for s, m in self.minutes.items() if start <= s < end)
        return Summary(start if minutes else None, end if minutes else None, minutes, threshold)
