"""Deduplicated window statistics on the embedded Kafka, checked against counts made from the recording."""

from __future__ import annotations

import asyncio
import collections
import urllib.error
import urllib.parse
import urllib.request

import pytest

from flights_app.topic_names import WINDOW_PARTIALS
from tests.diagnosis import where_counts_went_missing
from tests.harness import (
    FakeOpenSky,
    TestApp,
    http_get,
    http_json,
    wait_until,
)
from tests.monitoring import missing_from
from tests.replay import (
    WINDOW_S,
    expected_counts,
    expected_per_aircraft,
    latest_records,
    newest_states,
)

pytestmark = [pytest.mark.kafka, pytest.mark.recordings]

GRACE_S = 60


def wait_for_totals(app: TestApp, expected: dict, timeout_s: float, what: str) -> None:
    """Wait until the newest aggregated record of every (country, window) carries the expected count."""
    def totals_match():
        app.check_workers()
        latest, _ = latest_records(app)
        return {k: r["events"] for k, r in latest.items()} == expected

    wait_until(totals_match, timeout_s, what, interval_s=1)


def test_replayed_recording_gives_exact_distinct_counts_per_country_and_window(kafka, tmp_path, cleanup, shared_data):
    recording = shared_data / "opensky_dulles_2023-03-14_450polls.zip"
    expected, last_event_time = expected_counts(recording)
    assert sum(expected.values()) == 2124  # of 4,237 rows: OpenSky repeats snapshots
    fake = FakeOpenSky(tmp_path, "--replay", str(recording), "--pace", "request")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.01",
                  FLIGHTS_WINDOW=str(WINDOW_S), FLIGHTS_WINDOW_GRACE=str(GRACE_S), FLIGHTS_AGGREGATE_FLUSH="0.5")
    cleanup.append(app)
    worker = app.start_worker()

    wait_for_totals(app, expected, 180, "the aggregated counts to equal the recording's distinct counts")

    latest, records = latest_records(app)
    closed = {k for k in expected if k[1] + WINDOW_S + GRACE_S <= last_event_time}
    assert closed  # the recording spans 18 minutes: its first window closes
    wait_until(lambda: {(r["name"], r["window_start"]) for r in latest_records(app)[1] if r["final"]} >= closed,
               30, "a final record for every closed window")
    finals = collections.Counter((r["name"], r["window_start"]) for r in records
                                 if r["dimension"] == "country" and r["final"])
    for key in closed:
        assert finals[key] == 1, key
    for r in records:
        if r["final"] and r["dimension"] == "country":
            assert r["events"] == expected[(r["name"], r["window_start"])]
    assert all(v == 1 for v in finals.values())

    counters = http_json(f"http://127.0.0.1:{worker.web_port}/stats/windows/")
    assert counters["duplicates_dropped"] == 4237 - 2124
    country = "United States"
    # What a failing totals test reports (tests.diagnosis) reads the same figures from the changelogs.
    windows = {("country", country, t): n for (c, t), n in expected.items() if c == country}
    report = asyncio.run(where_counts_went_missing(app.bootstrap, app.env["FLIGHTS_APP_ID"], windows,
                                                   expected_per_aircraft(recording)))
    assert {tuple(r["window"]): (r["sent"], r["group_stage_holds"], r["aircraft_stage_holds"], r["aircraft_short"])
            for r in report} == {window: (n, n, n, []) for window, n in windows.items()}
    # One aircraft claimed a state more than it has, as a failing test would see a short window: the
    # report says the largest partial of it on flight-window-partials, where, and the group's commits.
    claimed = expected_per_aircraft(recording)
    window = min(windows)
    one = min(k for k in claimed if k[:3] == window)
    claimed[one] += 1
    (row,) = asyncio.run(where_counts_went_missing(app.bootstrap, app.env["FLIGHTS_APP_ID"], {window: windows[window]},
                                                    claimed, partials_topic=app.topic(WINDOW_PARTIALS)))
    (short,) = row["aircraft_short"]
    assert short["icao24"] == one[3] and short["largest_partial_on_topic"][0] == claimed[one] - 1
    assert set(row["partials_committed"]) == set(range(app.partitions))
    assert all(isinstance(offset, int) and offset > 0 for offset in row["partials_committed"].values())
    body = http_json(f"http://127.0.0.1:{worker.web_port}/stats/countries/{urllib.parse.quote(country)}/")
    assert {w["window_start"]: w["events"] for w in body["windows"]} == {
        t: n for (c, t), n in expected.items() if c == country}
    listing = http_json(f"http://127.0.0.1:{worker.web_port}/stats/countries/")
    assert {r["name"]: r["events"] for r in listing["countries"]} == {
        c: n for (c, t), n in expected.items() if t == listing["window_start"]}
    with pytest.raises(urllib.error.HTTPError) as missing:
        http_json(f"http://127.0.0.1:{worker.web_port}/stats/countries/Atlantis/")
    assert missing.value.code == 404
    check_worker_endpoints(f"http://127.0.0.1:{worker.web_port}", recording, counters)


