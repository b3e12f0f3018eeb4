"""The dashboard's history mode in a real headless Chromium: a person switches to History, loads a range,
plays it, and finds an aircraft by its callsign. The history is written by the history writer's own code
(no pipeline needed: tests/test_history_pipeline.py holds the writer to the topics)."""

from __future__ import annotations

import re
from collections import namedtuple
from pathlib import Path

import pytest

from flights_app.history.writer import HistoryWriter
from flights_app.settings import load_settings
from tests.harness import PYTHON, Proc, free_port, http_get, wait_until
from tests.test_dashboard_browser import CHROMIUM, SOURCE_SIZES
from tests.test_history import scored

pytestmark = pytest.mark.kafka

TP = namedtuple("TP", "topic partition")
T0 = 1_765_000_800  # 2025-12-06 06:00:00 UTC
STEPS = 180  # a state every 10 s for 30 minutes
FLEET = {"3c6444": 48.0, "4ca123": 49.0, "a0b1c2": 50.0}  # icao24 -> latitude; callsign AFR + its first three


def write_history(root: Path) -> None:
    writer = HistoryWriter(load_settings({"FLIGHTS_HISTORY_DIR": str(root)}))
    for partition, (icao24, lat) in enumerate(FLEET.items()):
        tp = TP("flight-processed-data", partition)
        for i in range(STEPS):
            # eastwards; the second aircraft squawks an emergency-like fault at minute 20
            writer.add(tp, i, scored(icao24, T0 + 10 * i, lat=lat, lon=1.0 + 0.01 * i, anomaly=i == 120,
                                     faults=("position jump",) if (icao24, i) == ("4ca123", 120) else ()))
        writer.write(tp)


def answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def status(page) -> str:
    return page.locator(".status").first.evaluate("e => (e.shadowRoot || e).textContent")


def test_a_person_replays_a_range_and_follows_an_aircraft_found_by_callsign(kafka, tmp_path, cleanup):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make install` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    write_history(tmp_path / "history")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLIGHTS_BROKER": kafka.url,
           "FLIGHTS_DATADIR": str(tmp_path / "var"), "FLIGHTS_HISTORY_DIR": str(tmp_path / "history"),
           "FLIGHTS_DASHBOARD_PORT": str(port), "FLIGHTS_TOPIC_PREFIX": f"h{port}-"}
    dashboard = Proc("dashboard", [PYTHON, "-m", "flights_app.cli", "dashboard"], env, tmp_path / "dashboard.log")
    cleanup.append(dashboard)
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/") or (
        not dashboard.alive() and pytest.fail(dashboard.tail())), 60, "the dashboard to answer")
    shots = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30000)

            # History: a range of 30 minutes, loaded and shown at its tenth minute.
            page.get_by_role("button", name="History").first.click()
            page.get_by_placeholder("2026-12-07T14:00:00Z").fill("2025-12-06T06:00:00Z")
            page.get_by_placeholder("2026-12-07T14:30:00Z").fill(str(T0 + 1800))
            page.get_by_role("button", name="Load range").first.click()
            page.get_by_text(f"{STEPS * len(FLEET):,} states of {len(FLEET)} aircraft").first.wait_for(timeout=30000)
            wait_until(lambda: page.evaluate(SOURCE_SIZES)["aircraft"] == len(FLEET), 20, "three aircraft on the map")
            assert "History: 2025-12-06 06:10:00 UTC, 3 aircraft" in status(page), status(page)
            shots.append(tmp_path / "history-loaded.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            # Played at 60x: the moment shown moves on by itself.
            page.locator(".h-speed select").first.select_option("60x")
            page.get_by_role("button", name="Play").first.click()
            wait_until(lambda: re.search(r"06:1[1-9]:\d\d UTC", status(page)), 30, "the replay to move on")
            assert "playing at 60x" in status(page)
            shots.append(tmp_path / "history-playing.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
            page.get_by_role("button", name="Play").first.click()  # pause

            # Found by its callsign, in lower case: its whole track in the range, with its flags.
            page.get_by_placeholder("e.g. AFR123").fill("afr4ca")
            page.get_by_role("button", name="Find").first.click()
            page.get_by_text(f"AFR4ca (4ca123): {STEPS} states in the range").first.wait_for(timeout=20000)
            page.get_by_text("flags: position jump").first.wait_for(timeout=5000)
            assert page.evaluate(SOURCE_SIZES)["detail"] == STEPS
            shots.append(tmp_path / "history-found.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            # A bad range is refused in words, and nothing is lost of what was loaded.
            page.get_by_placeholder("2026-12-07T14:00:00Z").fill("yesterday")
            page.get_by_role("button", name="Load range").first.click()
            page.get_by_text("Not loaded: from='yesterday': expected Unix seconds or ISO 8601").first.wait_for(
                timeout=10000)
        finally:
            browser.close()
    assert not problems, problems
    print("screenshots:", ", ".join(str(s) for s in shots))
