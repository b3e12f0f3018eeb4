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
state that fails a rule's gate is not remembered (``ml.track``), so a
glitch neither poisons the prediction nor makes its return look like a second glitch.
A new track (the first state, or one after a gap over ``NEW_TRACK_GAP_S``) has no
residuals: they are 0 and ``new_track`` is 1.

The model sees ``MODEL_FEATURES`` through ``model_input`` (absolute values, log-scaled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

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
#: Indices of features, as compiled code reads them.
I_NEW_TRACK, I_POSITION_GAP, I_IMPLIED_SPEED, I_CLIMB_RATE, I_PREDICTION_ERROR, I_TRACK_RESIDUAL = (
    I[name] for name in CONTEXT_FEATURES)
I_SPEED_LOG_RATIO, I_ALTITUDE_RESIDUAL, I_INNOVATION, I_SPEED_ACCEL, I_VERTICAL_ACCEL, I_TURN_RATE, I_BARO_GEO, \
    I_POSITION_AGE = (I[name] for name in MODEL_FEATURES)
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

    def as_dict(self) -> dict:
        return {"latest": self.latest.as_dict(), "earlier": self.earlier.as_dict() if self.earlier else None}

    @classmethod
    def from_dict(cls, data: dict) -> AircraftMemory:
        earlier = data.get("earlier")
        return cls(PreviousState.from_dict(data["latest"]), PreviousState.from_dict(earlier) if earlier else None)


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


# -- the computation, compiled: a state and a previous state as rows of floats (NaN: none) -----------

#: A state's columns (``state_columns``).
S_TIME, S_CONTACT, S_POSITION_TIME, S_LAT, S_LON, S_VELOCITY, S_ALTITUDE, S_BARO_GEO, S_VERTICAL, S_TRACK, \
    S_GROUND = range(11)
N_STATE_COLUMNS = 11
#: A previous state's columns: ``PreviousState``'s fields in order.
P_TIME, P_CONTACT, P_LAT, P_LON, P_VELOCITY, P_ALTITUDE, P_TRACK, P_VERTICAL, P_GROUND, P_BARO_GEO, P_TURN = range(11)
N_PREVIOUS_COLUMNS = len(PreviousState._fields)
_NAN = math.nan


def _or_nan(value: float | None) -> float:
    return _NAN if value is None else value


def state_columns(state) -> tuple[float, ...]:
    """What the features read of a StateVector, as ``S_*`` columns."""
    offset = baro_minus_geo(state)
    return (state.event_time, state.last_contact, _or_nan(state.time_position), state.latitude, state.longitude,
            state.velocity, altitude_of(state), _NAN if offset is None else offset, _or_nan(state.vertical_rate),
            _or_nan(state.true_track), float(state.on_ground))


def previous_columns(previous: PreviousState) -> tuple[float, ...]:
    return (previous.time_position, previous.last_contact, previous.latitude, previous.longitude, previous.velocity,
            previous.altitude_m, _or_nan(previous.track), _or_nan(previous.vertical_rate), float(previous.on_ground),
            _or_nan(previous.baro_geo_m), previous.turn_rate)


def _or_none(value: float) -> float | None:
    return None if value != value else value


def previous_of(row) -> PreviousState:
    """The ``PreviousState`` of ``P_*`` columns (``previous_columns`` back)."""
    (when, contact, lat, lon, velocity, altitude, track, vertical, ground, baro_geo, turn) = row.tolist()
    return PreviousState(int(when), int(contact), lat, lon, velocity, altitude, _or_none(track), _or_none(vertical),
                         bool(ground), _or_none(baro_geo), turn)


@njit(cache=True)
def remember_into(s, has_previous, p, out):  # pragma: no cover - compiled
    """``s`` (state columns) as the aircraft's last good state, into ``out`` (previous columns): the running
    median moves one step towards it, and the turn rate is the track change since ``p`` (for the predictor)."""
    offset = s[S_BARO_GEO]
    median = p[P_BARO_GEO] if has_previous else _NAN
    if offset == offset:
        median = offset if median != median else median + max(-BARO_GEO_STEP_M, min(BARO_GEO_STEP_M, offset - median))
    turn_rate = 0.0
    if has_previous and s[S_TRACK] == s[S_TRACK] and p[P_TRACK] == p[P_TRACK]:
        gap = s[S_TIME] - p[P_TIME]
        if 0 < gap <= MAX_TURN_GAP_S and min(s[S_VELOCITY], p[P_VELOCITY]) >= MIN_TRACK_SPEED_MPS:
            turn_rate = angle_between(s[S_TRACK], p[P_TRACK]) / max(gap, RATE_MIN_GAP_S)
    out[P_TIME], out[P_CONTACT] = s[S_TIME], s[S_CONTACT]
    out[P_LAT], out[P_LON], out[P_VELOCITY], out[P_ALTITUDE] = s[S_LAT], s[S_LON], s[S_VELOCITY], s[S_ALTITUDE]
    out[P_TRACK], out[P_VERTICAL], out[P_GROUND] = s[S_TRACK], s[S_VERTICAL], s[S_GROUND]
    out[P_BARO_GEO], out[P_TURN] = median, turn_rate


@njit(cache=True)
def features_into(s, has_previous, p, out):  # pragma: no cover - compiled
    """The features of ``s`` (state columns) given the aircraft's last good state ``p`` (previous columns,
    if ``has_previous``), into ``out`` (``FEATURES`` order)."""
    out[:] = 0.0
    velocity, altitude, when = s[S_VELOCITY], s[S_ALTITUDE], s[S_TIME]
    vertical, before_vertical = s[S_VERTICAL], p[P_VERTICAL]
    out[0] = velocity
    out[1] = altitude
    out[2] = vertical if vertical == vertical else 0.0
    out[3] = (when // 3600) % 24  # the hour and weekday (1970-01-01 was a Thursday) of whole UTC seconds
    out[4] = (when // 86400 + 3) % 7
    if s[S_POSITION_TIME] == s[S_POSITION_TIME]:
        out[I_POSITION_AGE] = s[S_CONTACT] - s[S_POSITION_TIME]
    gap = when - p[P_TIME]
    if not has_previous or gap > NEW_TRACK_GAP_S:
        out[I_NEW_TRACK] = 1.0
        out[I_IMPLIED_SPEED] = velocity
        return
    out[I_POSITION_GAP] = gap
    airborne = s[S_GROUND] == 0.0 and p[P_GROUND] == 0.0
    if airborne and p[P_BARO_GEO] == p[P_BARO_GEO] and s[S_BARO_GEO] == s[S_BARO_GEO]:
        out[I_BARO_GEO] = s[S_BARO_GEO] - p[P_BARO_GEO]
    if gap <= 0:  # the same or an older position: no rate to infer
        out[I_IMPLIED_SPEED] = velocity
        return
    dt = gap
    rate_dt = max(dt, RATE_MIN_GAP_S)
    out[I_SPEED_ACCEL] = (velocity - p[P_VELOCITY]) / rate_dt
    if airborne:
        rate = ((vertical if vertical == vertical else 0.0)
                + (before_vertical if before_vertical == before_vertical else 0.0)) / 2
        out[I_CLIMB_RATE] = (altitude - p[P_ALTITUDE]) / dt
        out[I_ALTITUDE_RESIDUAL] = (altitude - p[P_ALTITUDE] - rate * dt) / rate_dt
        if vertical == vertical and before_vertical == before_vertical:
            out[I_VERTICAL_ACCEL] = (vertical - before_vertical) / rate_dt
    track, before = s[S_TRACK], p[P_TRACK]
    has_tracks = track == track and before == before
    if has_tracks and min(velocity, p[P_VELOCITY]) >= MIN_TRACK_SPEED_MPS:
        out[I_TURN_RATE] = angle_between(track, before) / rate_dt
    if dt < MIN_IMPLIED_SPEED_GAP_S:
        out[I_IMPLIED_SPEED] = velocity
        return
    lat0, lon0, lat1, lon1 = p[P_LAT], p[P_LON], s[S_LAT], s[S_LON]
    distance = haversine_m(lat0, lon0, lat1, lon1)
    implied = distance / dt
    out[I_IMPLIED_SPEED] = implied
    out[I_SPEED_LOG_RATIO] = math.log((velocity + MIN_TRACK_SPEED_MPS) / (implied + MIN_TRACK_SPEED_MPS))
    if track == track and distance >= MIN_BEARING_DISTANCE_M and velocity >= MIN_TRACK_SPEED_MPS:
        out[I_TRACK_RESIDUAL] = angle_between(track, bearing_deg(lat0, lon0, lat1, lon1))
    if before == before:  # on along the last track, turning at the last turn rate (the mean heading of the arc)
        heading = before + p[P_TURN] * min(dt, MAX_TURN_GAP_S) / 2
        lat, lon = destination(lat0, lon0, heading, p[P_VELOCITY] * dt)
    else:
        lat, lon = lat0, lon0
    error = haversine_m(lat, lon, lat1, lon1)
    out[I_PREDICTION_ERROR] = error
    out[I_INNOVATION] = error / (PREDICTION_ERROR_M + PREDICTION_ACCEL_MPS2 * dt * dt / 2)


def remember(state, previous: PreviousState | None = None) -> PreviousState:
    """``state`` as the aircraft's last good state after ``previous`` (``remember_into``)."""
    out = np.empty(N_PREVIOUS_COLUMNS)
    p = np.array(previous_columns(previous)) if previous is not None else _NO_PREVIOUS
    remember_into(np.array(state_columns(state)), previous is not None, p, out)
    return previous_of(out)


def feature_vector(state, previous: PreviousState | None) -> np.ndarray:
    """The features of ``state`` (a StateVector) given the aircraft's last good state (``FEATURES`` order):
    ``features_into`` for one state (``ml.track`` computes a batch's)."""
    out = np.empty(N_FEATURES, dtype=np.float64)
    p = np.array(previous_columns(previous)) if previous is not None else _NO_PREVIOUS
    features_into(np.array(state_columns(state)), previous is not None, p, out)
    return out


_NO_PREVIOUS = np.full(N_PREVIOUS_COLUMNS, _NAN)
