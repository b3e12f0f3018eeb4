"""Flight phase from a single state: a pure function with named thresholds.

    on the ground, slow                       -> ground
    on the ground, at take-off/landing speed  -> takeoff or landing (by vertical rate sign, else takeoff)
    below LOW_ALTITUDE_M, climbing            -> takeoff
    below LOW_ALTITUDE_M, descending          -> landing
    climbing faster than CLIMB_RATE_MPS       -> climb
    descending, below APPROACH_CEILING_M      -> approach
    descending                                -> descent
    at or above CRUISE_FLOOR_M, level         -> cruise
    otherwise level                           -> level
"""

from __future__ import annotations

PHASES = ("ground", "takeoff", "climb", "cruise", "level", "descent", "approach", "landing")

GROUND_ROLL_MIN_SPEED_MPS = 30.0  # below this on the ground is taxiing or parked
LOW_ALTITUDE_M = 500.0  # initial climb / final approach band
CLIMB_RATE_MPS = 2.5  # vertical rates within +-2.5 m/s (about 500 ft/min) count as level
APPROACH_CEILING_M = 3000.0  # descending below this is an approach
CRUISE_FLOOR_M = 7500.0  # level above this is cruise


def flight_phase(on_ground: bool, altitude_m: float | None, vertical_rate_mps: float | None,
                 velocity_mps: float | None = None) -> str:
    """The phase of flight; ``altitude_m`` None is treated as unknown (not as zero)."""
    rate = vertical_rate_mps or 0.0
    if on_ground:
        if velocity_mps is not None and velocity_mps >= GROUND_ROLL_MIN_SPEED_MPS:
            return "landing" if rate < -CLIMB_RATE_MPS else "takeoff"
        return "ground"
    low = altitude_m is not None and altitude_m < LOW_ALTITUDE_M
    if low and rate > 0:
        return "takeoff"
    if low and rate < 0:
        return "landing"
    if rate > CLIMB_RATE_MPS:
        return "climb"
    if rate < -CLIMB_RATE_MPS:
        return "approach" if altitude_m is not None and altitude_m < APPROACH_CEILING_M else "descent"
    if altitude_m is not None and altitude_m >= CRUISE_FLOOR_M:
        return "cruise"
    return "level"
