"""The history's files on disk (flights_app/history/layout.py says where): written whole under a
temporary name and renamed, leftovers of an uncommitted range deleted, a closed hour's files
compacted into one (duplicates dropped), hours past the retention deleted. No Kafka here: the
writer (flights_app/history/writer.py) says which offsets are committed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flights_app.history.layout import (
    TMP_PREFIX,
    FileName,
    current,
    files_in,
    hour_dir,
    hour_dirs,
)
from flights_app.history.rows import SCHEMAS

log = logging.getLogger("flights_app.history")

#: Per kind, the columns that make a row the same fact (kept once by compaction, and by queries
#: before it); windows keep the final record, else the newest (``newest_window_first``).
IDENTITY = {"states": ("icao24", "event_time"), "alerts": ("icao24", "event_time"),
            "windows": ("dimension", "name", "window_start")}


#: Per kind, the order rows are kept in within a file: an aircraft's rows together, in time, so that a
#: track reads one row group per file (its min/max statistics skip the others).
ORDER = {"states": ("icao24", "event_time"), "alerts": ("icao24", "event_time"),
         "windows": ("dimension", "name", "window_start")}
ROW_GROUP_ROWS = 32_768


def write_table(kind: str, table: pa.Table, path: Path) -> None:
    """``table`` as the history keeps a file of ``kind``: in ``ORDER``, zstd, row groups of
    ``ROW_GROUP_ROWS``; written under a temporary name, synced, and renamed (never seen half-written)."""
    table = table.sort_by([(column, "ascending") for column in ORDER[kind]])
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


#: Per topic, every partition count the writers have seen it with (flights_app/history/query.py prunes
#: an aircraft's files by its key's partition only for a topic seen with one count).
TOPICS_FILE = "topics.json"


class HistoryStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def note_partitions(self, topic: str, count: int) -> None:
        """Remember that ``topic`` has ``count`` partitions (written whole, like every file here)."""
        seen = self._topics()
        if count in seen.get(topic, []):
            return
        seen.setdefault(topic, []).append(count)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / TOPICS_FILE
        tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
        tmp.write_text(json.dumps(seen, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)

    def partitions(self) -> dict[str, int]:
        """Per topic seen with one partition count only, that count."""
        return {topic: counts[0] for topic, counts in self._topics().items() if len(counts) == 1}

    def _topics(self) -> dict[str, list[int]]:
        try:
            seen = json.loads((self.root / TOPICS_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {t: [c for c in counts if isinstance(c, int)] for t, counts in seen.items()
                if isinstance(t, str) and isinstance(counts, list)} if isinstance(seen, dict) else {}

    def write_range(self, kind: str, name: FileName, rows_by_hour: dict[datetime, list[dict]]) -> list[Path]:
        """The rows of one offset range of a topic partition, one file per hour they fall in (a file
        of the same name, from an earlier try of the same range, is replaced whole)."""
        written = []
        for hour, rows in sorted(rows_by_hour.items()):
            directory = hour_dir(self.root, kind, hour)
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / name.name
            write_table(kind, pa.Table.from_pylist(rows, schema=SCHEMAS[kind]), path)
            written.append(path)
        return written

    def drop_uncommitted(self, kind: str, topic: str, partition: int, committed: int) -> int:
        """Delete the files of ``topic``'s ``partition`` whose range starts at or after ``committed``
        (written, then the writer stopped before committing them: that range is read again), and
        temporary files. How many files were deleted."""
        dropped = 0
        for _, directory in hour_dirs(self.root, kind):
            for leftover in directory.glob(f"{TMP_PREFIX}*"):
                leftover.unlink(missing_ok=True)
            for name, path in files_in(directory):
                if (name.topic, name.partition) == (topic, partition) and name.first >= committed:
                    path.unlink(missing_ok=True)
                    dropped += 1
        if dropped:
            log.info("History: deleted %d %s file(s) of %s[%d] from offset %d on (written, never committed)",
                     dropped, kind, topic, partition, committed)
        return dropped

    def compact(self, kind: str, closed_before: datetime, most: int = 1) -> list[Path]:
        """Merge the files of each topic partition in an hour before ``closed_before`` into one (rows
        kept once: ``IDENTITY``), at most ``most`` partition-hours per call; the merged files are
        deleted once the new one is in place. The files written."""
        done: list[Path] = []
        for hour, directory in hour_dirs(self.root, kind):
            if hour >= closed_before or len(done) >= most:
                break
            files = files_in(directory)
            # superseded files a crash left beside their compaction: delete them now
            live = current(files)
            for name, path in files:
                if (name, path) not in live:
                    path.unlink(missing_ok=True)
            by_partition: dict[tuple[str, int], list[tuple[FileName, Path]]] = {}
            for name, path in live:
                by_partition.setdefault((name.topic, name.partition), []).append((name, path))
            for (topic, partition), group in sorted(by_partition.items()):
                if len(group) < 2 or len(done) >= most:
                    continue
                tables = [table for _, path in group if (table := read_or_skip(path)) is not None]
                merged = dedup(kind, pa.concat_tables(tables)) if tables else None
                name = FileName(topic, partition, min(n.first for n, _ in group), max(n.last for n, _ in group))
                path = directory / name.name
                if merged is not None:
                    write_table(kind, merged, path)
                for _, old in group:
                    if old != path:
                        old.unlink(missing_ok=True)
                log.info("History: compacted %d %s file(s) of %s[%d] in %s into %s (%d rows)", len(group), kind,
                         topic, partition, hour.strftime("%Y-%m-%d %H:00"), name.name,
                         0 if merged is None else merged.num_rows)
                done.append(path)
        return done

    def newest_hour(self) -> datetime | None:
        """The newest hour any kind of the history holds (None: empty)."""
        return max((hour for kind in SCHEMAS for hour, _ in hour_dirs(self.root, kind)[-1:]), default=None)

    def expire(self, before: datetime) -> int:
        """Delete every hour directory older than ``before`` (all kinds); how many."""
        removed = 0
        for kind in SCHEMAS:
            for hour, directory in hour_dirs(self.root, kind):
                if hour >= before:
                    break
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
                day = directory.parent
                if not any(day.iterdir()):
                    day.rmdir()
        if removed:
            log.info("History: deleted %d hour(s) older than %s (FLIGHTS_HISTORY_DAYS)", removed,
                     before.strftime("%Y-%m-%d %H:00"))
        return removed

    def files(self, kind: str, hours: Iterable[datetime] | None = None,
              keep: Callable[[FileName], bool] | None = None) -> list[Path]:
        """The current files of ``kind`` (those of ``hours`` only, and whose name ``keep`` accepts, if
        given) that read as Parquet."""
        wanted = None if hours is None else set(hours)
        out = []
        for hour, directory in hour_dirs(self.root, kind):
            if wanted is None or hour in wanted:
                out += [path for name, path in current(files_in(directory))
                        if (keep is None or keep(name)) and schema_of(path) is not None]
        return out


_warned: set[Path] = set()
#: Each file's schema by (path, size, mtime): a file is written once and never changed in place (a
#: compaction writes a new name), so its footer is read once per process, not once per query.
_schemas: dict[tuple[Path, int, int], pa.Schema] = {}
_SCHEMAS_KEPT = 100_000


def schema_of(path: Path) -> pa.Schema | None:
    """The schema of ``path``'s Parquet footer; None if it has none (a damaged or half-written file: one
    warning, then skipped)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    key = (path, stat.st_size, stat.st_mtime_ns)
    found = _schemas.get(key)
    if found is not None:
        return found
    try:
        found = pq.read_schema(path)
    except FileNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - any damage: skipped, the query goes on
        if path not in _warned:
            _warned.add(path)
            log.warning("History: skipping %s, not a readable Parquet file (%s)", path, error)
        return None
    if len(_schemas) >= _SCHEMAS_KEPT:
        _schemas.clear()
    _schemas[key] = found
    return found


def readable(path: Path) -> bool:
    """Whether ``path`` has a Parquet footer (see ``schema_of``)."""
    return schema_of(path) is not None


def read_or_skip(path: Path) -> pa.Table | None:
    return pq.read_table(path) if readable(path) else None


def dedup(kind: str, table: pa.Table) -> pa.Table:
    """``table`` with each fact once (``IDENTITY``): states and alerts the first copy by offset;
    windows the final record, else the newest (DuckDB over the Arrow table: no row becomes a Python object)."""
    import duckdb

    keys = ", ".join(IDENTITY[kind])
    first = ("final DESC, emitted_at DESC NULLS LAST, kafka_offset DESC" if kind == "windows"
             else "kafka_offset")
    connection = duckdb.connect()
    try:
        connection.register("merged", table)
        # the SQL is this module's own: no value from a record or a request reaches it
        kept = connection.sql(f"SELECT * FROM merged QUALIFY row_number() OVER (PARTITION BY {keys} "
                                  f"ORDER BY {first}) = 1").to_arrow_table()
    finally:
        connection.close()
    return kept.select(table.schema.names).cast(table.schema)
