"""The dashboard's history mode, without Panel: a range of the history (flights_app/history/) loaded
once, then played: each moment becomes a ``Traffic`` as the live feed would have filled it then, so
every chart, KPI and table draws history exactly as it draws live traffic.

The dashboard reads the history's files itself (FLIGHTS_HISTORY_DIR: the same machine as the writer,
or a shared mount), with the same query layer as ``flights-app history`` and ``/history/...``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from flights_app.history.query import History, QueryError, parse_range
from web.dashboard.model import Traffic

#: The longest range the dashboard loads at once, and the most states it holds.
MAX_HOURS = 6
MAX_STATES = 400_000
#: A moment shows the states of this many seconds before it (an aircraft's position, its trail).
SPAN_S = 300
SPEEDS = {"1x": 1, "10x": 10, "30x": 30, "60x": 60}
_STATE_FIELDS = ("icao24", "callsign", "origin_country", "time_position", "last_contact", "longitude", "latitude",
                 "baro_altitude", "geo_altitude", "on_ground", "velocity", "true_track", "vertical_rate", "squawk",
                 "category", "position_source")
_SCORED_FIELDS = ("flight_phase", "ml_anomaly_score", "ml_is_anomaly", "anomaly_reason", "alerts", "data_faults",
                  "model_version", "processed_time")


def as_scored(row: dict) -> dict:
    """A history row in the shape of a flight-processed-data record (what ``Traffic`` reads)."""
    return {"state": {k: row.get(k) for k in _STATE_FIELDS}, **{k: row.get(k) for k in _SCORED_FIELDS}}


@dataclass
class Playback:
    root: Path
    start: float = 0.0
    end: float = 0.0
    records: list[dict] = field(default_factory=list)  # flight-processed-data shape, oldest first
    times: list[float] = field(default_factory=list)  # each record's event time
    windows: list[dict] = field(default_factory=list)  # window records of the range, final or newest
    truncated: bool = False

    def load(self, start_text: str, end_text: str, dimensions: tuple[str, ...]) -> str:
        """Load [start, end] (Unix seconds or ISO 8601); what was loaded, or what is wrong, in one line."""
        try:
            start, end = parse_range(start_text, end_text, MAX_HOURS)
        except QueryError as error:
            return f"Not loaded: {error}"
        history = History(self.root)
        found = history.states(start, end, limit=MAX_STATES)
        rows = found.as_dicts()
        self.start, self.end, self.truncated = start, end, found.truncated
        self.records = [as_scored(r) for r in rows]
        self.times = [float(r["event_time"]) for r in rows]
        self.windows = [w for d in dimensions for w in history.windows(d, start - 3600, end).as_dicts()]
        if self.truncated:
            self.end = self.times[-1]
        aircraft = len({r["icao24"] for r in rows})
        told = (f"{len(rows):,} states of {aircraft:,} aircraft, {len(self.windows):,} window records"
                if rows else "no states in this range")
        return told + (f"; only up to {MAX_STATES:,} states: narrow the range" if self.truncated else "")

    @property
    def loaded(self) -> bool:
        return bool(self.records)

    def frame(self, at: float, traffic: Traffic | None = None) -> Traffic:
        """The traffic as the live dashboard would have shown it at ``at``: the states of the ``SPAN_S``
        seconds before it, and the windows that had started by then."""
        traffic = traffic or Traffic()
        first = bisect.bisect_right(self.times, at - SPAN_S)
        last = bisect.bisect_right(self.times, at)
        for record in self.records[first:last]:
            traffic.add_processed(record)
        for window in self.windows:
            if window["window_start"] <= at:
                traffic.add_window(window)
        return traffic

    def find(self, text: str) -> str | None:
        """The aircraft ``text`` names: an icao24, else the first callsign containing it (any case)."""
        wanted = text.strip().lower()
        if not wanted:
            return None
        callsign_match = None
        for record in self.records:
            state = record["state"]
            if state["icao24"] == wanted:
                return wanted
            if callsign_match is None and wanted in (state.get("callsign") or "").strip().lower():
                callsign_match = state["icao24"]
        return callsign_match

    def track(self, icao24: str) -> list[dict]:
        """Every loaded state of ``icao24``, oldest first (flight-processed-data shape)."""
        return [r for r in self.records if r["state"]["icao24"] == icao24]
