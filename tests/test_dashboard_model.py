"""The dashboard's buffers and chart figures, from records shaped like the output topics'."""

import pytest

from web.dashboard.model import (
    Filters,
    Traffic,
    alerts,
    completeness,
    dimensions_seen,
    flatten,
    newest_window_groups,
    top_counts,
    valid_bootstrap,
    window_series,
)
from web.dashboard.totals import COMPASS, FeedTotals, compass_sector


def scored(icao24="a0b1c2", t=1000, *, country="Germany", callsign="DLH4AB", velocity=200.0, altitude=10000.0,
           heading=90.0, score=0.3, alerts_=(), squawk=None, phase="cruise", processed=None):
    return {"state": {"icao24": icao24, "callsign": callsign, "origin_country": country, "time_position": t,
                      "last_contact": t, "longitude": 8.0 + t / 1e4, "latitude": 50.0, "baro_altitude": altitude,
                      "geo_altitude": None, "on_ground": altitude is None, "velocity": velocity,
                      "true_track": heading, "vertical_rate": 0.0, "squawk": squawk},
            "flight_phase": phase, "ml_anomaly_score": score, "ml_is_anomaly": score > 0.6,
            "anomaly_reason": None, "alerts": list(alerts_), "processed_time": processed or t + 0.5}


@pytest.mark.parametrize("heading, sector", [
    (0, "N"), (22.4, "N"), (22.5, "NE"), (90, "E"), (180, "S"), (270, "W"), (337.4, "NW"), (337.5, "N"),
    (359.9, "N"), (None, None), (float("nan"), None)])
def test_compass_sectors_are_45_degrees_centred_on_the_points(heading, sector):
    assert compass_sector(heading) == sector


def test_buffers_are_bounded_and_keep_the_newest():
    traffic = Traffic(max_events=10, max_aircraft=3, trail_length=4, max_windows=2)
    for i in range(50):
        traffic.add_processed(scored(icao24=f"{i % 5:06x}", t=1000 + i))
    assert len(traffic.events) == 10 and traffic.total_events == 50
    assert list(traffic.aircraft) == ["000002", "000003", "000004"]  # least recently seen evicted
    assert set(traffic.trails) == set(traffic.aircraft) and all(len(t) <= 4 for t in traffic.trails.values())
    traffic.add_processed(scored(icao24="000004", t=10))  # an older state (a replay) does not move it back
    assert traffic.aircraft["000004"]["event_time"] == 1049
    for start in (0, 600, 1200):
        traffic.add_window({"dimension": "country", "name": "X", "window_start": start, "events": 1})
    assert [k[2] for k in traffic.windows] == [600, 1200]


def test_filters_and_the_threshold_reclassify_live():
    rows = [Traffic().add_processed(scored(icao24="aaaaaa", score=0.5, country="France", callsign="AFR12")),
            Traffic().add_processed(scored(icao24="bbbbbb", score=0.7)),
            Traffic().add_processed(scored(icao24="cccccc", score=0.1, alerts_=["emergency squawk 7700"],
                                           squawk="7700", altitude=None))]
    f = Filters(threshold=0.6)
    assert [r["icao24"] for r in rows if f.is_anomaly(r)] == ["bbbbbb", "cccccc"]
    f.threshold = 0.4
    assert [r["icao24"] for r in rows if f.is_anomaly(r)] == ["aaaaaa", "bbbbbb", "cccccc"]
    assert [r["icao24"] for r in Filters(country="France").apply(rows)] == ["aaaaaa"]
    assert [r["icao24"] for r in Filters(callsign="afr").apply(rows)] == ["aaaaaa"]
    assert [r["icao24"] for r in Filters(anomalies_only=True).apply(rows)] == ["bbbbbb", "cccccc"]
    assert [r["icao24"] for r in Filters(altitude_min=5000).apply(rows)] == ["aaaaaa", "bbbbbb"]
    assert [r["icao24"] for r in alerts(rows, Filters(threshold=0.6))] == ["cccccc", "bbbbbb"]  # rules first
    assert [r["icao24"] for r in alerts(rows + rows, Filters(threshold=0.6))] == ["cccccc", "bbbbbb"]  # once each


def test_kpis_and_charts_count_every_distinct_state_read_not_a_buffer():
    traffic = Traffic(max_events=3)  # a buffer far smaller than the traffic: the totals do not depend on it
    rows = [traffic.add_processed(scored(icao24=f"{i % 3:06x}", t=1000 + i, velocity=100.0 + i, heading=i * 45.0,
                                         score=0.9 if i == 0 else 0.1, processed=2000 + i)) for i in range(8)]
    traffic.add_processed(scored(icao24="000000", t=1000, velocity=100.0, heading=0.0, score=0.9))  # a repeat
    summary = traffic.totals.period(3600, threshold=0.6)
    k = summary.kpis()
    assert (k["events"], k["anomalies"], k["model_anomalies"], traffic.totals.repeats) == (8, 1, 1, 1)
    assert k["anomaly_rate"] == pytest.approx(1 / 8) and k["mean_velocity"] == pytest.approx(103.5)
    assert k["events_per_s"] == pytest.approx(8 / 7)  # 8 states over 7 s of event time
    assert summary.kpis()["mean_altitude"] == pytest.approx(10000.0)
    assert traffic.totals.period(3600, threshold=0.05).kpis()["anomalies"] == 8  # the threshold stays live
    assert top_counts(traffic.totals.per_aircraft, 2) == [("000000", 3), ("000001", 3)]
    assert summary.compass() == {s: 1 for s in COMPASS}
    assert summary.velocity_hist()[9] == 8  # 100-107 m/s: the 10th bin of 11 m/s
    assert summary.counts("phases") == {"cruise": 8} and summary.counts("countries") == {"Germany": 8}
    assert [m["events"] for m in summary.series()] == [8] and summary.series()[0]["minute"] == 960
    assert completeness(rows)["callsign"] == 1.0 and completeness(rows)["geo_altitude"] == 0.0


