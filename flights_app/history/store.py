"""The history's files on disk (flights_app/history/layout.py says where): written whole under a
temporary name and renamed, leftovers of an uncommitted range deleted, a closed hour's files
compacted into one (duplicates dropped), hours past the retention deleted. No Kafka here: the
writer (flights_app/history/writer.py) says which offsets are committed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
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


def _write_atomically(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class HistoryStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def write_range(self, kind: str, name: FileName, rows_by_hour: dict[datetime, list[dict]]) -> list[Path]:
        """The rows of one offset range of a topic partition, one file per hour they fall in (a file
        of the same name, from an earlier try of the same range, is replaced whole)."""
        written = []
        for hour, rows in sorted(rows_by_hour.items()):
            directory = hour_dir(self.root, kind, hour)
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / name.name
            _write_atomically(pa.Table.from_pylist(rows, schema=SCHEMAS[kind]), path)
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
                    _write_atomically(merged, path)
                for _, old in group:
                    if old != path:
                        old.unlink(missing_ok=True)
                log.info("History: compacted %d %s file(s) of %s[%d] in %s into %s (%d rows)", len(group), kind,
                         topic, partition, hour.strftime("%Y-%m-%d %H:00"), name.name,
                         0 if merged is None else merged.num_rows)
                done.append(path)
        return done

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

    def files(self, kind: str, hours: Iterable[datetime] | None = None) -> list[Path]:
        """The current files of ``kind`` (those of ``hours`` only, if given) that read as Parquet."""
        wanted = None if hours is None else set(hours)
        out = []
        for hour, directory in hour_dirs(self.root, kind):
            if wanted is None or hour in wanted:
                out += [path for _, path in current(files_in(directory)) if readable(path)]
        return out


_warned: set[Path] = set()


def readable(path: Path) -> bool:
    """Whether ``path`` has a Parquet footer (a corrupt or half-written file: one warning, then skipped)."""
    try:
        pq.read_metadata(path)
        return True
    except FileNotFoundError:
        return False
    except Exception as error:  # noqa: BLE001 - any damage: skipped, the query goes on
        if path not in _warned:
            _warned.add(path)
            log.warning("History: skipping %s, not a readable Parquet file (%s)", path, error)
        return False


def read_or_skip(path: Path) -> pa.Table | None:
    return pq.read_table(path) if readable(path) else None


def dedup(kind: str, table: pa.Table) -> pa.Table:
    """``table`` with each fact once (``IDENTITY``): states and alerts the first copy by offset;
    windows the final record, else the newest."""
    keys = IDENTITY[kind]
    rows = table.to_pylist()
    if kind == "windows":
        rows.sort(key=lambda r: (bool(r["final"]), r["emitted_at"] or 0, r["kafka_offset"]), reverse=True)
    else:
        rows.sort(key=lambda r: r["kafka_offset"])
    seen, kept = set(), []
    for row in rows:
        key = tuple(row[k] for k in keys)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return pa.Table.from_pylist(kept, schema=table.schema)
