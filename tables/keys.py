"""The keys of the window tables and of flight-window-partials (pure; see tables/window_tables.py)."""

from __future__ import annotations

import zlib

from flights_app.topic_names import KEY_SEP as SEP

#: A country's window is split over this many group-windows keys, by icao24.
SHARDS = 16
FINAL = "final"


def shard_of(icao24: str) -> int:
    return zlib.crc32(icao24.encode()) % SHARDS


def group_name(dimension: str, name: str) -> str:
    """The key of a country's or airline's messages on flight-window-partials (and its routing key)."""
    return f"{dimension}|{name}"


def group_key(dimension: str, name: str, start: int, shard: int | str) -> str:
    return f"{group_name(dimension, name)}{SEP}{start}{SEP}{shard}"


def final_key(dimension: str, name: str, start: int) -> str:
    return group_key(dimension, name, start, FINAL)


def window_of_key(key: str) -> int:
    """The window start in a group-windows key."""
    return int(key.split(SEP)[1])


def parse_group_key(key: str) -> tuple[str, str, int, str]:
    """(dimension, name, window_start, shard or "final") of a group-windows key."""
    group, start, shard = key.split(SEP)
    dimension, name = group.split("|", 1)
    return dimension, name, int(start), shard
