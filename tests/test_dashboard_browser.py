"""The dashboard in a real headless Chromium, over a worker fed by the simulator: what a person sees."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flights_app.embedded.broker import EmbeddedBroker
from tests.conftest import KAFKA_LIB
from tests.harness import (
    PYTHON,
    FakeOpenSky,
    Proc,
    TestApp,
    free_port,
    free_port_pair,
    http_get,
    make_topics,
    wait_until,
)

pytestmark = pytest.mark.kafka

CHROMIUM = os.environ.get("FLIGHTS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Sources that must hold data once traffic flows (the selected aircraft's track comes with a click).
CHARTS = ("aircraft", "trails", "velocity_timeline", "altitude_timeline", "top_aircraft", "top_countries", "phases",
          "velocity_hist", "compass", "ground_air", "anomaly_scatter", "climb_scatter", "window_velocity",
          "window_anomalies", "completeness", "invalid_reasons")

SOURCE_SIZES = """() => { const out = {};
  for (const m of Bokeh.documents[0]._all_models.values())
    if (m.type === 'ColumnDataSource' && m.name) {
      const col = Object.keys(m.data)[0];
      out[m.name] = col ? m.data[col].length : 0;
      if (m.name === 'compass') out[m.name] = m.data.radius.filter(r => r > 0.05).length;
      if (m.name === 'aircraft') out[m.name] = Array.from(m.data.x).filter(Number.isFinite).length;  // drawn
      if (['top_aircraft', 'top_countries', 'phases', 'velocity_hist', 'ground_air', 'invalid_reasons']
          .includes(m.name)) out[m.name] = m.data.count.filter(c => c > 0).length;
    }
  return out; }"""


#: Where the first aircraft marker is on the screen: the map's plot view maps data to canvas pixels.
MARKER_ON_SCREEN = """() => {
  const seen = new Set();
  function walk(v) {
    if (!v || seen.has(v)) return null;
    seen.add(v);
    if (v.model && v.model.title && v.model.title.text === 'Live map' && v.frame) return v;
    for (const c of (v.child_views || [])) { const r = walk(c); if (r) return r; }
    return null;
  }
  for (const root of Object.values(Bokeh.index)) {
    const map = walk(root);
    if (!map) continue;
    let src = null;
    for (const m of Bokeh.documents[0]._all_models.values()) if (m.name === 'aircraft') src = m;
    map.canvas_view.el.scrollIntoView();
    const rect = map.canvas_view.el.getBoundingClientRect();
    const i = Array.from(src.data.x).findIndex(Number.isFinite);  // a slot given up holds NaN: not drawn
    return {x: rect.left + map.frame.x_scale.compute(src.data.x[i]),
            y: rect.top + map.frame.y_scale.compute(src.data.y[i])};
  }
  return null; }"""


#: The "Windows by" chart: its title and the groups it draws (null until it draws some).
WINDOW_GROUPS = """() => { let names = null, title = null;
  for (const m of Bokeh.documents[0]._all_models.values()) {
    if (m.type === 'ColumnDataSource' && m.name === 'window_groups') names = m.data.name;
    if (m.title && m.title.text && m.title.text.startsWith('Events per')) title = m.title.text;
  }
  return names && names.length && title ? {names: Array.from(names), title} : null; }"""


class Dashboard(Proc):
    def __init__(self, app: TestApp, tmp: Path, worker_web_port: int):
        self.port = free_port()
        env = dict(app.env, FLIGHTS_DASHBOARD_PORT=str(self.port), FLIGHTS_DATADIR=str(tmp / "dashboard"),
                   FLIGHTS_WEB_PORT=str(worker_web_port))
        super().__init__("dashboard", [PYTHON, "-m", "flights_app.cli", "dashboard"], env, tmp / "dashboard.log")
        self.url = f"http://127.0.0.1:{self.port}/"


def kpi(page, name: str) -> float:
    """The number a KPI card shows."""
    text = page.locator(f".kpi-{name}").first.evaluate("e => (e.shadowRoot || e).textContent")
    return float(re.findall(r"-?[\d,]+(?:\.\d+)?", text)[-1].replace(",", ""))


def log_in(page, url: str, password: str) -> None:
    """Panel's login form, as a person meets it (FLIGHTS_DASHBOARD_AUTH_FILE, required beyond loopback):
    a wrong password, then a wrong user, keep them there, saying so; the right login opens the dashboard."""
    page.goto(url)
    assert "/login" in page.url and page.locator("input[name=password]").count() == 1
    for user, given in (("ops", password + "x"), ("someone", password), ("ops", password)):
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", given)
        page.click("button[type=submit]")
        if given == password and user == "ops":
            break
        page.get_by_text("Invalid username or password").first.wait_for(timeout=15000)
        assert "/login" in page.url and not page.evaluate("() => !!window.Bokeh")
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url


def test_the_dashboard_shows_live_traffic_in_a_real_browser(kafka, tmp_path, cleanup):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make install` installs Debian's chromium when run as root "
                    "with apt; otherwise install it (Debian: sudo apt-get install chromium) or set FLIGHTS_CHROMIUM")
    from playwright.sync_api import sync_playwright

    fake = FakeOpenSky(tmp_path, "--simulate", "60", "--seed", "9", "--anomaly-rate", "0.3", "--corrupt-rate", "0.05")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.5")
    cleanup.append(app)
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or fake.stats()["requests"] >= 8, 120, "eight polls")
    fake.control(paused=True)
    password = secrets.token_urlsafe(12)
    (tmp_path / "users.json").write_text(json.dumps({"ops": password}))
    app.env["FLIGHTS_DASHBOARD_AUTH_FILE"] = str(tmp_path / "users.json")
    dashboard = Dashboard(app, tmp_path, worker.web_port)
    cleanup.append(dashboard)
    wait_until(lambda: dashboard.alive() and "Launching server" in dashboard.log_text() or (
        not dashboard.alive() and pytest.fail(dashboard.tail())), 60, "the dashboard to listen")

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            log_in(page, dashboard.url, password)
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=30000)
            page.get_by_text("Online").first.wait_for(timeout=30000)
            assert page.get_by_text("Map: outline").count() == 1  # offline: the land outline, no tiles

            def charts_full():
                sizes = page.evaluate(SOURCE_SIZES)
                return all(sizes.get(c, 0) > 0 for c in CHARTS) and sizes
            sizes = wait_until(charts_full, 60, "every chart to have data", interval_s=1)
            assert sizes["compass"] >= 4 and sizes["phases"] >= 3
            for name in ("events", "anomalies", "aircraft", "mean_velocity", "mean_altitude", "events_per_s"):
                assert kpi(page, name) > 0, name
            assert 0 < kpi(page, "invalid_rate") < 100
            # Figures only the worker knows: its lag, and the duplicates its window stage dropped.
            page.locator(".duplicates").get_by_text(re.compile(r"Duplicates dropped: [1-9]")).first.wait_for(
                timeout=20000)
            assert kpi(page, "lag") >= 0
            # The alerts panel lists the simulator's emergency squawks.
            alerts_table = page.locator(".alerts").first
            alerts_table.scroll_into_view_if_needed()
            alerts_table.get_by_text(re.compile("emergency squawk")).first.wait_for(timeout=15000)
            # Window starts read as times of day (UTC; the simulator's windows start on 10-minute marks).
            windows_table = page.locator(".windows-table").first
            windows_table.scroll_into_view_if_needed()
            windows_table.get_by_text(re.compile(r"^\d\d:\d0:00$")).first.wait_for(timeout=20000)
            assert windows_table.get_by_text(re.compile(r"^\d{1,3}(,\d{3}){3}$")).count() == 0  # no 1,796,130,000
            # Windows per aircraft category (the simulator's aircraft are Small, Large or Heavy): the worker's
            # /stats/categories/ counts every state of the window, as /stats/countries/ does ...
            def totals(plural: str) -> dict:
                status, _, body = http_get(f"http://127.0.0.1:{worker.web_port}/stats/{plural}/")
                assert status == 200, body
                return {"start": body["window_start"], "events": sum(r["events"] for r in body[plural]),
                        "names": {r["name"] for r in body[plural]}}
            def categories_match_countries():
                by_category, by_country = totals("categories"), totals("countries")
                same = by_category["start"] is not None and by_category["start"] == by_country["start"] \
                    and by_category["events"] == by_country["events"]
                return same and by_category
            by_category = wait_until(categories_match_countries, 60,
                                     "the current window's totals per category to equal those per country")
            assert by_category["events"] > 0 and by_category["names"] <= {"Small", "Large", "Heavy"}
            # ... and the dashboard draws them when a person picks "category" under "Windows by".
            page.locator(".window-dimension select").first.select_option("category")

            def groups_per_category():  # the chart's title and its bars arrive in separate updates
                shown = page.evaluate(WINDOW_GROUPS)
                return shown and shown["title"].startswith("Events per category") \
                    and set(shown["names"]) <= {"Small", "Large", "Heavy"} and shown
            wait_until(groups_per_category, 20, "the chart of the newest window's categories, Small, Large or Heavy")
            page.set_viewport_size({"width": 1500, "height": 4800})  # the page scrolls inside: show it all
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            page.set_viewport_size({"width": 1500, "height": 1100})

            # Filters change what is shown: one callsign. The KPIs count all traffic, whatever the filters.
            events_before = kpi(page, "events")
            page.locator(".period-caption").get_by_text(re.compile(r"all traffic, \d\d:\d\d:\d\d-")).first.wait_for(
                timeout=10000)
            points_before = page.evaluate(SOURCE_SIZES)["anomaly_scatter"]
            callsign = page.evaluate("""() => { for (const m of Bokeh.documents[0]._all_models.values())
                if (m.name === 'aircraft') return m.data.callsign.find(c => c); }""")
            field = page.get_by_placeholder("e.g. DLH")
            field.fill(callsign)
            field.press("Enter")
            wait_until(lambda: page.evaluate(SOURCE_SIZES)["aircraft"] == 1, 20, "one aircraft on the map")
            assert 0 < page.evaluate(SOURCE_SIZES)["anomaly_scatter"] < points_before  # its events only
            assert kpi(page, "events") >= events_before
            field.fill("")
            field.press("Enter")

            # Clicking an aircraft on the map shows its track.
            point = page.evaluate(MARKER_ON_SCREEN)
            page.mouse.click(point["x"], point["y"])
            wait_until(lambda: page.evaluate(SOURCE_SIZES)["detail"] > 0, 20, "the clicked aircraft's track")
            page.get_by_text(re.compile(r"states since selected, alerts:")).first.wait_for(timeout=10000)

            # A broker that does not answer: Offline, said plainly; back to the real one: Online.
            broker = page.get_by_placeholder("host:port[,host:port]")
            broker.fill("not a broker")
            broker.press("Enter")
            page.get_by_text("enter host:port").first.wait_for(timeout=10000)
            broker.fill(f"127.0.0.1:{free_port()}")
            broker.press("Enter")
            page.get_by_text("Offline").first.wait_for(timeout=30000)
            page.screenshot(path=str(tmp_path / "dashboard-offline.png"), full_page=True)
            broker.fill(app.bootstrap)
            broker.press("Enter")
            page.get_by_text("Online").first.wait_for(timeout=30000)

            # A broker stopped under the dashboard, then started again: Offline, then Online by itself.
            other = EmbeddedBroker(tmp_path / "kafka-2", free_port_pair(), lib_dir=KAFKA_LIB, heap_mb=384)
            cleanup.append(other)
            other.start()
            other_bootstrap = other.url.removeprefix("kafka://")
            with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
                pool.submit(asyncio.run, make_topics(other_bootstrap, [app.topic("flight-processed-data")])).result()
            broker.fill(other_bootstrap)
            broker.press("Enter")
            page.get_by_text(f"Online ({other_bootstrap})").first.wait_for(timeout=30000)
            other.stop()
            page.get_by_text("Offline").first.wait_for(timeout=30000)
            other.start()
            page.get_by_text(f"Online ({other_bootstrap})").first.wait_for(timeout=60000)
        except Exception:
            page.screenshot(path=str(tmp_path / "dashboard-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(f"screenshots: {tmp_path / 'dashboard.png'}, {tmp_path / 'dashboard-offline.png'}")
    assert not problems, problems

