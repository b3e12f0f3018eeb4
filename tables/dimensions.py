"""The window dimensions: what the windowed statistics are grouped by (pure declarations).

A dimension is a name, the plural its endpoint lists under (``/stats/{plural}/``), how a
state maps to its group (None: the state is not counted in that dimension) and whether that
group may change from one state of an aircraft to the next (``per_state``: an altitude band, a
flight phase; each state counts in the group it was in) or is fixed per aircraft (its window joins
the group of the state that opened it: a country, an airline). Everything
else (the partials' routing, the group table's keys, finals, expiry, the endpoints, the
dashboard) follows from this list. Adding a dimension is one entry here and its test
(docs/architecture.md, "A new window dimension").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tables.windows import airline_of


@dataclass(frozen=True)
class Dimension:
    name: str
    plural: str
    #: the group a state belongs to in this dimension; None: not counted in it
    group_of: Callable[[Any], str | None]
    #: the group may change from one state of an aircraft to the next (kept apart per group)
    per_state: bool = False


#: OpenSky's aircraft categories (a state's ``category``, asked for with extended=1); 0 and 1 say nothing.
CATEGORIES = {
    2: "Light", 3: "Small", 4: "Large", 5: "High vortex large", 6: "Heavy", 7: "High performance",
    8: "Rotorcraft", 9: "Glider", 10: "Lighter than air", 11: "Parachutist", 12: "Ultralight", 13: "Reserved",
    14: "Unmanned aerial vehicle", 15: "Space vehicle", 16: "Emergency vehicle", 17: "Service vehicle",
    18: "Point obstacle", 19: "Cluster obstacle", 20: "Line obstacle",
}

#: Altitude bands (upper bound in metres, exclusive; name), from the barometric altitude, else the geometric.
ALTITUDE_BANDS_M = ((3000.0, "below 3000 m"), (6000.0, "3000-6000 m"), (9000.0, "6000-9000 m"),
                    (float("inf"), "above 9000 m"))
ON_GROUND = "on ground"


def altitude_band(state: Any) -> str | None:
    """The state's altitude band; None for an airborne state without any altitude."""
    if state.on_ground:
        return ON_GROUND
    altitude = state.baro_altitude if state.baro_altitude is not None else state.geo_altitude
    if altitude is None:
        return None
    return next(name for top, name in ALTITUDE_BANDS_M if altitude < top)


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("country", "countries", lambda state: state.origin_country or None),
    Dimension("airline", "airlines", lambda state: airline_of(state.callsign)),
    Dimension("category", "categories", lambda state: CATEGORIES.get(state.category)),
    Dimension("altitude", "altitudes", altitude_band, per_state=True),
)

BY_NAME: dict[str, Dimension] = {d.name: d for d in DIMENSIONS}

