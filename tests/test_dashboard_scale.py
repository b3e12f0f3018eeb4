"""The dashboard at a third of the global peak, in a real headless Chromium: 12,000 aircraft on the
map (a density layer at world zoom), one found by its callsign, followed, watched, and told about; the
watch list kept in the address and in the browser; two dashboard processes side by side."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from pathlib import Path

import pytest

from bench.dashboard import Sky, publish
from flights_app.topic_names import AGGREGATED, INVALID, PROCESSED
from tests.harness import PYTHON, Proc, free_port, make_topics, wait_until
from tests.test_dashboard_browser import CHROMIUM

pytestmark = pytest.mark.kafka

AIRCRAFT = 12_000

#: The map as the browser has it: aircraft drawn as markers, counted in the density, its view.
MAP = """() => { let markers = [], density = 0, view = null;
  for (const m of Bokeh.documents[0]._all_models.values()) {
    if (m.type === 'ColumnDataSource' && m.name === 'aircraft')
      m.data.x.forEach((x, i) => { if (Number.isFinite(x))
        markers.push({icao24: m.data.icao24[i], x: x, y: m.data.y[i], ring: m.data.ring[i]}); });
    if (m.type === 'ColumnDataSource' && m.name === 'density' && m.data.image)
      for (const img of m.data.image) for (const v of img) density += v;
    if (m.title && m.title.text === 'Live map')
      view = {x0: m.x_range.start, x1: m.x_range.end, y0: m.y_range.start, y1: m.y_range.end};
  }
  return {markers, density, view}; }"""


class Feeder:
    """The prepared sky published in a thread of the test (stopped by the test's cleanup)."""

    def __init__(self, bootstrap: str, prefix: str, sky: Sky):
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(publish(bootstrap, prefix, sky, self.stop_event)),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)


def dashboard(kafka, tmp_path: Path, prefix: str, name: str) -> Proc:
    port = free_port()
    env = {**os.environ, "FLIGHTS_BROKER": kafka.url, "FLIGHTS_TOPIC_PREFIX": prefix,
           "FLIGHTS_DASHBOARD_PORT": str(port), "FLIGHTS_WEB_PORT": str(free_port()),
           "FLIGHTS_DATADIR": str(tmp_path / name), "FLIGHTS_HISTORY_DIR": str(tmp_path / "history")}
    proc = Proc(name, [PYTHON, "-m", "flights_app.cli", "dashboard"], env, tmp_path / f"{name}.log")
    proc.url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: "Launching server" in proc.log_text() or (not proc.alive() and pytest.fail(proc.tail())),
               60, f"{name} to listen")
    return proc


