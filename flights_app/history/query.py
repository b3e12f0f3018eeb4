"""Questions to the history, answered by DuckDB (embedded: nothing to run) over the Parquet files of
the hours asked for. Every parameter is checked here first (``QueryError`` says what is accepted), and
reaches SQL only as a bound parameter; the file list is built in Python (unreadable files skipped with
one warning: flights_app/history/store.py).

Times are Unix seconds or ISO 8601 (``2026-12-07T14:00:00Z``; no zone means UTC) everywhere.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from flights_app.history.layout import FileName, hours_between
from flights_app.history.store import HistoryStore, schema_of
from flights_app.partitioner import partition_for

#: The newest state of each aircraft within this many seconds before the moment asked for is where it was.
AREA_LOOKBACK_S = 15
ROW_LIMIT = 100_000
_ICAO24 = re.compile(r"^[0-9a-f]{6}$")
_DIMENSION = re.compile(r"^[a-z_]{1,32}$")
_KIND = {"model": "ml_is_anomaly", "fault": "len(data_faults) > 0", "any": "(ml_is_anomaly OR len(data_faults) > 0)"}


class QueryError(ValueError):
    """A parameter out of what is accepted (the message says what is)."""


def parse_time(name: str, value: str | float | None) -> float:
    """Unix seconds from Unix seconds or ISO 8601."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise QueryError(f"{name} is required: Unix seconds or ISO 8601 (e.g. 2026-12-07T14:00:00Z)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise QueryError(f"{name}={value[:40]!r}: expected Unix seconds or ISO 8601 "
                                 "(e.g. 2026-12-07T14:00:00Z)") from None
            seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not 0 <= seconds < 32503680000:  # year 3000
        raise QueryError(f"{name}={value!r}: out of range (a time between 1970 and 3000)")
    return seconds


def parse_range(start: str | float | None, end: str | float | None, max_hours: int) -> tuple[float, float]:
    begin, finish = parse_time("from", start), parse_time("to", end)
    if finish < begin:
        raise QueryError("to is before from")
    if finish - begin > max_hours * 3600:
        raise QueryError(f"the range is {(finish - begin) / 3600:.1f} hours; at most {max_hours} "
                         "(FLIGHTS_HISTORY_MAX_HOURS)")
    return begin, finish


def parse_icao24(value: str | None) -> str:
    text = (value or "").strip().lower()
    if not _ICAO24.match(text):
        raise QueryError(f"icao24={str(value)[:20]!r}: expected 6 hexadecimal digits (e.g. 3c6444)")
    return text


def parse_bbox(value: str | None) -> tuple[float, float, float, float]:
    """``lamin,lomin,lamax,lomax`` (FLIGHTS_BBOX's order), degrees."""
    parts = (value or "").split(",")
    try:
        lamin, lomin, lamax, lomax = (float(p) for p in parts)
    except ValueError:
        raise QueryError(f"bbox={str(value)[:60]!r}: expected lamin,lomin,lamax,lomax in degrees "
                         "(e.g. 48.5,1.8,49.2,3.0)") from None
    if not (-90 <= lamin < lamax <= 90 and -180 <= lomin < lomax <= 180):
        raise QueryError("bbox: expected -90 <= lamin < lamax <= 90 and -180 <= lomin < lomax <= 180")
    return lamin, lomin, lamax, lomax


def parse_kind(value: str | None) -> str:
    kind = (value or "any").strip().lower()
    if kind not in _KIND:
        raise QueryError(f"kind={str(value)[:20]!r}: expected one of {', '.join(_KIND)}")
    return kind


def parse_dimension(value: str | None, known: tuple[str, ...]) -> str:
    text = (value or "").strip().lower()
    if not _DIMENSION.match(text) or text not in known:
        raise QueryError(f"dimension={str(value)[:20]!r}: expected one of {', '.join(known)}")
    return text


