"""Faults the fake server can inject, for testing the source under bad conditions.

Whole-response faults are queued and each applies to one request, in order.
Row corruption applies to a share of the rows of every response, and each
corrupted row is recorded so a test knows what the validator must reject.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

RESPONSE_FAULTS = (
    "429", "500", "502", "503", "slow", "malformed", "truncated", "big", "empty",
    "duplicate", "future", "past", "disconnect",
)
#: Corruptions of single fields: set to null, or to a value of the wrong type.
ROW_CORRUPTIONS = ("null", "wrong_type")
#: field index -> (name, a value of the wrong type, whether OpenSky may send null there).
#: A null where OpenSky may send one is no corruption, so those fields only get wrong types.
CORRUPTIBLE_FIELDS = {
    0: ("icao24", 12345, False),
    1: ("callsign", 42, True),
    2: ("origin_country", ["US"], False),
    3: ("time_position", "yesterday", True),
    4: ("last_contact", "yesterday", False),
    5: ("longitude", "east", False),
    6: ("latitude", [1, 2], False),
    7: ("baro_altitude", "high", True),
    8: ("on_ground", "no", False),
    9: ("velocity", {"fast": True}, False),
    10: ("true_track", "north", True),
    11: ("vertical_rate", "up", True),
    12: ("sensors", "all", True),
    13: ("geo_altitude", True, True),
    14: ("squawk", 7700, True),
    15: ("spi", "maybe", False),
    16: ("position_source", "adsb", False),
}


class FaultError(ValueError):
    pass


def parse_fault(spec: str) -> tuple[str, float | None]:
    """``"429:5"`` -> ("429", 5.0); ``"slow:3"`` -> ("slow", 3.0); ``"503"`` -> ("503", None)."""
    kind, _, arg = spec.partition(":")
    if kind not in RESPONSE_FAULTS:
        raise FaultError(f"unknown fault {kind!r}; known: {', '.join(RESPONSE_FAULTS)}")
    if not arg:
        return kind, None
    try:
        value = float(arg)
    except ValueError:
        raise FaultError(f"fault {spec!r}: {arg!r} is not a number") from None
    if value < 0 or value > 3600:
        raise FaultError(f"fault {spec!r}: {value} is out of range 0..3600")
    return kind, value


@dataclass
class FaultPlan:
    queue: deque = field(default_factory=deque)
    corrupt_rate: float = 0.0
    token_queue: deque = field(default_factory=deque)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    corruptions: list[dict] = field(default_factory=list)

    def enqueue(self, specs: list[str]) -> None:
        parsed = [parse_fault(s) for s in specs]  # all or nothing
        self.queue.extend(parsed)

    def next_fault(self) -> tuple[str, float | None] | None:
        return self.queue.popleft() if self.queue else None

    def corrupt_rows(self, rows: list[list]) -> list[list]:
        if not self.corrupt_rate:
            return rows
        out = []
        for row in rows:
            if self.rng.random() < self.corrupt_rate:
                row = list(row)
                index = self.rng.choice(sorted(CORRUPTIBLE_FIELDS))
                name, wrong_value, nullable = CORRUPTIBLE_FIELDS[index]
                kind = "wrong_type" if nullable else self.rng.choice(ROW_CORRUPTIONS)
                self.corruptions.append({"icao24": row[0], "last_contact": row[4], "field": name, "corruption": kind})
                row[index] = None if kind == "null" else wrong_value
            out.append(row)
        return out
