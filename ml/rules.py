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


def next_previous(state, before, alerts: list[str]):
    """The state to remember as the aircraft's previous one after ``state``.

    A state flagged as a position or altitude jump is a glitch: it is not
    remembered, so the next state is compared with the last good one (and the
    return from a glitch is not flagged as a second jump). A replayed older
    state never rewinds it.
    """
    from ml.features import remember

    if before is not None and state.last_contact < before.last_contact:
        return before
    if before is not None and any(a.startswith(JUMP_FLAGS) for a in alerts):
        return before
    return remember(state)


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
