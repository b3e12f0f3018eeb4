"""Where the history's files are and what their names say (pure: no Kafka, no Parquet).

    {root}/{kind}/date=YYYY-MM-DD/hour=HH/{topic}+{partition}+{first}+{last}.parquet

``kind`` is ``states`` (flight-processed-data), ``windows`` (flight-aggregated-data) or ``alerts``
(flight-alerts); the date and hour are the UTC hour of each record's event time (hive-style, the layout
DuckDB, Spark, Trino and Iceberg read); ``first`` and ``last`` are the offsets of the topic partition
the file's records came from (a file holds the records of that range whose event time falls in its
hour). A file is written under a temporary name (``.tmp-`` prefix) and renamed; the writer commits the
range's end only after every file of the range is renamed, so after a crash a file whose range starts
at or after the committed offset is a leftover of an uncommitted range, deleted before that range is
written again. Compaction merges a partition-hour's files into one covering their whole range; a file
whose range another file of the same directory, topic and partition covers is superseded (readers skip
it; compaction deletes it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^(?P<topic>[A-Za-z0-9][A-Za-z0-9._-]*)\+(?P<partition>\d+)"
                   r"\+(?P<first>\d+)\+(?P<last>\d+)\.parquet$")
_HOUR_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$"), re.compile(r"^hour=(\d{2})$")


@dataclass(frozen=True, order=True)
class FileName:
    """What a history file's name says: the topic partition and offset range its records came from."""

    topic: str
    partition: int
    first: int
    last: int

    @property
    def name(self) -> str:
        return f"{self.topic}+{self.partition}+{self.first:020d}+{self.last:020d}.parquet"

    def covers(self, other: FileName) -> bool:
        """Whether this file's range holds all of ``other``'s (same topic partition), and more."""
        return ((self.topic, self.partition) == (other.topic, other.partition) and self != other
                and self.first <= other.first and other.last <= self.last)

    @classmethod
    def parse(cls, name: str) -> FileName | None:
        match = _NAME.match(name)
        if match is None:
            return None
        return cls(match["topic"], int(match["partition"]), int(match["first"]), int(match["last"]))


def hour_of(event_time: float) -> datetime:
    """The UTC hour an event time (Unix seconds) falls in."""
    return datetime.fromtimestamp(event_time, UTC).replace(minute=0, second=0, microsecond=0)


def hour_dir(root: Path, kind: str, hour: datetime) -> Path:
    return root / kind / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def hours_between(start: float, end: float) -> list[datetime]:
    """Every UTC hour that [start, end] (Unix seconds) touches, oldest first."""
    hour, last = hour_of(start), hour_of(end)
    out = []
    while hour <= last:
        out.append(hour)
        hour = hour_of(hour.timestamp() + 3600)
    return out


def hour_dirs(root: Path, kind: str) -> list[tuple[datetime, Path]]:
    """Every hour directory of ``kind`` under ``root`` (oldest first), with its hour."""
    out = []
    for day in sorted((root / kind).glob("date=*")):
        day_match = _HOUR_DIR[0].match(day.name)
        if not day_match or not day.is_dir():
            continue
        for hour in sorted(day.glob("hour=*")):
            hour_match = _HOUR_DIR[1].match(hour.name)
            if hour_match and hour.is_dir():
                when = datetime.strptime(f"{day_match[1]} {hour_match[1]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
                out.append((when, hour))
    return out


def files_in(directory: Path) -> list[tuple[FileName, Path]]:
    """The history files of one hour directory (temporary files and anything else left out)."""
    out = []
    for path in sorted(directory.glob("*.parquet")):
        parsed = FileName.parse(path.name)
        if parsed is not None:
            out.append((parsed, path))
    return out


def current(files: list[tuple[FileName, Path]]) -> list[tuple[FileName, Path]]:
    """``files`` without those another of them covers (superseded by a compaction not yet cleaned up)."""
    return [(name, path) for name, path in files if not any(other.covers(name) for other, _ in files)]
