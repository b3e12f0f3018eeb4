"""End to end on the embedded Kafka: fake OpenSky -> source agent -> flight-raw-data / flight-invalid-data."""

from __future__ import annotations

import collections

import pytest

from flights_app.partitioner import partition_for
from flights_app.records import STATE_FIELDS
from flights_app.topic_names import INVALID, RAW
from tests.harness import FakeOpenSky, TestApp, http_json, read_states, read_topic, wait_until

pytestmark = pytest.mark.kafka

#: What the validator must say for each corruption the fake server makes.
EXPECTED_REASON = {
    ("icao24", "null"): "invalid_icao24",
    ("on_ground", "null"): "invalid_on_ground",
    ("origin_country", "null"): "invalid_origin_country",
    ("spi", "null"): "invalid_spi",
    ("position_source", "null"): "invalid_position_source",
}


def expected_reason(field: str, corruption: str) -> str:
    if (field, corruption) in EXPECTED_REASON:
        return EXPECTED_REASON[(field, corruption)]
    return f"missing_{field}" if corruption == "null" else f"invalid_{field}"


def topic_counts(app: TestApp):
    return len(read_states(app.bootstrap, app.topic(RAW))), len(read_topic(app.bootstrap, app.topic(INVALID)))


def wait_for_all_published(app: TestApp, worker, total: int, timeout_s: float = 90):
    def done():
        app.check_workers()
        raw, invalid = topic_counts(app)
        assert raw + invalid <= total, f"more records ({raw}+{invalid}) than states served ({total})"
        return raw + invalid == total

    wait_until(done, timeout_s, f"{total} states on the raw and invalid topics", interval_s=0.5)


def test_simulated_states_reach_raw_and_corrupted_ones_invalid_with_their_reason(kafka, tmp_path, cleanup):
    fake = FakeOpenSky(tmp_path, "--simulate", "40", "--seed", "3", "--corrupt-rate", "0.25")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.2")
    cleanup.append(app)
    worker = app.start_worker()

    wait_until(lambda: app.check_workers() or fake.stats()["requests"] >= 8, 90, "eight polls of the fake server")
    fake.control(paused=True)  # from now on it answers `states: null`
    stats = fake.stats()
    served = stats["states_served"]
    wait_for_all_published(app, worker, served)

    raw = read_states(app.bootstrap, app.topic(RAW))
    invalid = read_topic(app.bootstrap, app.topic(INVALID))
    expected = collections.Counter(expected_reason(c["field"], c["corruption"]) for c in stats["corruptions"])
    assert collections.Counter(v["reason"] for _, v in invalid) == expected
    assert len(invalid) == len(stats["corruptions"]) > 0
    for _, rejected in invalid:
        assert isinstance(rejected["raw"], list) and rejected["detail"]
    assert len(raw) == served - len(invalid) > 0
    for _, state in raw:
        assert set(STATE_FIELDS) | {"ingest_time", "poll_id"} <= set(state)
        assert -90 <= state["latitude"] <= 90 and state["velocity"] >= 0
    # One batch record per partition and poll, keyed so that it routes where all its states route.
    batches = read_topic(app.bootstrap, app.topic(RAW))
    home = lambda icao24: partition_for(icao24.encode(), app.partitions)  # noqa: E731
    per_poll = collections.Counter()
    for key, batch in batches:
        assert batch["kind"] == "states" and batch["states"]
        assert {home(state["icao24"]) for state in batch["states"]} == {home(key)}
        assert len({state["poll_id"] for state in batch["states"]}) == 1
        per_poll[batch["states"][0]["poll_id"]] += 1
    assert max(per_poll.values()) <= app.partitions and len(batches) < len(raw) / 3

    counters = http_json(f"http://127.0.0.1:{worker.web_port}/source/")["source"]
    assert counters["states_received"] == served
    assert (counters["valid"], counters["invalid"]) == (len(raw), len(invalid))
    assert counters["invalid_by_reason"] == dict(expected)


@pytest.mark.recordings
def test_a_real_recording_replays_every_state_exactly_once(kafka, tmp_path, cleanup, shared_data):
    recording = shared_data / "opensky_dulles_2023-03-14_450polls.zip"
    fake = FakeOpenSky(tmp_path, "--replay", str(recording), "--pace", "request")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.01")
    cleanup.append(app)
    worker = app.start_worker()

    wait_until(lambda: app.check_workers() or fake.stats()["exhausted"], 120, "the whole recording to be served",
               interval_s=0.5)
    assert fake.stats()["states_served"] == 4237  # as ../shared/data/README.md documents
    wait_for_all_published(app, worker, 4237)
    raw = read_states(app.bootstrap, app.topic(RAW))
    # Independently of the validator: every row of this recording has a position, speed and altitude.
    from flights_app.fake_opensky.recordings import load_recording

    rows = [(r[0], r[4]) for p in load_recording(recording) for r in p.states or []]
    assert collections.Counter((v["icao24"], v["last_contact"]) for _, v in raw) == collections.Counter(rows)
    assert "poll " in worker.log_text()  # the per-poll count line a user watches


