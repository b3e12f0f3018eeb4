"""The map at the size of the sky, without a browser: what is sent makes the browser's copy of the
markers equal to what should be drawn, and every aircraft in view is drawn, as a marker or in the density."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from web.dashboard.basemap import mercator
from web.dashboard.mapview import BLANK, COLUMNS, MARKERS_MAX, Markers, View, density, plan, to_mercator


class Browser:
    """The browser's copy of a ColumnDataSource, changed as BokehJS changes it."""

    def __init__(self) -> None:
        self.data = {c: [] for c in COLUMNS}

    def apply(self, how: str, columns: dict, streamed: dict) -> None:
        if how == "whole":
            self.data = {c: list(v) for c, v in columns.items()}
            return
        for column, patches in columns.items():
            for index, value in patches:
                self.data[column][index] = value
        for column, values in streamed.items():
            self.data[column].extend(values)

    def drawn(self) -> dict[str, tuple]:
        rows = list(zip(*(self.data[c] for c in COLUMNS), strict=True))
        shown = [r for r in rows if not (isinstance(r[0], float) and math.isnan(r[0]))]
        icao24s = [r[COLUMNS.index("icao24")] for r in shown]
        assert len(icao24s) == len(set(icao24s)), "an aircraft drawn twice"
        return {r[COLUMNS.index("icao24")]: r for r in shown}


def values(icao24: str, x: float) -> tuple:
    return (x, 1.0, 0.0, 0.1, icao24, "CS" + icao24, "France", 1000.0, 200.0, "cruise", "", "black", 0.4)


refreshes = st.lists(st.dictionaries(st.integers(0, 150), st.integers(0, 3), max_size=120), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(refreshes)
def test_what_is_sent_makes_the_browser_draw_exactly_the_aircraft_wanted(steps):
    """Aircraft come, move, stay still and go over refreshes; after each, the browser (changed only by
    what ``Markers.update`` said to send) draws each wanted aircraft once, with its newest values."""
    markers, browser = Markers(), Browser()
    for step in steps:
        wanted = {f"{k:06x}": values(f"{k:06x}", float(position)) for k, position in step.items()}
        browser.apply(*markers.update(wanted))
        assert browser.drawn() == wanted
        assert len(browser.data["x"]) == markers.size


def test_a_refresh_that_moves_a_few_aircraft_sends_only_those():
    markers = Markers()
    wanted = {f"{k:06x}": values(f"{k:06x}", float(k)) for k in range(1000)}
    assert markers.update(wanted)[0] == "whole"
    wanted["000007"] = values("000007", 7.5)  # one moved
    del wanted["000009"]  # one gone: its slot blanked
    wanted["abcdef"] = values("abcdef", 1.0)  # one new: takes the blanked slot
    how, patches, streamed = markers.update(wanted)
    assert how == "patch" and not streamed
    assert sorted(index for index, _ in patches["x"]) == [7, 9] and patches["icao24"] == [(9, "abcdef")]
    wanted["fedcba"] = values("fedcba", 2.0)  # no free slot: appended
    how, patches, streamed = markers.update(wanted)
    assert how == "patch" and patches == {} and streamed["icao24"] == ["fedcba"]
    assert markers.update({})[0] == "whole" and markers.size == 0  # mostly blank: compacted
    assert BLANK[COLUMNS.index("icao24")] == ""


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6000), st.floats(0.0, 0.05), st.integers(0, 2**32 - 1))
def test_every_aircraft_in_view_is_drawn_once_as_a_marker_or_in_the_density(n, flagged_share, seed):
    rng = np.random.default_rng(seed)
    x, y = to_mercator(rng.uniform(-180, 180, n), rng.uniform(-70, 80, n))
    salient = rng.random(n) < flagged_share
    x0, y0 = mercator(-30, 20)
    x1, y1 = mercator(40, 65)
    view = View(x0, x1, y0, y1)
    inside = view.holds(x, y)
    drawn = plan(x, y, salient, view)
    density_total = drawn.density.total if drawn.density is not None else 0
    assert drawn.in_view == int(inside.sum()) == len(drawn.markers) + density_total
    assert inside[drawn.markers].all()
    if drawn.density is None:
        assert len(drawn.markers) == drawn.in_view <= MARKERS_MAX
    else:
        assert set(drawn.markers.tolist()) == set(np.flatnonzero(inside & salient).tolist())


def test_the_density_counts_each_point_in_its_cell():
    x, y = np.array([0.5, 0.5, 9.5, 5.0]), np.array([0.5, 0.5, 4.5, 2.6])
    grid = density(x, y, View(0, 10, 0, 5), bins=(10, 5))
    assert grid.total == 4 and grid.image[0, 0] == 2 and grid.image[4, 9] == 1 and grid.image[2, 5] == 1
    assert (grid.x, grid.y, grid.dw, grid.dh) == (0, 0, 10, 5)
    world = density(x, y, View(), bins=(10, 5))  # the whole world: the points' own extent
    assert world.total == 4 and world.dw == 9.0
