"""Validation of one OpenSky state vector row: a pure function.

A row is accepted as a ``StateVector`` or rejected with a machine-readable
reason. The bounds are physical (what no aircraft's real state can be), not
anomaly thresholds: a 700 m/s jet is unusual and goes on to be scored; a
4,000 m/s one is a broken report and stops here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flights_app.faust_internals import built
from flights_app.records import STATE_FIELDS, InvalidState, StateVector

# Physical bounds of a state an aircraft can really be in.
MAX_VELOCITY_MPS = 1200.0  # beyond Mach 3.5: no aircraft OpenSky tracks
MIN_ALTITUDE_M = -1500.0  # below the Dead Sea, with room for altimeter setting errors
MAX_ALTITUDE_M = 30000.0  # above any airliner's or business jet's ceiling
MAX_ABS_VERTICAL_RATE_MPS = 500.0  # a report beyond this is garbage, not a dive
# Time consistency against the response's own `time`.
FUTURE_TOLERANCE_S = 60  # clock skew allowed between a receiver and OpenSky
MAX_CONTACT_AGE_S = 3600  # OpenSky drops aircraft after 300 s; older is a stale replay
MIN_PLAUSIBLE_UNIX_S = 946684800  # 2000-01-01: earlier is not a real timestamp
ROW_LENGTHS = (17, 18)  # 18 with extended=1 (category)

_ICAO24_RE = re.compile(r"^[0-9a-f]{6}$")
_SQUAWK_RE = re.compile(r"^[0-7]{4}$")


def parse_icao24(value: Any) -> str | None:
    """An ICAO 24-bit address as six lower-case hex digits (surrounding spaces and case ignored),
    or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text if _ICAO24_RE.match(text) else None


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str
    field_name: str | None = None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str, field_name: str | None = None):
        self.rejection = Rejection(reason, detail, field_name)


def _is_number(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)  # an int is finite, however large


def _number(value: Any, name: str, required: bool, lo: float = -math.inf, hi: float = math.inf,
            unit: str = "") -> float | None:
    """``value`` (the field ``name``) as a finite float within lo..hi; None if it is null and not required."""
    if type(value) is not float:  # noqa: E721 - the common case first: JSON's fractions
        if value is None:
            if required:
                raise _Reject(f"missing_{name}", f"{name} is null", name)
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Reject(f"invalid_{name}", f"{name}={value!r} is not a number", name)
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            raise _Reject(f"invalid_{name}", f"{name}={value!r} is not a number", name) from None
    if not math.isfinite(value):
        raise _Reject(f"invalid_{name}", f"{name}={value!r} is not a number", name)
    if not lo <= value <= hi:
        raise _Reject(f"{name}_out_of_range", f"{name}={value:g} {unit} is outside {lo:g}..{hi:g}", name)
    return value


def _timestamp(value: Any, name: str, required: bool) -> int | None:
    number = _number(value, name, required)
    if number is None:
        return None
    if number < MIN_PLAUSIBLE_UNIX_S:
        raise _Reject(f"invalid_{name}", f"{name}={value!r} is not a plausible Unix time", name)
    return int(number)