@dataclass
class Answer:
    """The rows found, as the Arrow table DuckDB hands over (turned into Python values only when asked:
    a day's track is 8,640 rows of 24 columns, and tuples, then dicts, of it cost more than the query)."""
    table: pa.Table
    truncated: bool = False  # more rows matched than ROW_LIMIT: the first ROW_LIMIT are here

    @property
    def columns(self) -> list[str]:
        return self.table.column_names

    @property
    def count(self) -> int:
        return self.table.num_rows

    @property
    def rows(self) -> list[tuple]:
        return self.head(self.count)

    def head(self, n: int) -> list[tuple]:
        """The first ``n`` rows as tuples (only those made into Python values)."""
        return list(zip(*(column.to_pylist() for column in self.table.slice(0, n).columns), strict=True))

    def as_dicts(self) -> list[dict]:
        """A dict per row. The cyclic collector is held off while they are made: a day's track is
        200,000 new objects, which start collections that cost as much as making them (none of them
        can be in a cycle; garbage made meanwhile waits for the next collection)."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self.table.to_pylist()
        finally:
            if was_enabled:
                gc.enable()


class History:
    """Queries over the history under ``root``. An aircraft's states are all in the partition its key
    hashes to, so a track reads that partition's files only, on a topic whose partition count the
    writers recorded (``HistoryStore.partitions``; ``partitions`` overrides it); other topics: every file."""

    def __init__(self, root: Path, partitions: Mapping[str, int] | None = None):
        self.store = HistoryStore(root)
        self.partitions = dict(partitions) if partitions is not None else None
        self._database = duckdb.connect()  # in memory, nothing in it: each query a cursor of it (thread-safe)

    def _run(self, kind: str, start: float, end: float, sql: str, params: list,
             keep: Callable[[FileName], bool] | None = None, limit: int = ROW_LIMIT) -> Answer:
        files = self.store.files(kind, hours_between(start, end), keep)
        if not files:
            return Answer(pa.table({}))
        connection = self._database.cursor()  # a new database costs 20-50 ms, a cursor 0.2 ms
        try:
            connection.execute("SET enable_progress_bar = false")
            # the file list is this module's own (never a request's text), quoted as SQL text; files of
            # one schema (the usual case) are read as such, files written before a column was added by
            # name. A TEMP view is the cursor's own (another thread's query has its own "history").
            uniform = len({schema_of(f) for f in files}) == 1
            listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            connection.execute(f"CREATE TEMP VIEW history AS SELECT * FROM read_parquet([{listed}], "
                               f"union_by_name = {'false' if uniform else 'true'})")
            table = connection.sql(f"{sql} LIMIT {int(limit) + 1}", params=params).to_arrow_table()
            return Answer(table.slice(0, limit), truncated=table.num_rows > limit)
        finally:
            connection.close()

    def _partition_of(self, icao24: str) -> Callable[[FileName], bool]:
        """Whether a file can hold ``icao24``'s states: any file of a topic whose partition count is not known."""
        partitions = self.partitions if self.partitions is not None else self.store.partitions()

        def keep(name: FileName) -> bool:
            count = partitions.get(name.topic)
            return count is None or name.partition == partition_for(icao24.encode(), count)
        return keep

    def aircraft(self, icao24: str, start: float, end: float) -> Answer:
        """One aircraft's track over [start, end] with its scores and flags, each state once. (The
        states are picked in a materialised step first: DuckDB otherwise reads every row of the files
        before the window function keeps one copy of each.)"""
        return self._run("states", start, end, """
            WITH track AS MATERIALIZED (
                SELECT * FROM history WHERE icao24 = ? AND event_time BETWEEN ? AND ?)
            SELECT * EXCLUDE (kafka_partition, kafka_offset) FROM track
            QUALIFY row_number() OVER (PARTITION BY icao24, event_time ORDER BY kafka_offset) = 1
            ORDER BY event_time""", [icao24, start, end], keep=self._partition_of(icao24))

    def states(self, start: float, end: float, limit: int = ROW_LIMIT) -> Answer:
        """Every state over [start, end], oldest first, each once (at most ``limit``: the dashboard's
        history mode loads a range with this)."""
        return self._run("states", start, end, """
            WITH span AS MATERIALIZED (SELECT * FROM history WHERE event_time BETWEEN ? AND ?)
            SELECT * EXCLUDE (kafka_partition, kafka_offset) FROM span
            QUALIFY row_number() OVER (PARTITION BY icao24, event_time ORDER BY kafka_offset) = 1
            ORDER BY event_time, icao24""", [start, end], limit=limit)

    def area(self, bbox: tuple[float, float, float, float], at: float) -> Answer:
        """Every aircraft in the box at one moment: the newest state of each within the lookback before it."""
        lamin, lomin, lamax, lomax = bbox
        return self._run("states", at - AREA_LOOKBACK_S, at, """
            SELECT * EXCLUDE (kafka_partition, kafka_offset) FROM history
            WHERE event_time BETWEEN ? AND ? AND latitude BETWEEN ? AND ? AND longitude BETWEEN ? AND ?
            QUALIFY row_number() OVER (PARTITION BY icao24 ORDER BY event_time DESC, kafka_offset) = 1
            ORDER BY icao24""", [at - AREA_LOOKBACK_S, at, lamin, lamax, lomin, lomax])

    def anomalies(self, start: float, end: float, kind: str) -> Answer:
        """The states flagged over [start, end]: by the model, as data faults, or either."""
        return self._run("states", start, end, f"""
            WITH flagged AS MATERIALIZED (
                SELECT * FROM history WHERE event_time BETWEEN ? AND ? AND {_KIND[kind]})
            SELECT * EXCLUDE (kafka_partition, kafka_offset) FROM flagged
            QUALIFY row_number() OVER (PARTITION BY icao24, event_time ORDER BY kafka_offset) = 1
            ORDER BY event_time, icao24""", [start, end])

    def windows(self, dimension: str, start: float, end: float) -> Answer:
        """Each window of ``dimension`` starting in [start, end]: its final record, else its newest."""
        return self._run("windows", start, end, """
            SELECT * EXCLUDE (kafka_partition, kafka_offset) FROM history
            WHERE dimension = ? AND window_start BETWEEN ? AND ?
            QUALIFY row_number() OVER (PARTITION BY dimension, name, window_start
                                       ORDER BY final DESC, emitted_at DESC, kafka_offset DESC) = 1
            ORDER BY window_start, name""", [dimension, start, end])


