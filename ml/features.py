"""The feature vector: the one definition used by training, scoring and evaluation.

Each state is described by what it says (speed, altitude, vertical rate, heading,
time of day) and by how it differs from the same aircraft's previous state
(speed and altitude change, the ground speed implied by the position jump,
the gap since the previous contact, how stale the position is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from flights_app.geo import haversine_m

#: Shorter gaps make the implied speed noise: positions are rounded to 1e-4 degrees (~11 m).
MIN_IMPLIED_SPEED_GAP_S = 2.0

FEATURES: tuple[str, ...] = (
    "velocity_mps",
    "altitude_m",
    "vertical_rate_mps",
    "hour_utc",
    "day_of_week",
    "heading_sin",
    "heading_cos",
    "speed_change_mps",
    "altitude_change_m",
    "implied_speed_mps",
    "contact_gap_s",
    "position_age_s",
)
N_FEATURES = len(FEATURES)

#: How a feature reads to a person, with its unit.
FEATURE_WORDS = {
    "velocity_mps": ("speed", "m/s"),
    "altitude_m": ("altitude", "m"),
    "vertical_rate_mps": ("vertical rate", "m/s"),
    "hour_utc": ("hour of day", "h UTC"),
    "day_of_week": ("day of week", ""),
    "heading_sin": ("heading (east-west)", ""),
    "heading_cos": ("heading (north-south)", ""),
    "speed_change_mps": ("speed change since the last report", "m/s"),
    "altitude_change_m": ("altitude change since the last report", "m"),
    "implied_speed_mps": ("speed implied by the position jump", "m/s"),
    "contact_gap_s": ("time since the previous report", "s"),
    "position_age_s": ("age of the position", "s"),
}


@dataclass(frozen=True)
class PreviousState:
    """What the features need of an aircraft's previous state (kept per icao24 in a table)."""

    time_position: int
    last_contact: int
    latitude: float
    longitude: float
    velocity: float
    altitude_m: float

    def as_dict(self) -> dict:
        return {"time_position": self.time_position, "last_contact": self.last_contact, "latitude": self.latitude,
                "longitude": self.longitude, "velocity": self.velocity, "altitude_m": self.altitude_m}

    @classmethod
    def from_dict(cls, data: dict) -> PreviousState:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AircraftMemory:
    """An aircraft's last two distinct states: what its next state is compared with.

    A state seen again (OpenSky repeats snapshots; at-least-once delivery replays
    after a crash) is compared with the state before it, not with itself, so it
    gets the same features every time.
    """

    latest: PreviousState
    earlier: PreviousState | None = None

    def previous_for(self, state) -> PreviousState | None:
        if state.last_contact == self.latest.last_contact and state.event_time == self.latest.time_position:
            return self.earlier
        return self.latest

    def as_dict(self) -> dict:
        return {"latest": self.latest.as_dict(), "earlier": self.earlier.as_dict() if self.earlier else None}

    @classmethod
    def from_dict(cls, data: dict) -> AircraftMemory:
        earlier = data.get("earlier")
        return cls(PreviousState.from_dict(data["latest"]), PreviousState.from_dict(earlier) if earlier else None)


def previous_for(memory: AircraftMemory | None, state) -> PreviousState | None:
    return memory.previous_for(state) if memory is not None else None


def altitude_of(state) -> float:
    """Barometric altitude, else geometric, else 0 (on the ground without one)."""
    if state.baro_altitude is not None:
        return float(state.baro_altitude)
    if state.geo_altitude is not None:
        return float(state.geo_altitude)
    return 0.0



def remember(state) -> PreviousState:
    return PreviousState(state.event_time, state.last_contact, state.latitude, state.longitude,
                         state.velocity, altitude_of(state))


def feature_vector(state, previous: PreviousState | None) -> np.ndarray:
    """The features of ``state`` (a StateVector) given the aircraft's previous state.

    The first state of an aircraft gets neutral deltas: no change, an implied
    speed equal to its own reported speed, no gap.
    """
    altitude = altitude_of(state)
    when = datetime.fromtimestamp(state.event_time, tz=UTC)
    track = math.radians(state.true_track) if state.true_track is not None else None
    heading_sin = math.sin(track) if track is not None else 0.0
    heading_cos = math.cos(track) if track is not None else 0.0
    position_age = float(state.last_contact - state.time_position) if state.time_position is not None else 0.0

    if previous is None:
        speed_change = altitude_change = contact_gap = 0.0
        implied_speed = state.velocity
    else:
        speed_change = state.velocity - previous.velocity
        altitude_change = altitude - previous.altitude_m
        contact_gap = float(max(0, state.last_contact - previous.last_contact))
        gap = state.event_time - previous.time_position
        if gap >= MIN_IMPLIED_SPEED_GAP_S:
            distance = haversine_m(previous.latitude, previous.longitude, state.latitude, state.longitude)
            implied_speed = distance / gap
        else:  # same or older position: nothing to infer from
            implied_speed = state.velocity
    return np.array([
        state.velocity, altitude, state.vertical_rate or 0.0, when.hour, when.weekday(),
        heading_sin, heading_cos, speed_change, altitude_change, implied_speed, contact_gap, position_age,
    ], dtype=np.float64)
