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

from typing import NamedTuple

import numpy as np

from ml.features import RATE_MIN_GAP_S, AircraftMemory, I, remember

EMERGENCY_SQUAWKS = {"7500": "hijack", "7600": "radio failure", "7700": "general emergency"}
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


def rule_flags(state, features: np.ndarray) -> Flags:
    """The alerts and data faults of one state, given its features (``ml.features.feature_vector``)."""
    alerts, faults = [], []
    if state.squawk in EMERGENCY_SQUAWKS:
        alerts.append(f"emergency squawk {state.squawk} ({EMERGENCY_SQUAWKS[state.squawk]})")
    airborne = not state.on_ground
    gap = features[I["position_gap_s"]]
    if not features[I["new_track"]] and gap > 0:
        implied = features[I["implied_speed_mps"]]
        velocity = state.velocity
        if implied > MAX_IMPLIED_SPEED_MPS and implied > SPEED_RATIO * velocity:
            faults.append(f"position jump: moved at {implied:.0f} m/s over {gap:.0f} s, reported {velocity:.0f} m/s")
        elif (airborne and gap <= MAX_SPEED_CHECK_GAP_S and velocity > SPEED_RATIO * implied
              and velocity - implied > MAX_SPEED_EXCESS_MPS):
            if implied < FROZEN_SPEED_MPS:
                faults.append(f"frozen position: reported {velocity:.0f} m/s but moved {implied * gap:.0f} m "
                              f"in {gap:.0f} s")
            else:
                faults.append(f"speed spike: reported {velocity:.0f} m/s but moved at {implied:.0f} m/s "
                              f"over {gap:.0f} s")
        residual = features[I["altitude_residual_mps"]]
        if abs(residual) > MAX_ALTITUDE_RESIDUAL_MPS:
            unexplained = residual * max(gap, RATE_MIN_GAP_S)
            faults.append(f"altitude jump: {unexplained:+.0f} m in {gap:.0f} s more than its vertical rate explains")
        vertical = state.vertical_rate
        if vertical is not None and abs(vertical) > MAX_VERTICAL_RATE_MPS and airborne:
            # A zero-g parabola really climbs at 100 m/s: only a rate the altitude does not follow is a fault.
            climbed = features[I["climb_rate_mps"]]
            if climbed * vertical < vertical * vertical / 2:
                faults.append(f"impossible vertical rate: reported {vertical:+.0f} m/s, altitude changed "
                              f"{climbed:+.0f} m/s")
    age = features[I["position_age_s"]]
    if age > STALE_POSITION_S and airborne:
        faults.append(f"stale position: {age:.0f} s older than the last contact")
    return Flags(alerts, faults)


def remember_after(state, memory: AircraftMemory | None, faults: list[str]) -> AircraftMemory | None:
    """The aircraft's memory after ``state``.

    A data fault is not remembered: the next state is compared with the last good one,
    so the return from a glitch is not flagged as a second fault. A state already
    remembered, or older than the latest, changes nothing.
    """
    if faults:
        return memory
    if memory is None:
        return AircraftMemory(remember(state))
    latest = memory.latest
    if state.last_contact < latest.last_contact or memory.previous_for(state) is not latest:
        return memory  # older, or the latest seen again
    new = remember(state, latest)
    return memory if new == latest else AircraftMemory(new, latest)