#: The questions the history answers, and the parameters each takes (a request's query, the command's options).
QUESTIONS = {"aircraft": ("icao24", "from", "to"), "area": ("bbox", "at"), "anomalies": ("from", "to", "kind"),
             "windows": ("dimension", "from", "to")}


def ask(history: History, question: str, given: Mapping[str, str | float | None], *, max_hours: int,
        dimensions: tuple[str, ...]) -> Answer:
    """One question with its parameters as given (text or numbers), each checked first: the one place
    the command (``flights-app history``) and the endpoints (``/history/...``) turn parameters into a query."""
    if question == "aircraft":
        return history.aircraft(parse_icao24(given.get("icao24")),
                                *parse_range(given.get("from"), given.get("to"), max_hours))
    if question == "area":
        return history.area(parse_bbox(given.get("bbox")), parse_time("at", given.get("at")))
    if question == "anomalies":
        return history.anomalies(*parse_range(given.get("from"), given.get("to"), max_hours),
                                 parse_kind(given.get("kind")))
    if question == "windows":
        return history.windows(parse_dimension(given.get("dimension"), dimensions),
                               *parse_range(given.get("from"), given.get("to"), max_hours))
    raise QueryError(f"question={str(question)[:20]!r}: expected one of {', '.join(QUESTIONS)}")


def respond(history: History, question: str, given: Mapping[str, str | float | None], *, max_hours: int,
            dimensions: tuple[str, ...]) -> tuple[int, dict]:
    """An HTTP answer to one question: (200, the rows and what was asked) or (400, what is accepted)."""
    try:
        found = ask(history, question, given, max_hours=max_hours, dimensions=dimensions)
    except QueryError as error:
        return 400, {"error": str(error)}
    return 200, {"question": question, **{k: v for k, v in given.items() if v is not None},
                 "count": found.count, "truncated": found.truncated, "rows": found.as_dicts()}
