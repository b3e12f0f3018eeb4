"""Deduplicated window statistics on the embedded Kafka, checked against counts made from the recording."""

from __future__ import annotations

import collections
import urllib.error
import urllib.parse

import pytest

from flights_app.fake_opensky.recordings import load_recording
from flights_app.topic_names import AGGREGATED
from tests.harness import FakeOpenSky, TestApp, http_json, read_topic, topic_size, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.recordings]

WINDOW_S, GRACE_S = 600, 60


def expected_counts(recording) -> tuple[dict[tuple[str, int], int], int]:
    """Distinct (icao24, time_position or last_contact) per (country, window), straight from the files;
    and the latest event time (the watermark the replay ends on)."""
    distinct = set()
    for poll in load_recording(recording):
        for row in poll.states or []:
            event_time = row[3] if row[3] is not None else row[4]
            distinct.add((row[2], row[0], event_time))
    counts = collections.Counter((country, int(t // WINDOW_S) * WINDOW_S) for country, _, t in distinct)
    return dict(counts), max(t for _, _, t in distinct)


def latest_records(app: TestApp) -> tuple[dict, list]:
    records = [v for _, v in read_topic(app.bootstrap, app.topic(AGGREGATED))]
    latest = {}
    for r in sorted(records, key=lambda r: r["emitted_at"]):
        if r["dimension"] == "country":
            latest[(r["name"], r["window_start"])] = r
    return latest, records


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
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.05",
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
    body = http_json(f"http://127.0.0.1:{worker.web_port}/stats/countries/{urllib.parse.quote(country)}/")
    assert {w["window_start"]: w["events"] for w in body["windows"]} == {
        t: n for (c, t), n in expected.items() if c == country}
    listing = http_json(f"http://127.0.0.1:{worker.web_port}/stats/countries/")
    assert {r["name"]: r["events"] for r in listing["countries"]} == {
        c: n for (c, t), n in expected.items() if t == listing["window_start"]}
    with pytest.raises(urllib.error.HTTPError) as missing:
        http_json(f"http://127.0.0.1:{worker.web_port}/stats/countries/Atlantis/")
    assert missing.value.code == 404


def produce_recording(bootstrap: str, topic: str, recording) -> int:
    """Every valid state of the recording onto ``topic``, as the source agent publishes them."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from flights_app.records import StateVector
    from flights_app.validation import validate_state

    async def send() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        await producer.start()
        sent = 0
        try:
            for poll in load_recording(recording):
                for row in poll.states or []:
                    state = validate_state(row, poll.time, ingest_time=float(poll.time), poll_id=poll.name)
                    if isinstance(state, StateVector):
                        await producer.send(topic, key=state.icao24.encode(), value=state.dumps())
                        sent += 1
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    return asyncio.run(send())


@pytest.mark.parametrize("recording_name, states, distinct, kill_after", [
    pytest.param("opensky_dulles_2023-03-14_450polls.zip", 4237, 2124, (1500,), id="dulles-one-kill"),
    pytest.param("opensky_dcmetro_2023-03-18_900polls.zip", 57756, 18844, (12000, 30000),
                 id="dcmetro-two-kills", marks=pytest.mark.soak),
])
def test_exact_totals_after_kill_9_mid_stream(kafka, tmp_path, cleanup, shared_data, recording_name, states,
                                              distinct, kill_after):
    """At least once in, exactly once in the totals: kill -9 the worker while it works through a
    recording, restart it each time, and the per-country window totals still equal the distinct
    counts made from the recording."""
    recording = shared_data / recording_name
    expected, _ = expected_counts(recording)
    assert sum(expected.values()) == distinct
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_WINDOW=str(WINDOW_S), FLIGHTS_WINDOW_GRACE="3600", FLIGHTS_AGGREGATE_FLUSH="0.5")
    cleanup.append(app)
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or "Scoring with model" in worker.log_text(), 90, "the worker to start")
    assert produce_recording(app.bootstrap, app.topic("flight-raw-data"), recording) == states
    processed = app.topic("flight-processed-data")

    for kill_at in kill_after:
        wait_until(lambda n=kill_at: app.check_workers() or topic_size(app.bootstrap, processed) >= n,
                   240, f"{kill_at} processed states", interval_s=0.2)
        assert topic_size(app.bootstrap, processed) < states, "finished before the kill: not a mid-stream crash"
        worker.kill()
        worker = app.start_worker()

    wait_for_totals(app, expected, 300, "exact totals after the crashes")
    assert topic_size(app.bootstrap, processed) >= states  # at least once: a replay may score a state twice
