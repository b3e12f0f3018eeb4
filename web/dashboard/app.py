"""The live dashboard: ``flights-app dashboard`` (or ``panel serve web/dashboard/app.py``).

One Kafka feed per server process (web/dashboard/feed.py) fills one bounded
``Traffic``; each browser session has its own filters, threshold and refresh,
and updates its Bokeh sources in place on a periodic callback.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import panel as pn
from bokeh.events import RangesUpdate
from bokeh.models import ColumnDataSource, HoverTool, LogColorMapper, Span, TapTool, WMTSTileSource
from bokeh.palettes import Viridis256, YlOrRd9
from bokeh.plotting import figure
from bokeh.transform import linear_cmap

from flights_app.settings import load_settings
from flights_app.topic_names import AGGREGATED, INVALID, PROCESSED
from web.dashboard import finder, mapview, model
from web.dashboard.basemap import land_outline, mercator, tiles_reachable
from web.dashboard.browserstore import WatchStore
from web.dashboard.feed import Feed
from web.dashboard.model import Filters, Traffic
from web.dashboard.playback import SPEEDS, Playback
from web.dashboard.totals import COMPASS

PHASES = ("ground", "takeoff", "climb", "cruise", "level", "descent", "approach", "landing", "unknown")
#: The charts over minutes and the tables are redrawn every this many refreshes, a part of them at a
#: time (the KPIs, the map and the followed aircraft at each): each redraw costs the browser's main
#: thread (docs/performance.md).
CHARTS_EVERY = 5
#: The raw-data table's rows: the newest events held (the browser redraws it at each refresh).
TABLE_EVENTS = 100
#: States of the selected aircraft kept for its profile (a day at 10 s).
FOLLOWED_STATES = 8640
#: The periods the KPIs, timelines and distributions cover: seconds of event time before the newest state.
PERIODS = {"last 10 minutes": 600, "last hour": 3600, "last 6 hours": None}
SECTIONS = ("Map", "Timelines", "Distributions", "Anomalies", "Windows", "Data quality", "Raw data")

_process: dict = {}

# Table columns and their types (a Tabulator takes its column formats from its first value).
ALERT_COLUMNS = {"time": "object", "icao24": "object", "callsign": "object", "score": "float64", "why": "object"}
EVENT_COLUMNS = {"time": "object", "icao24": "object", "callsign": "object", "country": "object",
                 "altitude": "float64", "velocity": "float64", "phase": "object", "score": "float64",
                 "squawk": "object"}
WINDOW_COLUMNS = {"dimension": "object", "name": "object", "window_start": "object", "events": "int64",
                  "aircraft": "int64", "velocity_mean": "float64", "altitude_mean": "float64",
                  "anomalies": "int64", "final": "bool"}


def _frame(columns: dict[str, str], rows: list[dict] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows or [], columns=list(columns))
    return frame.astype({c: t for c, t in columns.items() if rows or t != "int64"}, errors="ignore")


def shared_feed() -> Feed:
    """The process's feed, started on the server's event loop by the first session."""
    if "feed" not in _process:
        settings = load_settings()
        topics = {"processed": settings.topic_name(PROCESSED), "aggregated": settings.topic_name(AGGREGATED),
                  "invalid": settings.topic_name(INVALID)}
        feed = Feed(settings.bootstrap_servers, topics, Traffic(),
                    worker_url=settings.worker_url, worker_token=settings.web_token,
                    client_options=settings.kafka_security.client_options())
        _process.update(feed=feed, settings=settings, task=asyncio.get_event_loop().create_task(feed.run()))
    return _process["feed"]


def _figure(title: str, **kw) -> figure:
    kw.setdefault("height", 260)
    kw.setdefault("sizing_mode", "stretch_width")
    kw.setdefault("tools", "pan,wheel_zoom,box_zoom,reset,save")
    return figure(title=title, **kw)


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def clock(seconds: float, now: float | None = None) -> str:
    """A time as a table shows it: UTC, with the date when it is not today's (replays of old data)."""
    at = _ts(seconds)
    today = _ts(time.time() if now is None else now).date()
    return at.strftime("%H:%M:%S") if at.date() == today else at.strftime("%Y-%m-%d %H:%M:%S")


