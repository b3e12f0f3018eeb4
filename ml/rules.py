"""Rules beside the model: what no model needs to learn because physics or the transponder says it.

Two kinds of flag, each a sentence with its numbers:

- **alerts**: what the flight itself does and a person should see at once (an emergency squawk).
  Model anomalies become alerts too (``agents.scoring.alert_for``) unless the state is a data fault.
- **data faults**: reports that cannot be true (a position that jumps faster than any aircraft
  flies, an altitude that jumps without a vertical rate, a reported speed the positions contradict,
  an impossible vertical rate, a position long older than the contact). Counted and shown, never
  sent as alerts: they say the data is wrong, not that the flight is in trouble.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numba import njit

from flights_app.squawks import EMERGENCY_SQUAWKS
from ml.features import (
    I_ALTITUDE_RESIDUAL,
    I_CLIMB_RATE,
    I_IMPLIED_SPEED,
    I_NEW_TRACK,
    I_POSITION_AGE,
    I_POSITION_GAP,
    RATE_MIN_GAP_S,
    S_GROUND,
    S_VELOCITY,
    S_VERTICAL,
    state_columns,
)

#: A position step implying more than this, and more than twice the reported speed, is a bad fix.
MAX_IMPLIED_SPEED_MPS = 350.0
#: Altitude change per second that the vertical rate does not explain and no aircraft can fly.
MAX_ALTITUDE_RESIDUAL_MPS = 100.0
#: Reported vertical rates beyond this are not flyable by the aircraft OpenSky tracks.
MAX_VERTICAL_RATE_MPS = 50.0
#: An airborne position this much older than the last contact is stale (OpenSky keeps it 15 s).
STALE_POSITION_S = 60.0
#: A reported speed more than twice, and this much above, what the positions show cannot be true.
MAX_SPEED_EXCESS_MPS = 100.0
SPEED_RATIO = 2.0
#: Moving slower than this while reporting flying speed: the position is not being updated.
FROZEN_SPEED_MPS = 10.0
#: Over longer gaps a curved path makes the positions' speed too low to judge the reported one.
MAX_SPEED_CHECK_GAP_S = 60.0


class Flags(NamedTuple):
    alerts: list[str]
    faults: list[str]


#: The data faults, as bits of ``fault_bits`` (in the order their sentences are listed).
POSITION_JUMP, FROZEN_POSITION, SPEED_SPIKE, ALTITUDE_JUMP, IMPOSSIBLE_VERTICAL_RATE, STALE_POSITION = (
    1 << k for k in range(6))


@njit(cache=True)
def fault_bits(s, f) -> int:  # pragma: no cover - compiled
    """The data faults of a state (``s``: its columns, ``ml.features.state_columns``) given its features ``f``."""
    bits = 0
    airborne = s[S_GROUND] == 0.0
    gap = f[I_POSITION_GAP]
    if f[I_NEW_TRACK] == 0.0 and gap > 0:
        implied, velocity = f[I_IMPLIED_SPEED], s[S_VELOCITY]
        if implied > MAX_IMPLIED_SPEED_MPS and implied > SPEED_RATIO * velocity:
            bits |= POSITION_JUMP
        elif (airborne and gap <= MAX_SPEED_CHECK_GAP_S and velocity > SPEED_RATIO * implied
              and velocity - implied > MAX_SPEED_EXCESS_MPS):
            bits |= FROZEN_POSITION if implied < FROZEN_SPEED_MPS else SPEED_SPIKE
        if abs(f[I_ALTITUDE_RESIDUAL]) > MAX_ALTITUDE_RESIDUAL_MPS:
            bits |= ALTITUDE_JUMP
        vertical = s[S_VERTICAL]
        if vertical == vertical and abs(vertical) > MAX_VERTICAL_RATE_MPS and airborne:
            # A zero-g parabola really climbs at 100 m/s: only a rate the altitude does not follow is a fault.
            if f[I_CLIMB_RATE] * vertical < vertical * vertical / 2:
                bits |= IMPOSSIBLE_VERTICAL_RATE
    if f[I_POSITION_AGE] > STALE_POSITION_S and airborne:
        bits |= STALE_POSITION
    return bits


def flags_of(state, features: Sequence[float], bits: int) -> Flags:
    """The alerts and data faults of one state, in words, given its features and ``fault_bits``."""
    alerts, faults = [], []
    if state.squawk in EMERGENCY_SQUAWKS:
        alerts.append(f"emergency squawk {state.squawk} ({EMERGENCY_SQUAWKS[state.squawk]})")
    if not bits:
        return Flags(alerts, faults)
    gap, implied, velocity = features[I_POSITION_GAP], features[I_IMPLIED_SPEED], state.velocity
    if bits & POSITION_JUMP:
        faults.append(f"position jump: moved at {implied:.0f} m/s over {gap:.0f} s, reported {velocity:.0f} m/s")
    if bits & FROZEN_POSITION:
        faults.append(f"frozen position: reported {velocity:.0f} m/s but moved {implied * gap:.0f} m in {gap:.0f} s")
    if bits & SPEED_SPIKE:
        faults.append(f"speed spike: reported {velocity:.0f} m/s but moved at {implied:.0f} m/s over {gap:.0f} s")
    if bits & ALTITUDE_JUMP:
        unexplained = features[I_ALTITUDE_RESIDUAL] * max(gap, RATE_MIN_GAP_S)
        faults.append(f"altitude jump: {unexplained:+.0f} m in {gap:.0f} s more than its vertical rate explains")
    if bits & IMPOSSIBLE_VERTICAL_RATE:
        faults.append(f"impossible vertical rate: reported {state.vertical_rate:+.0f} m/s, altitude changed "
                      f"{features[I_CLIMB_RATE]:+.0f} m/s")
    if bits & STALE_POSITION:
        faults.append(f"stale position: {features[I_POSITION_AGE]:.0f} s older than the last contact")
    return Flags(alerts, faults)


def rule_flags(state, features: np.ndarray) -> Flags:
    """The alerts and data faults of one state, given its features (``ml.features.feature_vector``)."""
    return flags_of(state, features, fault_bits(np.array(state_columns(state)), features))