def _optional_str(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _Reject(f"invalid_{name}", f"{name}={value!r} is not a string", name)
    return value


def clean_callsign(value: str | None) -> str | None:
    """OpenSky pads callsigns with spaces and sends '' or '000000' when there is none."""
    if value is None:
        return None
    callsign = value.strip()
    if not callsign or set(callsign) == {"0"}:
        return None
    return callsign


def _validate(named: Mapping[str, Any], response_time: int | None) -> dict:
    """The fields of a state (``named``: its values by ``STATE_FIELDS`` name, category optional),
    checked and converted; raises ``_Reject`` for the first fault found."""
    icao24 = named["icao24"]
    if not (type(icao24) is str and _ICAO24_RE.fullmatch(icao24)):  # noqa: E721 - else as parse_icao24 reads it
        icao24 = parse_icao24(icao24)
        if icao24 is None:
            raise _Reject("invalid_icao24", f"icao24={named['icao24']!r} is not 6 hex digits", "icao24")

    callsign = clean_callsign(_optional_str(named["callsign"], "callsign"))
    country = named["origin_country"]
    if not isinstance(country, str):
        raise _Reject("invalid_origin_country", f"origin_country={country!r} is not a string", "origin_country")

    last_contact = _timestamp(named["last_contact"], "last_contact", required=True)
    time_position = _timestamp(named["time_position"], "time_position", required=False)
    if response_time is not None:
        for name, stamp in (("last_contact", last_contact), ("time_position", time_position)):
            if stamp is None:
                continue
            if stamp > response_time + FUTURE_TOLERANCE_S:
                raise _Reject("timestamp_in_future",
                              f"{name}={stamp} is {stamp - response_time} s after the response time", name)
            if stamp < response_time - MAX_CONTACT_AGE_S:
                raise _Reject("timestamp_too_old",
                              f"{name}={stamp} is {response_time - stamp} s before the response time", name)

    latitude = _number(named["latitude"], "latitude", True, -90, 90, "deg")
    longitude = _number(named["longitude"], "longitude", True, -180, 180, "deg")

    on_ground = named["on_ground"]
    if not isinstance(on_ground, bool):
        raise _Reject("invalid_on_ground", f"on_ground={on_ground!r} is not true/false", "on_ground")

    velocity = _number(named["velocity"], "velocity", True, 0, MAX_VELOCITY_MPS, "m/s")

    baro_altitude = _number(named["baro_altitude"], "baro_altitude", False, MIN_ALTITUDE_M, MAX_ALTITUDE_M, "m")
    geo_altitude = _number(named["geo_altitude"], "geo_altitude", False, MIN_ALTITUDE_M, MAX_ALTITUDE_M, "m")
    if baro_altitude is None and geo_altitude is None and not on_ground:
        raise _Reject("missing_altitude", "airborne state has neither baro_altitude nor geo_altitude", "baro_altitude")

    # FLARM receivers report tracks as -180..180; the same direction, another convention.
    true_track = _number(named["true_track"], "true_track", False, -360, 360, "deg")
    if true_track is not None:
        true_track %= 360.0
    vertical_rate = _number(named["vertical_rate"], "vertical_rate", False,
                            -MAX_ABS_VERTICAL_RATE_MPS, MAX_ABS_VERTICAL_RATE_MPS, "m/s")

    sensors = named["sensors"]
    if sensors is not None and not (isinstance(sensors, list) and all(_is_number(s) for s in sensors)):
        raise _Reject("invalid_sensors", f"sensors={sensors!r} is not a list of receiver ids", "sensors")

    squawk = _optional_str(named["squawk"], "squawk")
    if squawk is not None:
        squawk = squawk.strip() or None
    if squawk is not None and not _SQUAWK_RE.match(squawk):
        raise _Reject("invalid_squawk", f"squawk={squawk!r} is not 4 octal digits", "squawk")

    spi = named["spi"]
    if not isinstance(spi, bool):
        raise _Reject("invalid_spi", f"spi={spi!r} is not true/false", "spi")
    position_source = named["position_source"]
    if not (isinstance(position_source, int) and not isinstance(position_source, bool) and 0 <= position_source <= 3):
        raise _Reject("invalid_position_source", f"position_source={position_source!r} is not 0..3", "position_source")
    category = named.get("category")
    if category is not None and not (isinstance(category, int) and not isinstance(category, bool)
                                     and 0 <= category <= 20):
        raise _Reject("invalid_category", f"category={category!r} is not 0..20", "category")

    return dict(
        icao24=icao24,
        callsign=callsign,
        origin_country=country,
        time_position=time_position,
        last_contact=last_contact,
        longitude=longitude,
        latitude=latitude,
        baro_altitude=baro_altitude,
        on_ground=on_ground,
        velocity=velocity,
        true_track=true_track,
        vertical_rate=vertical_rate,
        sensors=[int(s) for s in sensors] if sensors is not None else None,
        geo_altitude=geo_altitude,
        squawk=squawk,
        spi=spi,
        position_source=position_source,
        category=category,
    )


def validate_state(
    row: Any, response_time: int | None, *, ingest_time: float, poll_id: str
) -> StateVector | InvalidState:
    """Accept ``row`` (one element of ``states``) as a StateVector, or reject it.

    ``response_time`` is the poll's own time, against which the row's timestamps
    must be consistent; None skips that check (a state already on the raw topic).

    Never raises on any JSON value: a rejection carries the row as it came,
    a reason code, the offending field and a sentence.
    """
    try:
        if not isinstance(row, list) or len(row) not in ROW_LENGTHS:
            kind = type(row).__name__ if not isinstance(row, list) else f"list of {len(row)}"
            raise _Reject("malformed_row", f"expected a list of 17 or 18 values, got a {kind}")
        fields = _validate(dict(zip(STATE_FIELDS, row, strict=False)), response_time)
    except _Reject as rejected:
        r = rejected.rejection
        icao24 = parse_icao24(row[0]) if isinstance(row, list) and row else None
        return InvalidState(
            reason=r.reason,
            detail=r.detail,
            field_name=r.field_name,
            raw=row,
            icao24=icao24,
            ingest_time=ingest_time,
            poll_id=poll_id,
        )
    fields["ingest_time"], fields["poll_id"] = ingest_time, poll_id
    return built(StateVector, fields)  # every field checked and converted above


def validate_fields(named: Mapping[str, Any], *, ingest_time: float, poll_id: str) -> StateVector | Rejection:
    """A state already on the raw topic (``named``: every one of ``STATE_FIELDS`` but category, by
    name) as a StateVector, or why not: ``validate_state`` without the poll's time checks."""
    try:
        fields = _validate(named, None)
    except _Reject as rejected:
        return rejected.rejection
    fields["ingest_time"], fields["poll_id"] = ingest_time, poll_id
    return built(StateVector, fields)