def check_worker_endpoints(base: str, recording, counters: dict) -> None:
    """/health, /metrics, /aircraft/, Faust's /table/ views and their errors, on a worker that has
    worked through ``recording``."""
    status, _, health = http_get(f"{base}/health")
    assert status == 200 and health["status"] == "ok", health
    assert health["broker"]["connected"] and health["recovery_done"] and health["model_loaded"]
    wait_until(lambda: http_get(f"{base}/health")[2]["lag"]["total"] == 0, 30, "the consumer lag to reach 0")

    def metric_samples() -> dict[str, float]:
        status, ctype, metrics = http_get(f"{base}/metrics")
        assert status == 200 and ctype == "text/plain", ctype
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines() if line and not line.startswith("#")}

    # The commit watchdog reads every assigned partition's position every 10 s.
    samples = wait_until(lambda: (s := metric_samples())["flights_commit_checks_total"] > 0 and s, 30,
                         "the commit watchdog's first check")
    assert samples["flights_duplicates_dropped_total"] == counters["duplicates_dropped"]
    assert samples["flights_window_states_total"] == 4237
    assert samples["flights_scored_states_total"] >= 4237
    assert samples["flights_source_valid_total"] == 4237
    assert any(k.startswith("flights_consumer_lag{") for k in samples)
    assert any(k.startswith("faust_messages_received_per_topic") for k in samples)  # Faust's own sensor
    assert any(k.startswith("flights_scorer_batch_size_count") for k in samples)
    # Every metric the Grafana dashboard and the Prometheus alert rules name (monitoring/) is declared here.
    page = http_get(f"{base}/metrics")[2]
    assert not missing_from(page), f"named in monitoring/ but not on /metrics: {missing_from(page)}"
    assert samples["process_resident_memory_bytes"] > 50e6 and samples["flights_model_refused"] == 0

    newest = newest_states(recording)
    for icao24 in sorted(newest)[:5]:
        status, _, body = http_get(f"{base}/aircraft/{icao24}/")
        assert status == 200, body
        assert body["state"]["event_time"] == newest[icao24]["event_time"]
        assert body["state"]["origin_country"] == newest[icao24]["origin_country"]
        assert 0 <= body["ml_anomaly_score"] <= 1 and body["flight_phase"]
        status, _, value = http_get(f"{base}/table/aircraft/{icao24}/")  # Faust's own view
        # The table keeps the record as flight-processed-data carries it; the endpoint adds its event time.
        assert status == 200 and {**value["last"]["state"], "event_time": newest[icao24]["event_time"]} == body["state"]
    status, _, tables = http_get(f"{base}/table/")
    assert {"aircraft", "group-windows"} <= {t["name"] for t in tables}
    for path, code in [("/aircraft/abcdef/", 404), ("/aircraft/xyz/", 400), ("/table/nope/", 404),
                       ("/table/aircraft/abcdef/", 404), ("/stats/countries/?window=soon", 400)]:
        status, ctype, body = http_get(base + path)
        assert (status, ctype) == (code, "application/json"), (path, status, body)
    assert http_get(f"{base}/no/such/path")[0] == 404
    # Any text in any parameter: an answer or a clear refusal, never a server error.
    nasty = ["", " ", "%00", "..", "../../etc/passwd", "A0B1C2", "a0b1c2 ", "ünïcødé", "'; DROP TABLE x;--",
             "<script>", "9" * 5000, "-1", "1e9", "%F0%9F%9B%AB", "a" * 300, "%2F%2F", "null", "[]", "{}"]
    for text in map(lambda t: urllib.parse.quote(t, safe="%"), nasty):
        for path in (f"/aircraft/{text}/", f"/stats/countries/{text}/", f"/stats/countries/?window={text}",
                     f"/stats/airlines/?window={text}&scope={text}", f"/table/aircraft/{text}/"):
            status, _, body = http_get(base + path)
            assert status in (200, 400, 404), (path, status, body)
    # Read-only: nothing changes state over GET, and the model reload is off unless enabled.
    request = urllib.request.Request(f"{base}/model/reload", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_flights_climbing_and_descending_through_the_bands_give_exact_altitude_band_totals(
        kafka, tmp_path, cleanup, shared_data):
    """The legitimate-but-strange flights (calibration patterns, go-arounds, a parabolic flight) replayed
    through a worker: each state counts in the altitude band it was in (a per-state dimension), beside the
    per-country and per-airline totals, all equal to what the recording says."""
    from flights_app.topic_names import RAW
    from tests.replay import expected_totals, produce_recording, wait_for_exact_totals

    recording = shared_data / "real_unusual_flights_5s.zip"
    expected = expected_totals(recording)
    bands = {name for dimension, name, _ in expected if dimension == "altitude"}
    assert bands == {"below 3000 m", "3000-6000 m", "6000-9000 m", "above 9000 m"}  # (airborne trajectories)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_WINDOW=str(WINDOW_S), FLIGHTS_WINDOW_GRACE="3600", FLIGHTS_AGGREGATE_FLUSH="0.5")
    cleanup.append(app)
    app.start_worker()
    produce_recording(app.bootstrap, app.topic(RAW), recording)
    wait_for_exact_totals(app, expected, 300, "the totals of every country, airline and altitude band", recording)