@pytest.mark.recordings
def test_the_global_snapshot_rejects_null_positions_with_their_reason(kafka, tmp_path, cleanup, shared_data):
    recording = shared_data / "opensky_global_snapshot_2021-10-17.json.gz"
    fake = FakeOpenSky(tmp_path, "--replay", str(recording), "--pace", "request")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.2")
    cleanup.append(app)
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or fake.stats()["exhausted"], 60, "the snapshot to be served",
               interval_s=0.5)
    wait_for_all_published(app, worker, 5485)

    from flights_app.fake_opensky.recordings import load_recording

    (snapshot,) = load_recording(recording)
    null_position = collections.Counter(r[0] for r in snapshot.states if r[6] is None or r[5] is None)
    assert sum(null_position.values()) == 101  # documented in ../shared/data/README.md
    invalid = read_topic(app.bootstrap, app.topic(INVALID))
    missing = collections.Counter(v["icao24"] for _, v in invalid if v["reason"] == "missing_latitude")
    assert missing == null_position
    raw = read_states(app.bootstrap, app.topic(RAW))
    assert all(v["latitude"] is not None and v["longitude"] is not None for _, v in raw)


def test_credentials_work_and_the_secret_never_reaches_the_log(kafka, tmp_path, cleanup):
    secret = "s3cr3t-" + "q" * 20
    fake = FakeOpenSky(tmp_path, "--simulate", "10", "--client-id", "me", "--client-secret", secret,
                       "--require-auth", "--token-ttl", "2")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, OPENSKY_TOKEN_URL=fake.token_url,
                  OPENSKY_CLIENT_ID="me", OPENSKY_CLIENT_SECRET=secret, FLIGHTS_POLL_INTERVAL="0.5")
    cleanup.append(app)
    worker = app.start_worker()
    # Tokens live 2 s: by the time 50 states arrived the source has refreshed several times.
    wait_until(lambda: app.check_workers() or len(read_states(app.bootstrap, app.topic(RAW))) >= 50, 90,
               "authenticated states", 0.5)
    wait_until(lambda: fake.stats()["token_requests"] >= 2, 30, "a token refresh")
    assert all(r["status"] == 200 for r in fake.stats()["log"])  # refreshed before expiry: never a 401
    worker.stop()
    assert secret not in worker.log_text()


def test_wrong_credentials_log_one_clear_line_and_keep_retrying(kafka, tmp_path, cleanup):
    fake = FakeOpenSky(tmp_path, "--simulate", "5", "--client-id", "me", "--client-secret", "right",
                       "--require-auth")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, OPENSKY_TOKEN_URL=fake.token_url,
                  OPENSKY_CLIENT_ID="me", OPENSKY_CLIENT_SECRET="wrong-secret-abc",
                  FLIGHTS_POLL_INTERVAL="0.1", FLIGHTS_BACKOFF_MAX="0.5")
    cleanup.append(app)
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or fake.stats()["token_requests"] >= 4, 90, "the source to keep retrying")
    assert worker.alive()
    worker.stop()
    log = worker.log_text()
    assert log.count("OpenSky rejected the client credentials for client id 'me'") == 1
    assert "wrong-secret-abc" not in log


def test_a_leader_killed_mid_replay_is_followed_by_one_that_publishes_the_polls_it_missed(
        kafka, tmp_path, cleanup, shared_data):
    """The leader dies; polls go unpublished meanwhile (here: fetched from the fake server by someone else,
    as a dying leader fetches a poll it never publishes); the next leader asks OpenSky for each poll time
    missed since the last poll published (its ``time`` parameter) before it goes on: every state of the
    recording reaches flight-raw-data."""
    import urllib.request

    from flights_app.fake_opensky.recordings import load_recording

    recording = shared_data / "opensky_dulles_2023-03-14_450polls.zip"
    fake = FakeOpenSky(tmp_path, "--replay", str(recording), "--pace", "request", "--client-id", "me",
                       "--client-secret", "s3cret-catch-up")
    cleanup.append(fake)
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL=fake.api_url, OPENSKY_TOKEN_URL=fake.token_url,
                  OPENSKY_CLIENT_ID="me", OPENSKY_CLIENT_SECRET="s3cret-catch-up", FLIGHTS_POLL_INTERVAL="0.01",
                  FLIGHTS_CATCH_UP_MAX="720")
    cleanup.append(app)
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or len(read_states(app.bootstrap, app.topic(RAW))) >= 500, 90,
               "the first polls published", 0.5)
    worker.kill()
    for _ in range(40):  # 40 polls served and never published
        urllib.request.urlopen(f"{fake.api_url}/states/all", timeout=10).read()
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or fake.stats()["exhausted"], 180, "the whole recording to be served",
               interval_s=0.5)
    # OpenSky keeps one snapshot per time: of the recorded polls sharing a time, the last is the one its
    # `time` parameter gives (the fake server's too), so those are the states a new leader can recover.
    snapshots = {p.time: p for p in load_recording(recording)}
    rows = {(r[0], r[4]) for p in snapshots.values() for r in p.states or []}

    def every_row_published():
        app.check_workers()
        return {(v["icao24"], v["last_contact"]) for _, v in read_states(app.bootstrap, app.topic(RAW))} >= rows
    wait_until(every_row_published, 60, "every state of the recording on flight-raw-data", interval_s=1)
    assert "Caught up" in worker.log_text()
