"""The feature vector: the one definition used by training, scoring and evaluation.

A state is described by what it says (speed, altitude, vertical rate, time of day:
kept for people to read) and by residuals: what it reports against what the same
aircraft's last good state predicts.

    speed_log_ratio       log of reported speed over the speed its positions imply
    altitude_residual_mps altitude change not explained by the vertical rate, per second
    track_residual_deg    reported track against the bearing it actually moved on
    innovation            distance from where its last good state predicted it, in expected errors
    speed_accel_mps2, vertical_accel_mps2, turn_rate_dps   rates of change since the last good state
    baro_geo_residual_m   barometric minus geometric altitude against this aircraft's running median
    position_age_s        how much older the position is than the last contact

The predictor carries the last good state on at its reported speed along its track, turning
at the turn rate it had (an alpha-beta filter with alpha = beta = 1: the aircraft reports its
own velocity, so none needs estimating). A
state that fails a rule's gate is not remembered (``ml.rules.remember_after``), so a
glitch neither poisons the prediction nor makes its return look like a second glitch.
A new track (the first state, or one after a gap over ``NEW_TRACK_GAP_S``) has no
residuals: they are 0 and ``new_track`` is 1.

The model sees ``MODEL_FEATURES`` through ``model_input`` (absolute values, log-scaled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from flights_app.geo import angle_between, bearing_deg, destination, haversine_m

#: Shorter gaps make the implied speed noise: positions are rounded to 1e-4 degrees (~11 m).
MIN_IMPLIED_SPEED_GAP_S = 2.0
#: Beyond this gap between positions the last good state predicts nothing: a new track begins.
NEW_TRACK_GAP_S = 300.0
#: Rates of change are taken over at least this long: timestamps are whole seconds, so over a
#: 1-second gap a rate may be off by half (recordings polled every second have such gaps).
RATE_MIN_GAP_S = 5.0
#: The predictor's expected error: a fixed part (position rounding, timestamp to the second) and
#: a part growing with the gap (a 3 degree/s turn at 250 m/s is 13 m/s^2 of lateral acceleration).
PREDICTION_ERROR_M = 150.0
PREDICTION_ACCEL_MPS2 = 15.0
#: The predictor keeps turning at the last turn rate only if it was measured over at most this gap.
MAX_TURN_GAP_S = 30.0
#: Below this speed tracks and turn rates are noise (taxiing, hovering).
MIN_TRACK_SPEED_MPS = 30.0
#: The running median of barometric minus geometric altitude moves at most this much per state.
BARO_GEO_STEP_M = 10.0
#: Positions closer than this say nothing about the bearing flown.
MIN_BEARING_DISTANCE_M = 300.0

RAW_FEATURES: tuple[str, ...] = ("velocity_mps", "altitude_m", "vertical_rate_mps", "hour_utc", "day_of_week")
CONTEXT_FEATURES: tuple[str, ...] = (
    "new_track", "position_gap_s", "implied_speed_mps", "climb_rate_mps", "prediction_error_m", "track_residual_deg",
)
#: The residuals the model judges. The track residual is not one of them: real recordings hold
#: aircraft whose reported track differs from the bearing flown by a steady 100 degrees.
MODEL_FEATURES: tuple[str, ...] = (
    "speed_log_ratio",
    "altitude_residual_mps",
    "innovation",
    "speed_accel_mps2",
    "vertical_accel_mps2",
    "turn_rate_dps",
    "baro_geo_residual_m",
    "position_age_s",
)
#: The residuals that compare a report with itself (the others are what the flight does: accelerating, turning).
REPORT_RESIDUALS: tuple[str, ...] = (
    "speed_log_ratio", "altitude_residual_mps", "innovation", "baro_geo_residual_m", "position_age_s",
)
#: Every feature, in the order of ``feature_vector`` and of a scored record's ``features``.
FEATURES: tuple[str, ...] = RAW_FEATURES + CONTEXT_FEATURES + MODEL_FEATURES
N_FEATURES = len(FEATURES)
N_MODEL_FEATURES = len(MODEL_FEATURES)
I = {name: i for i, name in enumerate(FEATURES)}  # noqa: E741 - the index of a feature by name
MODEL_COLUMNS = np.array([I[name] for name in MODEL_FEATURES])

#: The model sees this many of a state's largest normalised residuals.
TOP_RESIDUALS = 3


def residual_sizes(rows: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each model residual of feature rows in units of its typical size (``scale``: the 99th
    percentile of its absolute value in clean training traffic)."""
    return np.abs(np.atleast_2d(np.asarray(rows, dtype=np.float64))[:, MODEL_COLUMNS]) / scale


def model_input(rows: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """What the model sees of feature rows (``feature_vector``'s): training, scoring and evaluation
    all go through here.

    The ``TOP_RESIDUALS`` largest normalised residuals, largest first, log-scaled. A forest
    splits on one dimension at a time, so a state far out on a single residual among many
    normal ones is isolated late; sorted, "how far out is the worst residual" is always the
    first dimension, whichever residual it is. The log keeps a 600 m/s spike and a 6,000 m/s
    one apart without letting either stretch the scale.
    """
    sizes = residual_sizes(rows, scale)
    return np.log1p(-np.sort(-sizes, axis=1)[:, :TOP_RESIDUALS])


class PreviousState(NamedTuple):
    """What the features need of an aircraft's last good state (kept per icao24 in a table)."""

    time_position: int
    last_contact: int
    latitude: float
    longitude: float
    velocity: float
    altitude_m: float
    track: float | None = None
    vertical_rate: float | None = None
    on_ground: bool = False
    baro_geo_m: float | None = None  # running median of barometric minus geometric altitude
    turn_rate: float = 0.0  # degrees a second, from the track change since the good state before

    def as_dict(self) -> dict:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict) -> PreviousState:
        """Entries written before a field existed take its default."""
        if data.keys() == _PREVIOUS_FIELDS:
            return cls(**data)
        return cls(**{name: data[name] for name in cls._fields if name in data})


