"""The live map at the size of the sky (pure: numpy, no Panel or Bokeh).

- Which aircraft are drawn: those in the map's view; when more than ``MARKERS_MAX`` are in it, the
  view shows their density (``density``) and markers only for the aircraft a person must not miss
  (flagged, followed, watched), so that every aircraft in view is on the map either way.
- What is sent: the marker source is a set of slots (``Markers``). An aircraft keeps its slot while it
  is drawn; only the slots whose values changed are sent (a patch), a slot given up is blanked (NaN,
  nothing drawn) and taken again by the next aircraft, and the source grows (a stream) only when no
  slot is free. When most slots changed at once (a new view, a new filter) the columns are sent whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from web.dashboard.basemap import MAX_LAT, R

#: More aircraft than this in view: a density layer, with markers for the flagged, followed and watched.
MARKERS_MAX = 2500
#: The density layer's cells across the view's width and height.
DENSITY_BINS = (240, 140)
#: A change to more than this share of the slots is sent as whole columns rather than a patch.
WHOLE_ABOVE = 0.5

COLUMNS = ("x", "y", "angle", "score", "icao24", "callsign", "country", "altitude", "velocity", "phase", "reason",
           "ring", "ring_width")  # ring: the outline (watched aircraft stand out)
_TEXT = frozenset({"icao24", "callsign", "country", "phase", "reason", "ring"})
#: What a blanked slot holds: NaN coordinates are not drawn.
BLANK = tuple("" if c in _TEXT else math.nan for c in COLUMNS)


def to_mercator(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Web Mercator metres of arrays of degrees (basemap.mercator, vectorised)."""
    lat = np.clip(lat, -MAX_LAT, MAX_LAT)
    return R * np.radians(lon), R * np.log(np.tan(math.pi / 4 + np.radians(lat) / 2))


@dataclass(frozen=True)
class View:
    """The part of the map on screen, Web Mercator metres (``None`` bounds: the whole world)."""
    x0: float = -math.inf
    x1: float = math.inf
    y0: float = -math.inf
    y1: float = math.inf

    def holds(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)

    def bounded(self, x: np.ndarray, y: np.ndarray) -> View:
        """This view with any infinite bound replaced by the points' own extent."""
        if not len(x):
            return self
        def pick(bound: float, data: float) -> float:
            return bound if math.isfinite(bound) else data
        return View(pick(self.x0, float(x.min())), pick(self.x1, float(x.max())),
                    pick(self.y0, float(y.min())), pick(self.y1, float(y.max())))


@dataclass
class Density:
    """Counts of aircraft per cell over ``view`` (rows from the bottom), for Bokeh's ``image`` glyph."""
    image: np.ndarray
    x: float
    y: float
    dw: float
    dh: float

    @property
    def total(self) -> int:
        return int(self.image.sum())

    def as_data(self) -> dict:
        return {"image": [self.image], "x": [self.x], "y": [self.y], "dw": [self.dw], "dh": [self.dh]}


EMPTY_DENSITY = {"image": [], "x": [], "y": [], "dw": [], "dh": []}


def density(x: np.ndarray, y: np.ndarray, view: View, bins: tuple[int, int] = DENSITY_BINS) -> Density:
    """How many of the points fall in each cell of ``view`` (every point in it counted once)."""
    view = view.bounded(x, y)
    width, height = max(view.x1 - view.x0, 1.0), max(view.y1 - view.y0, 1.0)
    counts, _, _ = np.histogram2d(y, x, bins=(bins[1], bins[0]),
                                  range=((view.y0, view.y0 + height), (view.x0, view.x0 + width)))
    return Density(counts.astype(np.float32), view.x0, view.y0, width, height)


@dataclass
class Plan:
    """What the map draws: the rows (indexes into the aircraft given) as markers, and the density."""
    markers: np.ndarray
    density: Density | None
    in_view: int


def plan(x: np.ndarray, y: np.ndarray, salient: np.ndarray, view: View, most: int = MARKERS_MAX) -> Plan:
    """Markers for every aircraft in ``view`` when at most ``most`` are; else markers for the
    ``salient`` ones (flagged, followed, watched) and the density of the others."""
    inside = view.holds(x, y)
    count = int(inside.sum())
    if count <= most:
        return Plan(np.flatnonzero(inside), None, count)
    marked = inside & salient
    rest = inside & ~salient
    return Plan(np.flatnonzero(marked), density(x[rest], y[rest], view), count)


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


class Markers:
    """The marker source's columns as slots, and the least to send to make the browser's copy equal."""

    def __init__(self) -> None:
        self.slot: dict[str, int] = {}  # icao24 -> its slot
        self.values: list[tuple] = []  # per slot: the values the browser holds
        self.free: list[int] = []

    @property
    def size(self) -> int:
        return len(self.values)

    def columns(self) -> dict[str, list]:
        return {c: [v[i] for v in self.values] for i, c in enumerate(COLUMNS)}

    def update(self, wanted: dict[str, tuple]) -> tuple[str, dict, dict]:
        """Make the slots hold ``wanted`` (icao24 -> values in COLUMNS order). Returns ``("whole",
        columns, {})`` or ``("patch", patches, streamed)`` for ``ColumnDataSource.patch`` and ``stream``."""
        held: dict[int, tuple] = {}  # slot -> what the browser holds in it, for each slot changed
        for icao24 in [i for i in self.slot if i not in wanted]:
            slot = self.slot.pop(icao24)
            held.setdefault(slot, self.values[slot])
            self.values[slot] = BLANK
            self.free.append(slot)
        grown_from = len(self.values)
        for icao24, values in wanted.items():
            slot = self.slot.get(icao24)
            if slot is None:
                if self.free:
                    slot = self.free.pop()
                else:
                    slot = len(self.values)
                    self.values.append(BLANK)
                self.slot[icao24] = slot
            if self.values[slot] != values:
                held.setdefault(slot, self.values[slot])
                self.values[slot] = values
        if len(self.free) > max(64, len(self.values) // 2):  # mostly blank: start again compact
            self._compact()
            return "whole", self.columns(), {}
        if len(held) > WHOLE_ABOVE * len(self.values):
            return "whole", self.columns(), {}
        patches: dict[str, list] = {}
        for slot in sorted(s for s in held if s < grown_from):
            for i, column in enumerate(COLUMNS):
                if not _same(held[slot][i], self.values[slot][i]):
                    patches.setdefault(column, []).append((slot, self.values[slot][i]))
        streamed = {c: [v[i] for v in self.values[grown_from:]] for i, c in enumerate(COLUMNS)}
        return "patch", patches, (streamed if grown_from < len(self.values) else {})

    def _compact(self) -> None:
        kept = sorted(self.slot.items(), key=lambda item: item[1])
        self.values = [self.values[slot] for _, slot in kept]
        self.slot = {icao24: k for k, (icao24, _) in enumerate(kept)}
        self.free = []

    def icao24_at(self, slot: int) -> str | None:
        value = self.values[slot][COLUMNS.index("icao24")] if 0 <= slot < len(self.values) else ""
        return value or None
