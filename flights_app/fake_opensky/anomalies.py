"""Injected anomalies: the one definition the simulator and the evaluation on real recordings use.

``inject`` changes one state (a dict of the fields an anomaly touches) in place. Each kind
is what a known fault or emergency looks like in OpenSky's data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from flights_app.squawks import EMERGENCY_SQUAWKS as EMERGENCY_CODES

ANOMALY_KINDS = (
    "speed_spike",
    "altitude_jump",
    "position_jump",
    "emergency_squawk",
    "frozen_position",
    "impossible_vertical_rate",
)
EMERGENCY_SQUAWKS = tuple(EMERGENCY_CODES)


def unit(*parts: object) -> float:
    """A uniform number in [0, 1) that depends only on ``parts`` (stable across runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def inject(kind: str, row: dict, size: float, sign: int,
           earlier: Callable[[int], tuple[float, float] | None]) -> None:
    """Make ``row`` (keys velocity, alt, lat, lon, squawk, time_position, vertical_rate) anomalous.

    ``size`` in [0, 1) scales the anomaly, ``sign`` (+1 or -1) gives its direction, and
    ``earlier(t)`` is where the aircraft was at Unix second ``t`` (None if unknown).
    """
    if kind == "speed_spike":
        row["velocity"] = min(1100.0, row["velocity"] * (2.5 + size))
    elif kind == "altitude_jump":
        jump = 3000 + 3000 * size
        if row["alt"] - jump < 0:  # a jump below the ground goes up instead
            sign = 1
        row["alt"] = row["alt"] + sign * jump
    elif kind == "position_jump":
        row["lat"] = max(-89.0, min(89.0, row["lat"] + sign * (1 + 2 * size)))
        row["lon"] = ((row["lon"] + sign * (1 + 2 * size) + 180) % 360) - 180
    elif kind == "emergency_squawk":
        row["squawk"] = EMERGENCY_SQUAWKS[int(size * 3)]
    elif kind == "frozen_position":
        stale_at = row["time_position"] - int(120 + 480 * size)
        position = earlier(stale_at)
        row["time_position"] = stale_at
        if position is not None:
            row["lat"], row["lon"] = position
    elif kind == "impossible_vertical_rate":
        row["vertical_rate"] = round(sign * (60 + 60 * size), 2)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}")