_PREVIOUS_FIELDS = frozenset(PreviousState._fields)


@dataclass(frozen=True)
class AircraftMemory:
    """An aircraft's last two distinct good states: what its next state is compared with.

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


def baro_minus_geo(state) -> float | None:
    if state.baro_altitude is None or state.geo_altitude is None or state.on_ground:
        return None
    return float(state.baro_altitude) - float(state.geo_altitude)


def remember(state, previous: PreviousState | None = None) -> PreviousState:
    """``state`` as the aircraft's last good state: the running median moves one step towards it,
    and the turn rate is the track change since ``previous`` (for the predictor)."""
    offset = baro_minus_geo(state)
    median = previous.baro_geo_m if previous is not None else None
    if offset is not None:
        median = offset if median is None else median + max(-BARO_GEO_STEP_M, min(BARO_GEO_STEP_M, offset - median))
    turn_rate = 0.0
    if previous is not None and state.true_track is not None and previous.track is not None:
        gap = state.event_time - previous.time_position
        if 0 < gap <= MAX_TURN_GAP_S and min(state.velocity, previous.velocity) >= MIN_TRACK_SPEED_MPS:
            turn_rate = angle_between(state.true_track, previous.track) / max(gap, RATE_MIN_GAP_S)
    return PreviousState(state.event_time, state.last_contact, state.latitude, state.longitude, state.velocity,
                         altitude_of(state), state.true_track, state.vertical_rate, state.on_ground, median, turn_rate)


def feature_vector(state, previous: PreviousState | None) -> np.ndarray:
    """The features of ``state`` (a StateVector) given the aircraft's last good state (``FEATURES`` order)."""
    out = np.zeros(N_FEATURES, dtype=np.float64)
    altitude = altitude_of(state)
    when = datetime.fromtimestamp(state.event_time, tz=UTC)
    velocity = state.velocity
    out[0:5] = velocity, altitude, state.vertical_rate or 0.0, when.hour, when.weekday()
    if state.time_position is not None:
        out[I["position_age_s"]] = float(state.last_contact - state.time_position)
    gap = None if previous is None else state.event_time - previous.time_position
    if gap is None or gap > NEW_TRACK_GAP_S:
        out[I["new_track"]] = 1.0
        out[I["implied_speed_mps"]] = velocity
        return out
    out[I["position_gap_s"]] = gap
    airborne = not state.on_ground and not previous.on_ground
    if airborne and previous.baro_geo_m is not None:
        offset = baro_minus_geo(state)
        if offset is not None:
            out[I["baro_geo_residual_m"]] = offset - previous.baro_geo_m
    if gap <= 0:  # the same or an older position: no rate to infer
        out[I["implied_speed_mps"]] = velocity
        return out
    dt = float(gap)
    rate_dt = max(dt, RATE_MIN_GAP_S)
    out[I["speed_accel_mps2"]] = (velocity - previous.velocity) / rate_dt
    if airborne:
        rate = ((state.vertical_rate or 0.0) + (previous.vertical_rate or 0.0)) / 2
        out[I["climb_rate_mps"]] = (altitude - previous.altitude_m) / dt
        out[I["altitude_residual_mps"]] = (altitude - previous.altitude_m - rate * dt) / rate_dt
        if state.vertical_rate is not None and previous.vertical_rate is not None:
            out[I["vertical_accel_mps2"]] = (state.vertical_rate - previous.vertical_rate) / rate_dt
    track, before = state.true_track, previous.track
    if track is not None and before is not None and min(velocity, previous.velocity) >= MIN_TRACK_SPEED_MPS:
        out[I["turn_rate_dps"]] = angle_between(track, before) / rate_dt
    if dt < MIN_IMPLIED_SPEED_GAP_S:
        out[I["implied_speed_mps"]] = velocity
        return out
    distance = haversine_m(previous.latitude, previous.longitude, state.latitude, state.longitude)
    implied = distance / dt
    out[I["implied_speed_mps"]] = implied
    out[I["speed_log_ratio"]] = math.log((velocity + MIN_TRACK_SPEED_MPS) / (implied + MIN_TRACK_SPEED_MPS))
    if track is not None and distance >= MIN_BEARING_DISTANCE_M and velocity >= MIN_TRACK_SPEED_MPS:
        flown = bearing_deg(previous.latitude, previous.longitude, state.latitude, state.longitude)
        out[I["track_residual_deg"]] = angle_between(track, flown)
    if before is not None:  # on along the last track, turning at the last turn rate (the mean heading of the arc)
        heading = before + previous.turn_rate * min(dt, MAX_TURN_GAP_S) / 2
        lat, lon = destination(previous.latitude, previous.longitude, heading, previous.velocity * dt)
    else:
        lat, lon = previous.latitude, previous.longitude
    error = haversine_m(lat, lon, state.latitude, state.longitude)
    out[I["prediction_error_m"]] = error
    out[I["innovation"]] = error / (PREDICTION_ERROR_M + PREDICTION_ACCEL_MPS2 * dt * dt / 2)
    return out