def test_find_follow_and_watch_one_of_12000_aircraft_and_two_dashboards_side_by_side(kafka, tmp_path, cleanup):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make install` installs Debian's chromium")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    prefix = f"s{uuid.uuid4().hex[:6]}-"
    asyncio.run(make_topics(kafka.bootstrap, [prefix + t for t in (PROCESSED, AGGREGATED, INVALID)]))
    sky = Sky(AIRCRAFT)
    cleanup.append(Feeder(kafka.bootstrap, prefix, sky))
    first = dashboard(kafka, tmp_path, prefix, "dashboard-1")
    cleanup.append(first)
    second = dashboard(kafka, tmp_path, prefix, "dashboard-2")
    cleanup.append(second)
    # the aircraft to find: one the model flags, squawking 7700 (an alert), so watching it is told of it
    target = next(i for i in range(AIRCRAFT) if sky.flagged[i] and i % 7 == 0)
    callsign, icao24 = sky.callsign[target], sky.icao24[target]

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1100})
            page = context.new_page()
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(first.url)
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60000)
            # At world zoom every aircraft is on the map: the flagged as markers, the others as density.
            caption = page.locator(".map-caption").first
            caption.get_by_text(re.compile(rf"{AIRCRAFT:,} aircraft in view: [\d,]+ as density")).first.wait_for(
                timeout=90000)
            # the caption, the markers and the density come in separate messages of a refresh: a read
            # between two of them can see an aircraft moved from the density to a marker in one only
            drawn = f"() => {{ const s = ({MAP})(); return s.markers.length + Math.round(s.density); }}"
            try:
                page.wait_for_function(f"() => ({drawn})() === {AIRCRAFT}", timeout=30000)
            except PlaywrightTimeout:
                pytest.fail(f"{page.evaluate(drawn):,} aircraft drawn, as markers or density, for {AIRCRAFT:,}")
            shown = page.evaluate(MAP)
            assert 0 < len(shown["markers"]) < 2500  # the flagged ones
            page.screenshot(path=str(tmp_path / "scale-world.png"))

            # Find it by its callsign: suggestions as the person types, the one picked followed.
            search = page.locator(".find input").first
            search.press_sequentially(callsign[:6], delay=50)  # "SKY000": many suggestions
            suggestions = page.locator(".suggestions select").first
            suggestions.wait_for(timeout=20000)
            search.fill("")
            search.press_sequentially(callsign, delay=50)
            wait_until(lambda: page.get_by_text(re.compile(rf"\({icao24}\) \(followed\)")).count() > 0, 30,
                       "the found aircraft's details, followed")

            def followed():
                now = page.evaluate(MAP)
                me = [m for m in now["markers"] if m["icao24"] == icao24]
                v = now["view"]
                return me and v and v["x0"] < me[0]["x"] < v["x1"] and v["y0"] < me[0]["y"] < v["y1"] \
                    and v["x1"] - v["x0"] < 4e6 and now
            now = wait_until(followed, 30, "the map centred on the aircraft, zoomed in")
            caption.get_by_text(re.compile(r"aircraft in view, each drawn")).first.wait_for(timeout=20000)
            page.screenshot(path=str(tmp_path / "scale-followed.png"))
            x_before = next(m["x"] for m in now["markers"] if m["icao24"] == icao24)
            wait_until(lambda: (lambda n: n and next(m["x"] for m in n["markers"] if m["icao24"] == icao24)
                                != x_before and n)(followed()), 40, "the followed aircraft to move, still in view")
            assert any(m["icao24"] == icao24 and m["ring"] == "#0077ff" for m in page.evaluate(MAP)["markers"])
            profile = """() => { for (const m of Bokeh.documents[0]._all_models.values())
                if (m.type === 'ColumnDataSource' && m.name === 'detail') return m.data.t.length; }"""
            wait_until(lambda: page.evaluate(profile) >= 2, 30, "its altitude and speed profile, two states or more")

            # Watch it: the list in the address, a notification of the aircraft and of its alert.
            page.locator(".watch-add button").first.click()
            page.get_by_text(re.compile(rf"Watched aircraft {callsign} \({icao24}\).*emergency squawk 7700")).first \
                .wait_for(timeout=30000)
            wait_until(lambda: f"watch={icao24}" in page.url, 10, "the watch list in the page's address")
            shown = page.evaluate(MAP)
            assert any(m["icao24"] == icao24 and m["ring"] != "black" for m in shown["markers"])  # highlighted
            page.screenshot(path=str(tmp_path / "scale-watched.png"))

            # A new page without the address's list has it from the browser's storage; a shared link
            # (another browser) has it from the address, on the second dashboard process.
            again = context.new_page()
            again.goto(first.url)
            again.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60000)
            wait_until(lambda: again.locator(".watch input").first.input_value() == icao24, 30,
                       "the watch list restored from the browser's storage")
            other = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
            other.goto(f"{second.url}?watch={icao24}")
            other.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60000)
            wait_until(lambda: other.locator(".watch input").first.input_value() == icao24, 30,
                       "the watch list from a shared link")
            # The second dashboard, its own consumer, shows the same sky.
            other.locator(".map-caption").first.get_by_text(
                re.compile(rf"{AIRCRAFT:,} aircraft in view")).first.wait_for(timeout=90000)
        finally:
            browser.close()
    print(f"screenshots: {tmp_path}/scale-world.png, scale-followed.png, scale-watched.png")
    assert not problems, problems
