"""What a history row holds, per kind: the columns of its Parquet files (one schema per kind, so
every file of a kind reads alike) and how a record of its topic becomes a row. The event time a row
is filed under comes from here too.

Each row also says where it came from (``kafka_partition``, ``kafka_offset``): a range replayed
after a crash is rewritten under the same name, and a state the scoring published twice (its
delivery is at least once) is told apart from a distinct one by (icao24, event_time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from flights_app.records import event_time_of

_PLACE = [("kafka_partition", pa.int32()), ("kafka_offset", pa.int64())]

STATE_COLUMNS = [
    ("icao24", pa.string()), ("callsign", pa.string()), ("origin_country", pa.string()),
    ("event_time", pa.int64()), ("time_position", pa.int64()), ("last_contact", pa.int64()),
    ("longitude", pa.float64()), ("latitude", pa.float64()), ("baro_altitude", pa.float64()),
    ("geo_altitude", pa.float64()), ("on_ground", pa.bool_()), ("velocity", pa.float64()),
    ("true_track", pa.float64()), ("vertical_rate", pa.float64()), ("squawk", pa.string()),
    ("category", pa.int64()), ("position_source", pa.int64()), ("ingest_time", pa.float64()),
    ("flight_phase", pa.string()), ("ml_anomaly_score", pa.float64()), ("ml_is_anomaly", pa.bool_()),
    ("anomaly_reason", pa.string()), ("alerts", pa.list_(pa.string())), ("data_faults", pa.list_(pa.string())),
    ("model_version", pa.string()), ("processed_time", pa.float64()),
]
WINDOW_COLUMNS = [
    ("dimension", pa.string()), ("name", pa.string()), ("window_start", pa.int64()), ("window_end", pa.int64()),
    ("final", pa.bool_()), ("emitted_at", pa.float64()), ("events", pa.int64()), ("aircraft", pa.int64()),
    ("velocity_min", pa.float64()), ("velocity_mean", pa.float64()), ("velocity_max", pa.float64()),
    ("altitude_min", pa.float64()), ("altitude_mean", pa.float64()), ("altitude_max", pa.float64()),
    ("anomalies", pa.int64()), ("anomaly_rate", pa.float64()), ("on_ground", pa.int64()),
    ("emergencies", pa.int64()), ("late_events", pa.int64()),
]
ALERT_COLUMNS = [
    ("icao24", pa.string()), ("callsign", pa.string()), ("event_time", pa.int64()), ("last_contact", pa.int64()),
    ("latitude", pa.float64()), ("longitude", pa.float64()), ("reasons", pa.list_(pa.string())),
    ("ml_anomaly_score", pa.float64()), ("squawk", pa.string()),
]

SCHEMAS = {kind: pa.schema(columns + _PLACE) for kind, columns in
           (("states", STATE_COLUMNS), ("windows", WINDOW_COLUMNS), ("alerts", ALERT_COLUMNS))}


def _number(value: Any) -> Any:
    """A JSON number as it is (None for anything else: a row never fails on a field of the wrong type)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _texts(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


_CAST: dict[Any, Callable[[Any], Any]] = {pa.string(): _text, pa.int64(): _integer, pa.float64(): _number,
                                          pa.bool_(): _flag, pa.list_(pa.string()): _texts}


def _row(columns: list[tuple[str, Any]], source: dict) -> dict:
    return {name: _CAST[kind](source.get(name)) for name, kind in columns}


def state_row(record: dict) -> tuple[float, dict] | None:
    """A scored record (flight-processed-data) as (event time, row); None if it is not one."""
    state = record.get("state")
    if not isinstance(state, dict) or not isinstance(state.get("icao24"), str):
        return None
    try:
        when = event_time_of(state)
    except KeyError:
        return None
    if _number(when) is None:
        return None
    row = _row(STATE_COLUMNS, {**state, **{k: v for k, v in record.items() if k != "state"}, "event_time": when})
    return when, row


def window_row(record: dict) -> tuple[float, dict] | None:
    """A window record (flight-aggregated-data) as (window start, row); None if it is not one."""
    if not isinstance(record.get("dimension"), str) or _number(record.get("window_start")) is None:
        return None
    return record["window_start"], _row(WINDOW_COLUMNS, record)


def alert_row(record: dict) -> tuple[float, dict] | None:
    """An alert (flight-alerts) as (event time, row); None if it is not one."""
    if not isinstance(record.get("icao24"), str) or _number(record.get("event_time")) is None:
        return None
    return record["event_time"], _row(ALERT_COLUMNS, record)


ROW_OF = {"states": state_row, "windows": window_row, "alerts": alert_row}
