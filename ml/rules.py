"""Rule flags beside the model: what no model needs to learn because physics or the
transponder already says it. Each flag carries its reason in words."""

from __future__ import annotations

import numpy as np

from ml.features import FEATURES

EMERGENCY_SQUAWKS = {"7500": "hijack", "7600": "radio failure", "7700": "general emergency"}
#: Ground speed no airliner or business jet reaches; implied by a position jump it means a bad fix.
MAX_IMPLIED_SPEED_MPS = 400.0
#: Altitude change per second of gap that no aircraft can fly (the fastest climbs are ~100 m/s).
MAX_ALTITUDE_CHANGE_RATE_MPS = 150.0
#: Reported vertical rates beyond this are not flyable by the aircraft OpenSky tracks.
MAX_VERTICAL_RATE_MPS = 50.0
#: An airborne position this much older than the last contact is stale (OpenSky keeps it 15 s).
STALE_POSITION_S = 60.0

_I = {name: i for i, name in enumerate(FEATURES)}


JUMP_FLAGS = ("position jump", "altitude jump")


def remember_after(state, memory, alerts: list[str]):
    """The aircraft's memory after ``state`` (an ``ml.features.AircraftMemory``, or None).

    A state flagged as a position or altitude jump is a glitch: it is not
    remembered, so the next state is compared with the last good one (and the
    return from a glitch is not flagged as a second jump). A state already
    remembered, or older than the latest, changes nothing.
    """
    from ml.features import AircraftMemory, remember

    if memory is None:
        return AircraftMemory(remember(state))
    latest = memory.latest
    if state.last_contact < latest.last_contact or memory.previous_for(state) is not latest:
        return memory  # older, or the latest seen again
    if any(a.startswith(JUMP_FLAGS) for a in alerts):
        return memory
    new = remember(state)
    return memory if new == latest else AircraftMemory(new, latest)


def rule_flags(state, features: np.ndarray, has_previous: bool) -> list[str]:
    """Alerts for one scored state: ``["emergency squawk 7700 (general emergency)", ...]``."""
    alerts = []
    if state.squawk in EMERGENCY_SQUAWKS:
        alerts.append(f"emergency squawk {state.squawk} ({EMERGENCY_SQUAWKS[state.squawk]})")
    if has_previous:
        implied = features[_I["implied_speed_mps"]]
        if implied > MAX_IMPLIED_SPEED_MPS:
            alerts.append(f"position jump: implied speed {implied:.0f} m/s beyond {MAX_IMPLIED_SPEED_MPS:.0f} m/s")
        gap = max(1.0, features[_I["contact_gap_s"]])
        change = features[_I["altitude_change_m"]]
        if abs(change) > MAX_ALTITUDE_CHANGE_RATE_MPS * gap and not state.on_ground:
            alerts.append(f"altitude jump: {change:+.0f} m in {gap:.0f} s")
    vertical = state.vertical_rate
    if vertical is not None and abs(vertical) > MAX_VERTICAL_RATE_MPS:
        alerts.append(f"impossible vertical rate {vertical:+.0f} m/s")
    age = features[_I["position_age_s"]]
    if age > STALE_POSITION_S and not state.on_ground:
        alerts.append(f"stale position: {age:.0f} s older than the last contact")
    return alerts
