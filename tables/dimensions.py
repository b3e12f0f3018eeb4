"""The window dimensions: what the windowed statistics are grouped by (pure declarations).

A dimension is a name, the plural its endpoint lists under (``/stats/{plural}/``) and how a
state maps to its group (None: the state is not counted in that dimension). An aircraft's
window joins one group per dimension, fixed by the first state that opened it; everything
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


#: OpenSky's aircraft categories (a state's ``category``, asked for with extended=1); 0 and 1 say nothing.
CATEGORIES = {
    2: "Light", 3: "Small", 4: "Large", 5: "High vortex large", 6: "Heavy", 7: "High performance",
    8: "Rotorcraft", 9: "Glider", 10: "Lighter than air", 11: "Parachutist", 12: "Ultralight", 13: "Reserved",
    14: "Unmanned aerial vehicle", 15: "Space vehicle", 16: "Emergency vehicle", 17: "Service vehicle",
    18: "Point obstacle", 19: "Cluster obstacle", 20: "Line obstacle",
}

DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("country", "countries", lambda state: state.origin_country or None),
    Dimension("airline", "airlines", lambda state: airline_of(state.callsign)),
    Dimension("category", "categories", lambda state: CATEGORIES.get(state.category)),
)

BY_NAME: dict[str, Dimension] = {d.name: d for d in DIMENSIONS}


def groups_of(state: Any) -> dict[str, str | None]:
    """The state's group in every dimension, by dimension name."""
    return {d.name: d.group_of(state) for d in DIMENSIONS}