def test_a_period_is_the_sum_of_its_minutes_and_old_minutes_are_let_go():
    totals = FeedTotals(keep_minutes=10)
    for minute in range(30):
        for k in range(minute % 4 + 1):
            totals.add(flatten(scored(icao24=f"{k:06x}", t=minute * 60 + k)))
    assert totals.between(20 * 60, 30 * 60, 0.6).events == sum(m % 4 + 1 for m in range(20, 30))
    assert totals.period(5 * 60, 0.6).events == sum(m % 4 + 1 for m in range(25, 30))
    assert min(totals.minutes) >= (29 - 10) * 60 and len(totals.minutes) <= 11
    assert FeedTotals().period(600, 0.6).start is None


def test_window_series_sums_names_per_window():
    traffic = Traffic()
    for name, events, vmin, vmean, vmax in [("A", 2, 10.0, 20.0, 30.0), ("B", 6, 5.0, 40.0, 90.0)]:
        traffic.add_window({"dimension": "country", "name": name, "window_start": 600, "events": events,
                            "anomalies": 1, "velocity_min": vmin, "velocity_mean": vmean, "velocity_max": vmax,
                            "final": True})
    [w] = window_series(traffic)
    assert (w["events"], w["anomalies"], w["velocity_min"], w["velocity_max"]) == (8, 2, 5.0, 90.0)
    assert w["velocity_mean"] == pytest.approx((2 * 20 + 6 * 40) / 8) and w["final"]


@pytest.mark.parametrize("text, ok", [
    ("127.0.0.1:9092", True), ("kafka-1:9092,kafka-2:9093", True), ("localhost:9092, h:1", True),
    ("", False), ("localhost", False), ("h:0", False), ("h:70000", False), ("h:9092;rm -rf /", False),
    ("http://h:9092", False)])
def test_the_broker_field_accepts_only_host_port_lists(text, ok):
    assert valid_bootstrap(text) is ok


def test_a_table_shows_times_of_today_as_a_clock_and_older_ones_with_their_date():
    from web.dashboard.app import clock

    now = 1_796_130_000  # 2026-12-01 13:00 UTC
    assert clock(now - 600, now) == "12:50:00"
    assert clock(1_678_803_600, now) == "2023-03-14 14:20:00"
    assert clock(now - 14 * 3600, now) == "2026-11-30 23:00:00"  # yesterday, though under a day ago


def test_the_window_view_takes_any_dimension_and_lists_its_newest_window_biggest_first():
    traffic = Traffic()
    for dimension, name, start, events in [("airline", "DLH", 600, 9), ("country", "X", 600, 1),
                                           ("airline", "AFR", 1200, 3), ("airline", "DLH", 1200, 5),
                                           ("airline", "BAW", 1200, 5), ("category", "Heavy", 1200, 2)]:
        traffic.add_window({"dimension": dimension, "name": name, "window_start": start, "events": events})
    assert dimensions_seen(traffic) == ["country", "airline", "category"]
    assert newest_window_groups(traffic, "airline", 2) == (1200, [("BAW", 5), ("DLH", 5)])
    assert newest_window_groups(traffic, "category", 12) == (1200, [("Heavy", 2)])
    assert newest_window_groups(traffic, "runway", 12) == (None, [])


def test_a_state_repeated_minutes_later_is_still_a_repeat_within_the_horizon():
    """A stale position re-reported 4 minutes later is the same state (the worker's windows count it
    once); a time older than the horizon before the newest cannot be told apart and counts."""
    from web.dashboard.totals import DEDUP_HORIZON_S

    traffic = Traffic()
    for t in range(1000, 1300, 10):
        traffic.add_processed(scored(icao24="abcdef", t=t))
    assert not traffic.totals.add(traffic.events[3])  # 1030, 27 states back
    assert traffic.totals.add({**traffic.events[0], "event_time": 990})  # earlier, not seen: counted
    assert not traffic.totals.add({**traffic.events[0], "event_time": 990})
    late = 1290 + DEDUP_HORIZON_S + 5  # the newest moves on past the horizon: 990 let go
    assert traffic.totals.add({**traffic.events[0], "event_time": late})
    assert traffic.totals.add({**traffic.events[0], "event_time": 990})  # beyond the horizon: counted
    assert traffic.totals.repeats == 2
