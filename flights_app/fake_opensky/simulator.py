"""Simulated air traffic, as OpenSky would report it, with labelled anomalies.

Every aircraft flies a deterministic schedule of legs between real airports:
parked and taxiing on the ground, take-off roll, climb, great-circle cruise,
descent, landing roll, taxi in, turnaround. Its state is a pure function of
time (no stepping), so any ``time`` can be asked for and the same seed gives
the same traffic.

A small share of airborne states carries an injected anomaly of a known kind.
The labels are returned beside the states, never inside them: the scorer
cannot see them; the evaluation reads them out of band.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass

from flights_app.fake_opensky.anomalies import ANOMALY_KINDS, EMERGENCY_SQUAWKS, inject
from flights_app.fake_opensky.anomalies import unit as _unit
from flights_app.fake_opensky.world import AIRLINES, AIRPORTS, Airport
from flights_app.geo import EARTH_RADIUS_M, bearing_deg, haversine_m

MIN_LEG_M = 700_000.0
MAX_LEG_M = 6_000_000.0
TAKEOFF_SPEED_MPS = 80.0
LANDING_SPEED_MPS = 70.0
TAXI_SPEED_MPS = 8.0
TAKEOFF_ROLL_S = 40.0
LANDING_ROLL_S = 40.0
TAXI_OUT_S = 240.0
TAXI_IN_S = 180.0
MIN_TURNAROUND_S = 1200.0
MAX_TURNAROUND_S = 3600.0
#: Aircraft start their schedules up to this long before the simulation, so all phases show.
SCHEDULE_SPREAD_S = 8 * 3600.0


def intermediate_point(lat1: float, lon1: float, lat2: float, lon2: float, fraction: float) -> tuple[float, float]:
    """The point ``fraction`` of the way along the great circle from 1 to 2."""
    p1, l1, p2, l2 = map(math.radians, (lat1, lon1, lat2, lon2))
    d = haversine_m(lat1, lon1, lat2, lon2) / EARTH_RADIUS_M
    if d < 1e-12:
        return lat1, lon1
    a = math.sin((1 - fraction) * d) / math.sin(d)
    b = math.sin(fraction * d) / math.sin(d)
    x = a * math.cos(p1) * math.cos(l1) + b * math.cos(p2) * math.cos(l2)
    y = a * math.cos(p1) * math.sin(l1) + b * math.cos(p2) * math.sin(l2)
    z = a * math.sin(p1) + b * math.sin(p2)
    return math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))


@dataclass(frozen=True)
class Segment:
    """A stretch of a leg with linearly changing speed and altitude."""

    start_s: float  # seconds from the leg's start
    duration_s: float
    v0: float
    v1: float
    alt0: float
    alt1: float
    airborne: bool
    s0: float  # along-track metres flown at the segment's start

    def distance_at(self, tau: float) -> float:
        return self.s0 + self.v0 * tau + (self.v1 - self.v0) * tau * tau / (2 * self.duration_s)


@dataclass(frozen=True)
class Leg:
    origin: Airport
    dest: Airport
    start: float  # Unix seconds the turnaround at origin begins
    parked_s: float
    distance_m: float
    segments: tuple[Segment, ...]
    ground_heading: float

    @property
    def end(self) -> float:
        last = self.segments[-1]
        return self.start + self.parked_s + last.start_s + last.duration_s


def _plan_leg(origin: Airport, dest: Airport, start: float, rng: random.Random) -> Leg:
    distance = haversine_m(origin.latitude, origin.longitude, dest.latitude, dest.longitude)
    cruise_alt = rng.uniform(9500.0, 12000.0)
    cruise_v = rng.uniform(220.0, 255.0)
    climb_rate = rng.uniform(9.0, 13.0)
    descent_rate = rng.uniform(6.5, 9.0)
    climb_t = cruise_alt / climb_rate
    descent_t = cruise_alt / descent_rate
    climb_d = (TAKEOFF_SPEED_MPS + cruise_v) / 2 * climb_t
    descent_d = (cruise_v + LANDING_SPEED_MPS) / 2 * descent_t
    cruise_t = max(60.0, (distance - climb_d - descent_d) / cruise_v)
    spec = [
        (TAXI_OUT_S, TAXI_SPEED_MPS, TAXI_SPEED_MPS, 0.0, 0.0, False),
        (TAKEOFF_ROLL_S, 0.0, TAKEOFF_SPEED_MPS, 0.0, 0.0, False),
        (climb_t, TAKEOFF_SPEED_MPS, cruise_v, 0.0, cruise_alt, True),
        (cruise_t, cruise_v, cruise_v, cruise_alt, cruise_alt, True),
        (descent_t, cruise_v, LANDING_SPEED_MPS, cruise_alt, 0.0, True),
        (LANDING_ROLL_S, LANDING_SPEED_MPS, 10.0, 0.0, 0.0, False),
        (TAXI_IN_S, TAXI_SPEED_MPS, TAXI_SPEED_MPS, 0.0, 0.0, False),
    ]
    segments, t, s = [], 0.0, 0.0
    for duration, v0, v1, a0, a1, airborne in spec:
        seg = Segment(t, duration, v0, v1, a0, a1, airborne, s)
        segments.append(seg)
        if airborne:
            s = seg.distance_at(duration)
        t += duration
    # Scale along-track distance so the airborne part ends exactly at the destination.
    scale = distance / s if s > 0 else 1.0
    segments = [Segment(g.start_s, g.duration_s, g.v0, g.v1, g.alt0, g.alt1, g.airborne,
                        g.s0 * scale) for g in segments]
    parked = rng.uniform(MIN_TURNAROUND_S, MAX_TURNAROUND_S) - TAXI_OUT_S
    return Leg(origin, dest, start, parked, distance, tuple(segments), rng.uniform(0, 360))


class SimulatedAircraft:
    def __init__(self, index: int, seed: int, epoch: float):
        rng = random.Random(f"{seed}-{index}")
        self.rng = rng
        self.icao24 = f"{rng.randrange(0x100000, 0xFFFFFF):06x}"
        airline = AIRLINES[rng.randrange(len(AIRLINES))]
        self.callsign = f"{airline.icao}{rng.randrange(1, 9999)}"
        self.country = airline.country
        squawk = rng.randrange(0o1000, 0o7000)
        while f"{squawk:04o}" in EMERGENCY_SQUAWKS:
            squawk += 1
        self.squawk = f"{squawk:04o}"
        self.geo_offset_m = rng.uniform(-60.0, 120.0)
        self.category = rng.choice((3, 4, 6))
        start = epoch - rng.uniform(0, SCHEDULE_SPREAD_S)
        self.legs: list[Leg] = [_plan_leg(*self._pick_route(AIRPORTS[rng.randrange(len(AIRPORTS))]), start, rng)]
        self._starts = [start]

    def _pick_route(self, origin: Airport) -> tuple[Airport, Airport]:
        for _ in range(200):
            dest = AIRPORTS[self.rng.randrange(len(AIRPORTS))]
            d = haversine_m(origin.latitude, origin.longitude, dest.latitude, dest.longitude)
            if MIN_LEG_M <= d <= MAX_LEG_M:
                return origin, dest
        return origin, min(
            (a for a in AIRPORTS if a != origin),
            key=lambda a: abs(haversine_m(origin.latitude, origin.longitude, a.latitude, a.longitude) - MIN_LEG_M),
        )

    def _leg_at(self, t: float) -> Leg | None:
        while self.legs[-1].end <= t:
            last = self.legs[-1]
            self.legs.append(_plan_leg(*self._pick_route(last.dest), last.end, self.rng))
            self._starts.append(last.end)
        i = bisect_right(self._starts, t) - 1
        return self.legs[i] if i >= 0 else None

    def true_state(self, t: float) -> dict | None:
        """Where the aircraft really is at ``t`` (Unix seconds), or None before its schedule."""
        leg = self._leg_at(t)
        if leg is None:
            return None
        tau = t - leg.start - leg.parked_s
        common = dict(icao24=self.icao24, callsign=self.callsign, country=self.country, squawk=self.squawk)
        if tau < 0:  # parked at the origin
            return dict(common, lat=leg.origin.latitude, lon=leg.origin.longitude, alt=None,
                        on_ground=True, velocity=0.0, track=leg.ground_heading, vertical_rate=None)
        seg = next(g for g in leg.segments if g.start_s + g.duration_s > tau)
        local = tau - seg.start_s
        velocity = seg.v0 + (seg.v1 - seg.v0) * local / seg.duration_s
        if not seg.airborne:
            at_dest = seg.start_s > leg.segments[3].start_s
            airport = leg.dest if at_dest else leg.origin
            # Taxiing stays within a couple of kilometres of the airport reference point.
            drift = (local * velocity) / EARTH_RADIUS_M * 180 / math.pi * 0.2
            return dict(common, lat=airport.latitude + drift, lon=airport.longitude, alt=None,
                        on_ground=True, velocity=velocity, track=leg.ground_heading, vertical_rate=None)
        flown = seg.distance_at(local)
        fraction = min(1.0, max(0.0, flown / leg.distance_m))
        o, d = leg.origin, leg.dest
        lat, lon = intermediate_point(o.latitude, o.longitude, d.latitude, d.longitude, fraction)
        track = bearing_deg(lat, lon, d.latitude, d.longitude) if fraction < 0.999 else bearing_deg(o.latitude,
                                                                                                    o.longitude,
                                                                                                    d.latitude,
                                                                                                    d.longitude)
        altitude = seg.alt0 + (seg.alt1 - seg.alt0) * local / seg.duration_s
        vertical_rate = (seg.alt1 - seg.alt0) / seg.duration_s
        return dict(common, lat=lat, lon=lon, alt=max(0.0, altitude), on_ground=False,
                    velocity=velocity, track=track, vertical_rate=vertical_rate)


@dataclass(frozen=True)
class AnomalyLabel:
    icao24: str
    last_contact: int
    kind: str

    def as_dict(self) -> dict:
        return {"icao24": self.icao24, "last_contact": self.last_contact, "kind": self.kind}


class Simulator:
    """``n_aircraft`` aircraft; ``states_at(t)`` gives OpenSky rows and the anomaly labels."""

    def __init__(self, n_aircraft: int, *, seed: int = 1, epoch: float, anomaly_rate: float = 0.01,
                 anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS):
        if n_aircraft < 0:
            raise ValueError("n_aircraft must be >= 0")
        if not 0 <= anomaly_rate <= 1:
            raise ValueError("anomaly_rate must be within 0..1")
        unknown = set(anomaly_kinds) - set(ANOMALY_KINDS)
        if unknown:
            raise ValueError(f"unknown anomaly kinds: {sorted(unknown)}")
        self.seed = seed
        self.anomaly_rate = anomaly_rate
        self.anomaly_kinds = anomaly_kinds
        self.aircraft = [SimulatedAircraft(i, seed, epoch) for i in range(n_aircraft)]
        taken: set[str] = set()
        for aircraft in self.aircraft:  # one address per aircraft, as in the real world
            while aircraft.icao24 in taken:  # (random addresses collide: ~50 pairs among 40,000)
                aircraft.icao24 = f"{0x100000 + (int(aircraft.icao24, 16) + 1 - 0x100000) % 0xEFFFFF:06x}"
            taken.add(aircraft.icao24)

    def states_at(self, t: int, extended: bool = False) -> tuple[list[list], list[AnomalyLabel]]:
        rows, labels = [], []
        for aircraft in self.aircraft:
            row, label = self._row(aircraft, t, extended)
            if row is not None:
                rows.append(row)
                if label is not None:
                    labels.append(label)
        return rows, labels

    def _row(self, aircraft: SimulatedAircraft, t: int, extended: bool):
        # Transponders report at their own pace: contact up to 2 s old, position up to 1 s older.
        last_contact = t - int(_unit(self.seed, aircraft.icao24, t, "lc") * 3)
        time_position = last_contact - int(_unit(self.seed, aircraft.icao24, t, "tp") * 2)
        state = aircraft.true_state(time_position)
        if state is None:
            return None, None
        vertical_rate = state["vertical_rate"]
        if vertical_rate is not None:
            vertical_rate = round(vertical_rate + (_unit(self.seed, aircraft.icao24, t, "vr") - 0.5) * 0.6, 2)
        row = {
            "time_position": time_position, "last_contact": last_contact,
            "lat": state["lat"], "lon": state["lon"], "alt": state["alt"], "velocity": state["velocity"],
            "track": state["track"], "vertical_rate": vertical_rate, "squawk": aircraft.squawk,
        }
        label = None
        if not state["on_ground"] and self.anomaly_rate and _unit(self.seed, aircraft.icao24, t,
                                                                  "anomaly") < self.anomaly_rate:
            kind = self.anomaly_kinds[int(_unit(self.seed, aircraft.icao24, t, "kind") * len(self.anomaly_kinds))]
            self._inject(kind, aircraft, row, t)
            label = AnomalyLabel(aircraft.icao24, last_contact, kind)
        alt = row["alt"]
        geo = None if alt is None else round(alt + aircraft.geo_offset_m, 2)
        out = [
            aircraft.icao24, f"{aircraft.callsign:<8}", aircraft.country, row["time_position"], last_contact,
            round(row["lon"], 4), round(row["lat"], 4), None if alt is None else round(alt, 2), state["on_ground"],
            round(row["velocity"], 2), round(row["track"], 2), row["vertical_rate"], None, geo, row["squawk"], False, 0,
        ]
        if extended:
            out.append(aircraft.category)
        return out, label

    def _inject(self, kind: str, aircraft: SimulatedAircraft, row: dict, t: int) -> None:
        def earlier(when: int) -> tuple[float, float] | None:
            state = aircraft.true_state(when)
            return None if state is None else (state["lat"], state["lon"])

        size = _unit(self.seed, aircraft.icao24, t, "size")
        sign = 1 if _unit(self.seed, aircraft.icao24, t, "sign") < 0.5 else -1
        inject(kind, row, size, sign, earlier)