class Dashboard:
    def __init__(self) -> None:
        self.feed = shared_feed()
        self.traffic: Traffic = self.feed.traffic
        self.settings = _process["settings"]
        self.filters = Filters()
        self.selected: str | None = None
        self.playback = Playback(self.settings.history_dir)
        self.frame: Traffic | None = None  # history mode: the traffic of the moment shown
        self._points_key: tuple | None = None
        self.view = mapview.View()  # the map's view, as the browser last reported it (the whole world first)
        self.markers = mapview.Markers()
        self.watchlist = finder.WatchList()
        self._track_of: str | None = None  # the aircraft whose states _track holds (by event time)
        self._track: dict[float, dict] = {}
        self._windows_shown: tuple | None = None
        self._alerts_shown: list | None = None
        self._ticks = 0
        self._seen_total = 0
        self._callback = None
        self.doc = pn.state.curdoc  # this session's document (None outside a server)
        self._build_widgets()
        self._build_plots()
        self.update()

    # ---- widgets -------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        w = pn.widgets
        self.refresh = w.IntSlider(name="Refresh interval (s)", start=1, end=10, value=3)
        self.auto = w.Checkbox(name="Auto-refresh", value=True)
        self.max_events = w.IntInput(name="Processed events kept", value=self.traffic.max_events, start=100,
                                     end=100000, step=500)
        self.max_windows = w.IntInput(name="Windows kept", value=self.traffic.max_windows, start=10, end=10000)
        self.broker = w.TextInput(name="Broker (host:port, ...)", value=self.feed.bootstrap,
                                  placeholder="host:port[,host:port]")
        self.broker_msg = pn.pane.Markdown("", css_classes=["broker-msg"])
        self.sections = w.CheckBoxGroup(name="Sections", options=list(SECTIONS), value=list(SECTIONS))
        self.country = w.Select(name="Country", options=["(all)"], value="(all)")
        self.window_dimension = w.Select(name="Windows by", options=["country"], value="country",
                                         css_classes=["window-dimension"])
        self.callsign = w.TextInput(name="Callsign contains", placeholder="e.g. DLH")
        self.anomalies_only = w.Checkbox(name="Anomalies only")
        self.altitude = w.RangeSlider(name="Altitude (m)", start=-500, end=15000, value=(-500, 15000), step=100)
        self.threshold = w.FloatSlider(name="Anomaly threshold (score)", start=0.0, end=1.0, step=0.01,
                                       value=self.filters.threshold)
        self.status = pn.pane.HTML("", css_classes=["status"], sizing_mode="stretch_width")
        # Find and follow one aircraft; watch some (the list kept in the browser and in the address).
        self.find = w.TextInput(name="Find aircraft", placeholder="callsign, icao24 or airline prefix",
                                css_classes=["find"])
        self.suggestions = w.Select(name="Suggestions", options={}, size=6, css_classes=["suggestions"],
                                    visible=False)
        self.follow = w.Checkbox(name="Follow the selected aircraft", value=False, css_classes=["follow"])
        self.watch_add = w.Button(name="Watch the selected aircraft", css_classes=["watch-add"])
        self.watch = w.TextInput(name="Watch list (icao24s or callsigns, comma-separated)",
                                 placeholder="3c6444, AFR123", css_classes=["watch"])
        self.watch_msg = pn.pane.Markdown("", css_classes=["watch-msg"], sizing_mode="stretch_width")
        self.store = WatchStore()
        self.find.param.watch(lambda event: self._suggest(event.new), "value_input")
        self.suggestions.param.watch(lambda event: event.new and self._choose(event.new), "value")
        self.follow.param.watch(lambda *_: self._soon(self.update), "value")
        self.watch.param.watch(lambda event: self._set_watch(event.new), "value")
        self.store.param.watch(lambda event: setattr(self.watch, "value", event.new), "value")
        self.period = w.Select(name="Period of the KPIs and charts", options=list(PERIODS), value="last hour",
                               css_classes=["period"])
        self.period_caption = pn.pane.Markdown("", css_classes=["period-caption"], sizing_mode="stretch_width")
        # History mode: a range loaded from the history, a moment in it, played at a speed; an aircraft found.
        self.mode = w.RadioButtonGroup(name="Mode", options=["Live", "History"], value="Live", css_classes=["mode"])
        self.h_from = w.TextInput(name="From (UTC, ISO 8601 or Unix s)", placeholder="2026-12-07T14:00:00Z",
                                  css_classes=["h-from"])
        self.h_to = w.TextInput(name="To", placeholder="2026-12-07T14:30:00Z", css_classes=["h-to"])
        self.h_load = w.Button(name="Load range", button_type="primary", css_classes=["h-load"])
        self.h_time = w.IntSlider(name="Seconds into the range", start=0, end=1, value=0, step=10,
                                  css_classes=["h-time"])
        self.h_play = w.Toggle(name="Play", value=False, css_classes=["h-play"])
        self.h_speed = w.Select(name="Speed", options=list(SPEEDS), value="10x", css_classes=["h-speed"])
        self.h_find = w.TextInput(name="Find aircraft (icao24 or callsign)", placeholder="e.g. AFR123",
                                  css_classes=["h-find"])
        self.h_find_button = w.Button(name="Find", css_classes=["h-find-button"])
        self.h_msg = pn.pane.Markdown("*Load a range of the history to replay it.*", css_classes=["h-msg"],
                                      sizing_mode="stretch_width")
        self.history_controls = pn.Column(self.h_from, self.h_to, self.h_load, self.h_time, self.h_play,
                                          self.h_speed, self.h_find, self.h_find_button, self.h_msg, visible=False)
        # A widget's change and a click are handled outside the document's lock: what they redraw is done
        # on the next tick, within it (Bokeh refuses a model changed outside it).
        self.mode.param.watch(lambda *_: self._soon(self._set_mode), "value")
        for button, action in ((self.h_load, self._load_range), (self.h_find_button, self._find),
                               (self.watch_add, self._watch_selected)):
            button.on_click(lambda _event, action=action: self._soon(action))
        self.h_time.param.watch(lambda *_: self._soon(self._show_moment), "value")
        for widget in (self.country, self.callsign, self.anomalies_only, self.altitude, self.threshold,
                       self.window_dimension, self.period):
            widget.param.watch(lambda *_: self._soon(self.update), "value")
        self.refresh.param.watch(lambda *_: self._schedule(), "value")
        self.auto.param.watch(lambda *_: self._schedule(), "value")
        self.broker.param.watch(self._set_broker, "value")
        self.max_events.param.watch(self._resize, "value")
        self.max_windows.param.watch(self._resize, "value")
        self.sections.param.watch(self._show_sections, "value")

    def _soon(self, action) -> None:
        """``action`` on the next tick, within the document's lock (at once outside a server)."""
        if self.doc is not None:
            self.doc.add_next_tick_callback(action)
        else:
            action()

    # ---- history mode --------------------------------------------------------------------------
    @property
    def history_mode(self) -> bool:
        return self.mode.value == "History"

    def _set_mode(self, _event=None) -> None:
        self.history_controls.visible = self.history_mode
        self.h_play.value = False
        self.selected = None
        self.update()

    def _load_range(self) -> None:
        from tables.dimensions import DIMENSIONS

        self.h_msg.object = "Loading..."
        told = self.playback.load(self.h_from.value, self.h_to.value, tuple(d.name for d in DIMENSIONS))
        self.h_msg.object = told
        if self.playback.loaded:
            span = max(1, int(self.playback.end - self.playback.start))
            self.h_time.param.update(start=0, end=span, value=min(span, 600))
            self._show_moment()

    @property
    def moment(self) -> float:
        return self.playback.start + self.h_time.value

    def _show_moment(self) -> None:
        if self.history_mode and self.playback.loaded:
            self.frame = self.playback.frame(self.moment)
            self.update()

    def _find(self) -> None:
        found = self.playback.find(self.h_find.value) if self.playback.loaded else None
        if found is None:
            self.h_msg.object = f"No aircraft {self.h_find.value.strip()!r} in the loaded range."
            return
        self.selected = found
        self.h_msg.object = f"Following {found}."
        self.update()

    # ---- find, follow, watch ---------------------------------------------------------------------
    def _suggest(self, text: str) -> None:
        """The aircraft the search text names, as the person types; one match is chosen at once."""
        found = finder.suggest(text or "", self._traffic().aircraft.values())
        self.suggestions.options = {label: icao24 for icao24, label in found}
        self.suggestions.visible = bool(found)
        if len(found) == 1 or (found and found[0][0] == (text or "").strip().lower()):
            self._choose(found[0][0])

    def _choose(self, icao24: str) -> None:
        if icao24 == self.selected and self.follow.value:
            return
        self.selected = icao24
        self.follow.value = True  # redraws: the map centred on it, its track and details

    def _followed_track(self, t: Traffic) -> list[dict]:
        """The selected aircraft's states seen since it was selected (at most FOLLOWED_STATES), with
        those the buffer holds."""
        if self._track_of != self.selected:
            self._track_of, self._track = self.selected, {}
        for row in [*(r for r in t.events if r["icao24"] == self.selected), t.aircraft.get(self.selected)]:
            if row is not None:
                self._track[row["event_time"]] = row
        while len(self._track) > FOLLOWED_STATES:
            del self._track[min(self._track)]
        return [self._track[k] for k in sorted(self._track)]

    def _watch_selected(self) -> None:
        if self.selected:
            entries, _ = finder.parse_watch(self.watch.value)
            self.watch.value = finder.format_watch(entries | {self.selected})

    def _set_watch(self, text: str) -> None:
        entries, refused = finder.parse_watch(text)
        self.watchlist.set(entries)
        if self.store.value != text:
            self.store.value = text  # the browser keeps it, and the address says it
        self.watch_msg.object = (f"Not an icao24 or a callsign, left out: {', '.join(refused)}" if refused
                                 else f"Watching {len(entries)} aircraft." if entries else "")
        self._soon(self.update)

    def _tell_watchers(self, rows: list[dict]) -> None:
        """A notification when a watched aircraft appears or shows a new flag."""
        def flags(row: dict) -> list[str]:
            return [*row["alerts"], *(f"data fault: {x}" for x in row["faults"]),
                    *([f"model anomaly ({row['reason'] or 'score'})"] if row["model_anomaly"] else [])]
        notifications = pn.state.notifications
        for kind, message in self.watchlist.changes(rows, flags):
            if notifications is not None:
                getattr(notifications, kind)(message, duration=10000)
            self.watch_msg.object = message

    def _centre_on(self, x: float, y: float) -> None:
        """The map's view moved to centre (x, y), keeping its zoom when it shows a region already."""
        v = self.view
        half_w = (v.x1 - v.x0) / 2 if math.isfinite(v.x1 - v.x0) and v.x1 - v.x0 < 4e6 else 1e6
        half_h = (v.y1 - v.y0) / 2 if math.isfinite(v.y1 - v.y0) and v.y1 - v.y0 < 4e6 else 5e5
        if abs(x - (v.x0 + v.x1) / 2) < half_w / 4 and abs(y - (v.y0 + v.y1) / 2) < half_h / 4:
            return  # close enough to the centre: the map does not jump at every refresh
        self.view = mapview.View(x - half_w, x + half_w, y - half_h, y + half_h)
        self.map.x_range.update(start=self.view.x0, end=self.view.x1)
        self.map.y_range.update(start=self.view.y0, end=self.view.y1)

    def _tick(self) -> None:
        """The periodic refresh: live, a redraw; history, playing, the moment moved on by the speed."""
        if self.history_mode:
            if self.h_play.value and self.playback.loaded:
                self.h_time.value = min(self.h_time.end, self.h_time.value + SPEEDS[self.h_speed.value]
                                        * self.refresh.value)
                if self.h_time.value >= self.h_time.end:
                    self.h_play.value = False
            return
        self._ticks += 1
        part = self._ticks % CHARTS_EVERY  # parts 0-3 on four refreshes of five: none redraws everything
        self.update(parts=frozenset({part}) if part < 4 else frozenset())

    def _traffic(self) -> Traffic:
        if self.history_mode:
            return self.frame if self.frame is not None else Traffic()
        return self.traffic

    def _set_broker(self, event) -> None:
        error = self.feed.set_bootstrap(event.new)
        self.broker_msg.object = f"**{error}**" if error else "Reconnecting..."

    def _resize(self, _event) -> None:
        self.traffic.resize(self.max_events.value, self.max_windows.value)

    # ---- plots ---------------------------------------------------------------------------------
    def _build_plots(self) -> None:
        names = ("events", "anomalies", "anomaly_rate", "aircraft", "mean_velocity", "mean_altitude",
                 "events_per_s", "invalid_rate", "lag")
        titles = ("Events", "Anomalies", "Anomaly rate", "Aircraft now", "Mean velocity (m/s)", "Mean altitude (m)",
                  "Events/s", "Invalid rate", "Pipeline lag (records)")
        formats = ("{value:,.0f}", "{value:,.0f}", "{value:.1%}", "{value:,.0f}", "{value:,.1f}", "{value:,.0f}",
                   "{value:,.1f}", "{value:.1%}", "{value}")
        self.kpis = {n: pn.indicators.Number(name=t, value=0, format=f, font_size="28pt", title_size="10pt",
                                             css_classes=[f"kpi-{n}"])
                     for n, t, f in zip(names, titles, formats, strict=True)}

        cmap = linear_cmap("score", Viridis256, 0, 1)
        self.src = {k: ColumnDataSource(name=k, data=d) for k, d in {
            "aircraft": {c: [] for c in mapview.COLUMNS},
            "density": dict(mapview.EMPTY_DENSITY),
            "trails": dict(xs=[], ys=[]),
            "velocity_timeline": dict(t=[], velocity=[], vmin=[], vmax=[]),
            "altitude_timeline": dict(t=[], altitude=[], events=[]),
            "top_aircraft": dict(name=[], count=[]), "top_countries": dict(name=[], count=[]),
            "phases": dict(name=[], count=[]), "velocity_hist": dict(left=[], right=[], count=[]),
            "compass": dict(start=[], end=[], radius=[], sector=[]), "ground_air": dict(name=[], count=[]),
            "anomaly_scatter": dict(velocity=[], altitude=[], score=[]),
            "climb_scatter": dict(vertical_rate=[], altitude=[], score=[]),
            "window_velocity": dict(t=[], vmin=[], vmean=[], vmax=[]),
            "window_anomalies": dict(t=[], anomalies=[]), "window_groups": dict(name=[], count=[]),
            "completeness": dict(name=[], count=[]), "invalid_reasons": dict(name=[], count=[]),
            "detail": dict(t=[], altitude=[], velocity=[]),
        }.items()}
        s = self.src

        x0, y0 = mercator(-180, -60)
        x1, y1 = mercator(180, 75)
        m = _figure("Live map", height=480, x_range=(x0, x1), y_range=(y0, y1), x_axis_type="mercator",
                    y_axis_type="mercator", match_aspect=True, tools="pan,wheel_zoom,box_zoom,reset,save",
                    output_backend=self.settings.dashboard_render)
        if tiles_reachable(self.settings.map_tiles):
            m.add_tile(WMTSTileSource(url=self.settings.map_tiles))
            self.basemap = "tiles"
        elif (outline := land_outline(str(self.settings.map_outline))) is not None:
            m.patches(outline[0], outline[1], fill_color="#e8e4d8", line_color="#a9a39a", line_width=0.5)
            self.basemap = "outline"
        else:
            self.basemap = "none (run make install for the land outline)"
        # Where more aircraft are in view than markers can tell apart: how many per cell (zero: nothing drawn).
        self.density_colors = LogColorMapper(palette=YlOrRd9[::-1], low=1, high=10, low_color=(0, 0, 0, 0))
        m.image(image="image", x="x", y="y", dw="dw", dh="dh", source=s["density"], color_mapper=self.density_colors,
                global_alpha=0.75, name="density")
        m.multi_line("xs", "ys", source=s["trails"], line_color="#d62728", line_alpha=0.6, line_width=1.5)
        planes = m.scatter("x", "y", source=s["aircraft"], marker="triangle", size=11, angle="angle",
                           fill_color=cmap, line_color="ring", line_width="ring_width", name="aircraft_markers")
        m.add_tools(HoverTool(renderers=[planes], tooltips=[
            ("callsign", "@callsign"), ("icao24", "@icao24"), ("country", "@country"), ("altitude", "@altitude{0,0} m"),
            ("speed", "@velocity{0.0} m/s"), ("phase", "@phase"), ("score", "@score{0.00}"), ("reason", "@reason")]))
        m.add_tools(TapTool(renderers=[planes]))
        s["aircraft"].selected.on_change("indices", self._on_select)
        m.on_event(RangesUpdate, self._on_view)
        self.map = m

        self.velocity_timeline = _figure("Velocity per minute", x_axis_type="datetime")
        self.velocity_timeline.varea("t", "vmin", "vmax", source=s["velocity_timeline"], fill_color="#1f77b4",
                                     fill_alpha=0.2, legend_label="min - max")
        self.velocity_timeline.line("t", "velocity", source=s["velocity_timeline"], color="#1f77b4",
                                    legend_label="mean")
        self.altitude_timeline = _figure("Mean altitude per minute", x_axis_type="datetime")
        self.altitude_timeline.line("t", "altitude", source=s["altitude_timeline"], color="#2ca02c")

        def hbar(title, source, height=320):
            f = _figure(title, y_range=[], height=height, tools="save")
            f.hbar(y="name", right="count", source=source, height=0.7, color="#1f77b4")
            return f

        self.top_aircraft = hbar("Top 15 aircraft by events", s["top_aircraft"], 380)
        self.top_countries = hbar("Top 12 countries", s["top_countries"])
        self.window_groups = hbar("Events per group, newest window", s["window_groups"])
        self.phases = _figure("Flight phases", x_range=list(PHASES), tools="save")
        self.phases.vbar(x="name", top="count", source=s["phases"], width=0.8, color="#2ca02c")
        self.phases.xaxis.major_label_orientation = 0.8
        self.velocity_hist = _figure("Velocity histogram (m/s)", tools="save")
        self.velocity_hist.quad(left="left", right="right", top="count", bottom=0, source=s["velocity_hist"])
        self.compass = _figure("Direction (compass rose)", x_range=(-1.2, 1.2), y_range=(-1.2, 1.2), tools="save",
                               match_aspect=True)
        self.compass.annular_wedge(0, 0, inner_radius=0.05, outer_radius="radius", start_angle="start",
                                   end_angle="end", source=s["compass"], color="#9467bd", alpha=0.8)
        for i, label in enumerate(COMPASS):
            a = math.pi / 2 - i * math.pi / 4
            self.compass.text([1.08 * math.cos(a)], [1.08 * math.sin(a)], text=[label], text_align="center",
                              text_baseline="middle", text_font_size="9pt")
        self.ground_air = _figure("On ground vs in the air", x_range=["on ground", "in the air"], tools="save")
        self.ground_air.vbar(x="name", top="count", source=s["ground_air"], width=0.6, color="#8c564b")
        self.anomaly_scatter = _figure("Anomaly score: velocity vs altitude", x_axis_label="velocity (m/s)",
                                       y_axis_label="altitude (m)", output_backend=self.settings.dashboard_render)
        self.anomaly_scatter.scatter("velocity", "altitude", source=s["anomaly_scatter"], color=cmap, size=5)
        self.climb_scatter = _figure("Climb / descent: vertical rate vs altitude", x_axis_label="vertical rate (m/s)",
                                     y_axis_label="altitude (m)", output_backend=self.settings.dashboard_render)
        self.climb_scatter.scatter("vertical_rate", "altitude", source=s["climb_scatter"], color=cmap, size=5)
        self.climb_scatter.add_layout(Span(location=0, dimension="height", line_dash="dashed", line_color="gray"))
        self.window_velocity = _figure("Velocity per window: min / mean / max", x_axis_type="datetime")
        for col, color in (("vmin", "#1f77b4"), ("vmean", "#2ca02c"), ("vmax", "#d62728")):
            self.window_velocity.line("t", col, source=s["window_velocity"], color=color, legend_label=col[1:])
            self.window_velocity.scatter("t", col, source=s["window_velocity"], color=color, size=5)
        self.window_anomalies = _figure("Anomalies per window", x_axis_type="datetime")
        self.window_anomalies.vbar(x="t", top="anomalies", source=s["window_anomalies"],
                                   width=self.settings.window_s * 800, color="#ff7f0e")
        self.completeness = hbar("Completeness per field", s["completeness"], 280)
        self.completeness.x_range.end = 1
        self.invalid_reasons = hbar("Invalid records by reason", s["invalid_reasons"], 280)
        self.duplicates = pn.pane.Markdown("", css_classes=["duplicates"], sizing_mode="stretch_width")
        self.detail_title = pn.pane.Markdown("*Click an aircraft on the map for its track and alerts.*")
        self.map_caption = pn.pane.Markdown("", css_classes=["map-caption"], sizing_mode="stretch_width")
        self.detail = _figure("Selected aircraft: altitude and speed", x_axis_type="datetime", height=220)
        self.detail.line("t", "altitude", source=s["detail"], color="#1f77b4", legend_label="altitude (m)")
        self.detail.line("t", "velocity", source=s["detail"], color="#d62728", legend_label="speed (m/s)")

        self.alerts = pn.widgets.Tabulator(_frame(ALERT_COLUMNS),
                                           height=260, sizing_mode="stretch_width", show_index=False,
                                           disabled=True, css_classes=["alerts"])
        self.events_table = pn.widgets.Tabulator(_frame(EVENT_COLUMNS), height=320, sizing_mode="stretch_width",
                                                 show_index=False, disabled=True, header_filters=True,
                                                 pagination="local", page_size=50, css_classes=["events-table"])
        self.windows_table = pn.widgets.Tabulator(_frame(WINDOW_COLUMNS), height=320, sizing_mode="stretch_width",
                                                  show_index=False, disabled=True, header_filters=True,
                                                  pagination="local", page_size=50, css_classes=["windows-table"])

    # ---- updates -------------------------------------------------------------------------------
    def _on_select(self, _attr, _old, new) -> None:
        if new and (icao24 := self.markers.icao24_at(new[0])):
            self.selected = icao24
            self.update()

    def _on_view(self, event: RangesUpdate) -> None:
        self.view = mapview.View(event.x0, event.x1, event.y0, event.y1)
        self._update_map(self._traffic(), self._filters())

    def _show_sections(self, event=None) -> None:
        for name, panel in self.section_panels.items():
            panel.visible = name in self.sections.value

    def _schedule(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        if self.auto.value:
            self._callback = pn.state.add_periodic_callback(self._tick, period=self.refresh.value * 1000)

    def _filters(self) -> Filters:
        f = self.filters
        f.country = "" if self.country.value == "(all)" else self.country.value
        f.callsign, f.anomalies_only = self.callsign.value, self.anomalies_only.value
        f.altitude_min, f.altitude_max = self.altitude.value
        f.threshold = self.threshold.value
        return f

    def _points(self, rows: list[dict], f: Filters) -> dict[str, dict]:
        """The point charts' columns for ``rows`` (the buffer's newest events)."""
        climb = [r for r in rows if r["vertical_rate"] is not None]
        return {
            "anomaly_scatter": dict(velocity=[r["velocity"] for r in rows],
                                    altitude=[r["altitude"] or 0.0 for r in rows], score=[r["score"] for r in rows]),
            "climb_scatter": dict(vertical_rate=[r["vertical_rate"] for r in climb],
                                  altitude=[r["altitude"] or 0.0 for r in climb], score=[r["score"] for r in climb]),
        }

    def _update_points(self, rows: list[dict], f: Filters) -> None:
        """Stream only the events that arrived since the last update (rolling over at the buffer size);
        replace the columns only when the filters, threshold, buffer size or traffic (a history moment) changed."""
        t = self._traffic()
        key = (f.country, f.callsign, f.anomalies_only, f.altitude_min, f.altitude_max, f.threshold, t.max_events,
               id(t))
        arrived = t.total_events - self._seen_total
        if key == self._points_key and 0 <= arrived < len(t.events):
            new = f.apply(list(t.events)[len(t.events) - arrived:]) if arrived else []
            if new:
                for name, columns in self._points(new, f).items():
                    self.src[name].stream(columns, rollover=t.max_events)
        else:
            for name, columns in self._points(rows, f).items():
                self.src[name].data = columns
        self._points_key, self._seen_total = key, t.total_events

    def _update_map(self, t: Traffic, f: Filters, tracked: list[dict] | None = None) -> list[dict]:
        """The map's markers (only what changed is sent) and density for the aircraft in view; the rows
        drawn as markers are returned."""
        if tracked is None:
            tracked = [r for r in t.tracked_now() if f.keep(r)]
        x, y = mapview.to_mercator(np.fromiter((r["longitude"] for r in tracked), float, len(tracked)),
                                   np.fromiter((r["latitude"] for r in tracked), float, len(tracked)))
        entries = self.watchlist.entries
        watched = np.fromiter((bool(entries) and finder.watched(r, entries) for r in tracked), bool, len(tracked))
        salient = watched | np.fromiter((f.is_anomaly(r) or bool(r["faults"]) or r["icao24"] == self.selected
                                         for r in tracked), bool, len(tracked))
        if self.follow.value and self.selected:
            at = next((i for i, r in enumerate(tracked) if r["icao24"] == self.selected), None)
            if at is not None:
                self._centre_on(float(x[at]), float(y[at]))
        drawn = mapview.plan(x, y, salient, self.view)

        def ring(r: dict, is_watched: bool) -> tuple[str, float]:
            """The outline: the selected aircraft's blue, a watched one's magenta, thin black otherwise."""
            return ("#0077ff", 3.0) if r["icao24"] == self.selected else ("#d400d4", 2.0) if is_watched \
                else ("black", 0.4)
        wanted = {}
        for i in drawn.markers.tolist():
            r = tracked[i]
            wanted[r["icao24"]] = (float(x[i]), float(y[i]), -math.radians(r["heading"] or 0.0), r["score"],
                                   r["icao24"], r["callsign"], r["country"], r["altitude"], r["velocity"], r["phase"],
                                   model.why(r, f), *ring(r, watched[i]))
        how, columns, streamed = self.markers.update(wanted)
        source = self.src["aircraft"]
        if how == "whole":
            source.data = columns
        else:
            if columns:
                source.patch(columns)
            if streamed:
                source.stream(streamed)
        if drawn.density is not None:
            self.density_colors.high = max(2.0, float(drawn.density.image.max()))
            self.src["density"].data = drawn.density.as_data()
        elif self.src["density"].data["image"]:
            self.src["density"].data = dict(mapview.EMPTY_DENSITY)
        if drawn.density is None:
            self.map_caption.object = f"{drawn.in_view:,} aircraft in view, each drawn."
        else:
            self.map_caption.object = (
                f"{drawn.in_view:,} aircraft in view: {drawn.density.total:,} as density (aircraft per cell), "
                f"{len(wanted):,} flagged or followed as markers. Zoom in to {mapview.MARKERS_MAX:,} or fewer "
                "to see each aircraft.")
        return [tracked[i] for i in drawn.markers.tolist()]

    @staticmethod
    def _covered(summary) -> str:
        """The period a summary covers, in words: its event-time span."""
        if summary.start is None or summary.end is None:
            return "nothing counted yet"
        minutes = max(1, round((summary.end - summary.start) / 60))
        return f"{clock(summary.start)}-{clock(summary.end)} UTC ({minutes:,} min)"

    def _update_charts(self, t: Traffic, f: Filters, rows: list[dict], summary, worker: dict | None,
                       invalid: int, parts: frozenset = frozenset(range(4))) -> None:
        """The charts and tables that change slowly, in four parts: 0 the timelines and the top lists,
        1 the distributions, 2 the windows and the data quality, 3 the buffer's scatter charts and the
        tables. A refresh redraws one part (each every CHARTS_EVERY refreshes), so no refresh redraws them
        all at once; a filter, the period or the mode redraws them all."""
        s = self.src
        if 0 in parts:
            series = summary.series()
            s["velocity_timeline"].data = dict(t=[_ts(m["minute"]) for m in series],
                                               velocity=[m["velocity_mean"] for m in series],
                                               vmin=[m["velocity_min"] for m in series],
                                               vmax=[m["velocity_max"] for m in series])
            s["altitude_timeline"].data = dict(t=[_ts(m["minute"]) for m in series],
                                               altitude=[m["altitude_mean"] for m in series],
                                               events=[m["events"] for m in series])
            top_aircraft = [(f"{(t.aircraft.get(i) or {}).get('callsign') or '?'} ({i})", c)
                            for i, c in model.top_counts(t.totals.per_aircraft, 15)]
            top_countries = model.top_counts(summary.counts("countries"), 12)
            for key, fig, pairs in (("top_aircraft", self.top_aircraft, top_aircraft),
                                    ("top_countries", self.top_countries, top_countries)):
                pairs = pairs[::-1]
                fig.y_range.factors = [p[0] for p in pairs]
                s[key].data = dict(name=[p[0] for p in pairs], count=[p[1] for p in pairs])
            self._title_period((self.velocity_timeline, "Velocity per minute"),
                               (self.altitude_timeline, "Mean altitude per minute"),
                               (self.top_countries, "Top 12 countries by states"))
            first = t.totals.first_read
            since = f"since {clock(first)} UTC" if first is not None else "since the dashboard started"
            self.top_aircraft.title.text = f"Top 15 aircraft by states, {since}"
        if 1 in parts:
            phases = summary.counts("phases")
            s["phases"].data = dict(name=list(PHASES), count=[phases.get(p, 0) for p in PHASES])
            s["velocity_hist"].data = dict(left=[i * 11 for i in range(30)], right=[(i + 1) * 11 for i in range(30)],
                                           count=summary.velocity_hist())
            compass = summary.compass()
            biggest = max(compass.values()) or 1
            s["compass"].data = dict(
                start=[math.pi / 2 - i * math.pi / 4 - math.pi / 8 for i in range(8)],
                end=[math.pi / 2 - i * math.pi / 4 + math.pi / 8 for i in range(8)],
                radius=[0.05 + 0.95 * compass[c] / biggest for c in COMPASS], sector=list(COMPASS))
            ground = summary.on_ground()
            s["ground_air"].data = dict(name=["on ground", "in the air"], count=[ground, summary.events - ground])
            self._title_period((self.phases, "Flight phases"), (self.velocity_hist, "Velocity histogram (m/s)"),
                               (self.compass, "Direction (compass rose)"), (self.ground_air, "On ground vs in the air"))
        if 2 in parts:
            self.window_dimension.options = model.dimensions_seen(t) or ["country"]
            dimension = self.window_dimension.value
            series = model.window_series(t, dimension, f.country or None if dimension == "country" else None)
            newest, groups = model.newest_window_groups(t, dimension, 12)
            self.window_groups.y_range.factors = [name for name, _ in groups[::-1]]
            s["window_groups"].data = dict(name=[name for name, _ in groups[::-1]], count=[n for _, n in groups[::-1]])
            # the title last: when it says the dimension, the bars are there
            self.window_groups.title.text = (f"Events per {dimension}, window from {clock(newest)}"
                                             if newest is not None else "Events per group, newest window")
            s["window_velocity"].data = dict(t=[_ts(w["window_start"]) for w in series],
                                             vmin=[w["velocity_min"] for w in series],
                                             vmean=[w["velocity_mean"] for w in series],
                                             vmax=[w["velocity_max"] for w in series])
            s["window_anomalies"].data = dict(t=[_ts(w["window_start"]) for w in series],
                                              anomalies=[w["anomalies"] for w in series])
            comp = model.completeness(rows)
            self.completeness.y_range.factors = list(comp)
            s["completeness"].data = dict(name=list(comp), count=list(comp.values()))
            self.completeness.title.text = f"Completeness per field, newest {len(rows):,} events held"
            reasons = sorted(t.invalid_by_reason.items(), key=lambda kv: kv[1])
            self.invalid_reasons.y_range.factors = [r for r, _ in reasons]
            s["invalid_reasons"].data = dict(name=[r for r, _ in reasons], count=[n for _, n in reasons])
            duplicates = f"{worker['duplicates_dropped']:,}" if worker else "unknown (worker not answering)"
            self.duplicates.object = (f"**Duplicates dropped:** {duplicates} &middot; **invalid records:** {invalid:,} "
                                      f"&middot; **late events** (in windows seen): "
                                      f"{sum(w.get('late_events', 0) for w in t.windows.values()):,}")
        if 3 in parts:
            self._update_points(rows, f)
            for fig, title in ((self.anomaly_scatter, "Anomaly score: velocity vs altitude"),
                               (self.climb_scatter, "Climb / descent: vertical rate vs altitude")):
                fig.title.text = f"{title}, newest {len(rows):,} events held"

            self.events_table.value = _frame(EVENT_COLUMNS, [{
                "time": clock(r["event_time"]), "icao24": r["icao24"], "callsign": r["callsign"],
                "country": r["country"], "altitude": r["altitude"], "velocity": r["velocity"], "phase": r["phase"],
                "score": round(r["score"], 3), "squawk": r["squawk"]} for r in rows[-TABLE_EVENTS:][::-1]])
            newest_window = (len(t.windows), max((w.get("emitted_at") or 0 for w in t.windows.values()), default=0),
                             id(t))
            if newest_window != self._windows_shown:  # a table redrawn costs the browser: only when a record came
                self._windows_shown = newest_window
                self.windows_table.value = _frame(WINDOW_COLUMNS, [{**{k: w.get(k) for k in WINDOW_COLUMNS},
                                                                    "window_start": clock(w["window_start"])}
                                                                   for w in list(t.windows.values())[::-1]])

    def _title_period(self, *charts: tuple) -> None:
        """Each (figure, title) titled with the period its chart covers (a changing title re-lays the
        chart out: only the period changes it)."""
        for fig, title in charts:
            fig.title.text = f"{title}, {self.period.value}"

    def update(self, parts: frozenset = frozenset(range(4))) -> None:
        t = self._traffic()
        f = self._filters()
        rows = f.apply(list(t.events))
        everyone = t.tracked_now()
        tracked = [r for r in everyone if f.keep(r)]
        if not self.history_mode:
            self._tell_watchers(everyone)
        invalid = sum(t.invalid_by_reason.values())
        status = self.feed.status()
        worker = status["worker"]
        summary = t.totals.period(PERIODS[self.period.value], f.threshold)
        k = {**summary.kpis(), "aircraft": len(tracked), "lag": worker["lag"] if worker else None,
             "invalid_rate": invalid / (invalid + t.totals.period(None, f.threshold).events or 1)}
        covered = self._covered(summary)
        self.period_caption.object = (
            f"**KPIs, timelines and distributions: all traffic, {covered}** (event time; each state once). "
            f"Filters apply to the map, the scatter charts and the tables; those show the newest "
            f"{len(t.events):,} events the dashboard holds.")
        for name, indicator in self.kpis.items():
            indicator.value = 0 if k[name] is None else k[name]
        age = f"{time.time() - status['last_message_at']:.0f} s ago" if status["last_message_at"] else "none yet"
        if self.history_mode:
            shown = (f"{clock(self.moment)} UTC, {len(t.aircraft):,} aircraft in the 5 minutes before it"
                     if self.playback.loaded else "no range loaded")
            self.status.object = (f'<span class="history" style="color:#1f4e79">&#9679; History</span>: {shown}'
                                  f'{" &middot; playing at " + self.h_speed.value if self.h_play.value else ""}')
        elif status["online"]:
            self.status.object = (f'<span class="online" style="color:#2ca02c">&#9679; Online</span> '
                                  f'({status["bootstrap"]}) &middot; newest record received {age}')
        else:
            self.status.object = (f'<span class="offline" style="color:#d62728">&#9679; Offline</span>: '
                                  f'{status["error"] or "connecting"} &middot; retrying by itself')
        countries = sorted({r["country"] for r in t.aircraft.values() if r["country"]})
        self.country.options = ["(all)", *countries]

        s = self.src
        a = self._update_map(t, f, tracked)
        trail_ids = [r["icao24"] for r in a if f.is_anomaly(r) or r["icao24"] == self.selected]
        trails = [[mercator(lon, lat) for lon, lat in t.trails.get(i, ())] for i in trail_ids]
        s["trails"].data = dict(xs=[[p[0] for p in tr] for tr in trails], ys=[[p[1] for p in tr] for tr in trails])

        if parts:
            self._update_charts(t, f, rows, summary, worker, invalid, parts)
        flagged = model.alerts(rows, f)
        shown_alerts = [(r["icao24"], r["event_time"], model.why(r, f)) for r in flagged]
        if shown_alerts != self._alerts_shown:  # the table redrawn only when what it lists changed
            self._alerts_shown = shown_alerts
            self.alerts.value = _frame(ALERT_COLUMNS, [{
                "time": clock(r["event_time"]), "icao24": r["icao24"], "callsign": r["callsign"],
                "score": round(r["score"], 3), "why": model.why(r, f)} for r in flagged])
        if self.selected:
            if self.history_mode:  # the whole loaded range's track, not just the moment's buffer
                track = [model.flatten(r) for r in self.playback.track(self.selected)]
                whole = [mercator(r["longitude"], r["latitude"]) for r in track if r["longitude"] is not None]
                s["trails"].data = dict(xs=[*s["trails"].data["xs"], [p[0] for p in whole]],
                                        ys=[*s["trails"].data["ys"], [p[1] for p in whole]])
            else:  # its states since it was selected (the buffer holds seconds of traffic at the peak)
                track = self._followed_track(t)
            s["detail"].data = dict(t=[_ts(r["event_time"]) for r in track],
                                    altitude=[r["altitude"] or 0 for r in track],
                                    velocity=[r["velocity"] for r in track])
            latest = t.aircraft.get(self.selected)
            alerts = "; ".join(latest["alerts"]) if latest and latest["alerts"] else "none"
            faults = "; ".join(latest["faults"]) if latest and latest["faults"] else "none"
            if self.history_mode:
                flagged = sorted({a for r in track for a in r["alerts"]} | {x for r in track for x in r["faults"]})
                name = next((r["callsign"] for r in track if r["callsign"]), "") or self.selected
                self.detail_title.object = (f"**{name.strip()}** ({self.selected}): {len(track)} states in the range, "
                                            f"flags: {'; '.join(flagged) or 'none'}")
            else:
                state = (f"{latest['phase']}, {latest['altitude'] or 0:,.0f} m, {latest['velocity'] or 0:.0f} m/s, "
                         f"score {latest['score']:.2f}, " if latest else "not in the traffic now, ")
                self.detail_title.object = (f"**{(latest or {}).get('callsign') or self.selected}** "
                                            f"({self.selected}){' (followed)' if self.follow.value else ''}: "
                                            f"{state}{len(track)} states since selected, alerts: {alerts}, "
                                            f"data faults: {faults}")

    # ---- layout --------------------------------------------------------------------------------
    def layout(self) -> pn.template.BootstrapTemplate:
        self.section_panels = {
            "Map": pn.Column(self.map, self.map_caption, self.detail_title, self.detail, sizing_mode="stretch_width"),
            "Timelines": pn.Row(self.velocity_timeline, self.altitude_timeline, sizing_mode="stretch_width"),
            "Distributions": pn.Column(
                pn.Row(self.top_aircraft, self.top_countries, sizing_mode="stretch_width"),
                pn.Row(self.phases, self.velocity_hist, self.compass, self.ground_air, sizing_mode="stretch_width"),
                sizing_mode="stretch_width"),
            "Anomalies": pn.Column(pn.pane.Markdown("### Alerts: emergency squawks and top anomalies, newest first"),
                                   self.alerts, pn.Row(self.anomaly_scatter, self.climb_scatter,
                                                       sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            "Windows": pn.Column(self.window_dimension,
                                 pn.Row(self.window_velocity, self.window_anomalies, self.window_groups,
                                        sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            "Data quality": pn.Column(pn.Row(self.completeness, self.invalid_reasons, sizing_mode="stretch_width"),
                                      self.duplicates, sizing_mode="stretch_width"),
            "Raw data": pn.Column(pn.pane.Markdown(f"### Newest {TABLE_EVENTS} processed events (of those held)"),
                                  self.events_table,
                                  pn.pane.Markdown("### Last windows"), self.windows_table,
                                  sizing_mode="stretch_width"),
        }
        find = pn.Column(pn.pane.Markdown("**Find and watch**"), self.find, self.suggestions, self.follow,
                         self.watch_add, self.watch, self.watch_msg, self.store)
        sidebar = [self.mode, self.history_controls, find, self.period, self.refresh, self.auto, self.broker,
                   self.broker_msg, self.max_events, self.max_windows, pn.pane.Markdown("**Filters**"), self.country,
                   self.callsign, self.anomalies_only, self.altitude, self.threshold,
                   pn.pane.Markdown("**Sections**"), self.sections,
                   pn.pane.Markdown(f"<small>Map: {self.basemap}</small>")]
        kpis = pn.FlexBox(*self.kpis.values(), sizing_mode="stretch_width")
        template = pn.template.BootstrapTemplate(title="flights-app: live air traffic", sidebar=sidebar,
                                                main=[self.status, self.period_caption, kpis,
                                                      *self.section_panels.values()],
                                                 header_background="#1f4e79")
        self._schedule()
        return template


def create() -> pn.template.BootstrapTemplate:
    pn.config.notifications = True  # a watched aircraft that appears or raises an alert is told in a toast
    return Dashboard().layout()


if __name__.startswith("bokeh"):  # `panel serve web/dashboard/app.py`
    create().servable()
