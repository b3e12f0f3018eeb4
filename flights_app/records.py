"""The records that travel between agents: one ``faust.Record`` per topic.

Field order and meaning follow OpenSky's ``/states/all`` state vector
(https://openskynetwork.github.io/opensky-api/rest.html#all-state-vectors).
"""

from __future__ import annotations

from typing import Any

import faust

#: OpenSky's state vector fields, in the order of the JSON arrays it sends.
STATE_FIELDS: tuple[str, ...] = (
    "icao24",
    "callsign",
    "origin_country",
    "time_position",
    "last_contact",
    "longitude",
    "latitude",
    "baro_altitude",
    "on_ground",
    "velocity",
    "true_track",
    "vertical_rate",
    "sensors",
    "geo_altitude",
    "squawk",
    "spi",
    "position_source",
    "category",
)


class StateVector(faust.Record, serializer="json", include_metadata=False):
    """One aircraft's state as OpenSky reports it, after validation.

    Fields and units:
      icao24          -- ICAO 24-bit transponder address, 6 lower-case hex digits
      callsign        -- 8 characters at most, trailing spaces removed; None if empty
      origin_country  -- country of registration, from the ICAO address
      time_position   -- Unix seconds of the last position update; None if none in 15 s
      last_contact    -- Unix seconds of the last message from the transponder
      longitude       -- WGS-84 degrees, -180..180
      latitude        -- WGS-84 degrees, -90..90
      baro_altitude   -- barometric altitude, metres; None (on the ground, or unknown)
      on_ground       -- True when the position came from a surface report
      velocity        -- ground speed, metres per second
      true_track      -- track over ground, degrees clockwise from north; None if unknown
      vertical_rate   -- metres per second, positive climbing; None if unknown
      sensors         -- receiver ids that contributed (only when asked for); usually None
      geo_altitude    -- geometric altitude, metres; None if unknown
      squawk          -- transponder code, 4 octal digits as a string; None if unknown
      spi             -- special purpose indicator
      position_source -- 0 ADS-B, 1 ASTERIX, 2 MLAT, 3 FLARM
      category        -- aircraft category 0..20 (only with extended=1); None otherwise
      ingest_time     -- Unix seconds (float) when the source agent received the poll
      poll_id         -- number of the poll that carried this state, per source run
    """

    icao24: str
    callsign: str | None
    origin_country: str
    time_position: int | None
    last_contact: int
    longitude: float
    latitude: float
    baro_altitude: float | None
    on_ground: bool
    velocity: float
    true_track: float | None
    vertical_rate: float | None
    sensors: list[int] | None
    geo_altitude: float | None
    squawk: str | None
    spi: bool
    position_source: int
    category: int | None
    ingest_time: float
    poll_id: str

    @property
    def event_time(self) -> int:
        """When the state was true: its position time, else its last contact."""
        return self.time_position if self.time_position is not None else self.last_contact


class StateBatch(faust.Record, serializer="json", include_metadata=False):
    """The states of one poll whose aircraft live in one partition: a message of flight-raw-data
    (``flights_app.batches`` writes it; ``flights_app.decode`` checks it whole, then state by state).

      states -- the StateVectors, each checked by the validator when it is read
      kind   -- "states" (a message without ``kind`` is a single StateVector)
    """

    states: list[StateVector]
    kind: str = "states"


def event_time_of(state: dict) -> int:
    """``StateVector.event_time`` of a state as JSON (e.g. a scored record's ``state``)."""
    return state["time_position"] if state.get("time_position") is not None else state["last_contact"]


class InvalidState(faust.Record, serializer="json", include_metadata=False):
    """A state vector the validator rejected, kept as it arrived.

      reason      -- machine-readable code, e.g. ``latitude_out_of_range``
      detail      -- the same in words, with the offending value
      field_name  -- the state vector field at fault, or None for the whole row
      raw         -- the row exactly as OpenSky sent it (JSON values)
      icao24      -- the row's icao24 if it had a readable one, else None
      ingest_time -- Unix seconds when the poll was received
      poll_id     -- the poll that carried the row
    """

    reason: str
    detail: str
    field_name: str | None
    raw: Any
    icao24: str | None
    ingest_time: float
    poll_id: str


class ScoredState(faust.Record, serializer="json", include_metadata=False):
    """A state vector with its features, phase and anomaly verdicts (flight-processed-data).

      state             -- the StateVector as validated
      features          -- feature name -> value (ml.features.FEATURES)
      flight_phase      -- ground, takeoff, climb, cruise, level, descent, approach, landing
      ml_anomaly_score  -- 0..1, higher is more anomalous (= -score_samples of the model)
      ml_is_anomaly     -- score above the manifest's threshold (a false-alarm budget on clean traffic)
      anomaly_reason    -- the feature furthest from typical, in words; None when not an anomaly
      alerts            -- what the flight does that a person should see at once (emergency squawk)
      data_faults       -- reports that cannot be true, each a sentence (position jump, altitude jump,
                           speed spike, frozen or stale position, impossible vertical rate); never alerts
      model_version     -- first 12 hex digits of the model file's sha256
      processed_time    -- Unix seconds when the scorer emitted it
    """

    state: StateVector
    features: dict[str, float]
    flight_phase: str
    ml_anomaly_score: float
    ml_is_anomaly: bool
    anomaly_reason: str | None
    alerts: list[str]
    data_faults: list[str]
    model_version: str
    processed_time: float


class Alert(faust.Record, serializer="json", include_metadata=False):
    """Something a person watching should see (flight-alerts).

      icao24, callsign      -- the aircraft
      event_time            -- Unix seconds of the state that raised it (its position time)
      last_contact          -- that state's last contact, Unix seconds (with icao24: the state's identity)
      latitude, longitude   -- where, degrees
      reasons               -- rule flags and, for a model anomaly, its explanation
      ml_anomaly_score      -- the model's score of that state, 0..1
      squawk                -- the transponder code at the time
    """

    icao24: str
    callsign: str | None
    event_time: int
    last_contact: int
    latitude: float
    longitude: float
    reasons: list[str]
    ml_anomaly_score: float
    squawk: str | None
