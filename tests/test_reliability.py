"""Nothing lost under crashes and restarts, on the embedded Kafka: kill -9 at random moments, a lost
data directory, and clean shutdowns that commit what they did."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import shutil
import signal

import pytest

from flights_app.topic_names import AGGREGATED, INVALID, PROCESSED, RAW, WINDOW_PARTIALS
from tests.harness import (
    TestApp,
    committed_lag,
    committed_lags,
    group_offsets,
    http_get,
    read_states,
    read_topic,
    topic_size,
    wait_until,
)
from tests.replay import (
    WINDOW_S,
    expected_counts,
    expected_totals,
    malformed,
    malformed_number,
    produce_recording,
    wait_for_exact_totals,
)

pytestmark = [pytest.mark.kafka, pytest.mark.recordings]

DCMETRO = "opensky_dcmetro_2023-03-18_900polls.zip"  # 57,756 states, 18,844 distinct
DULLES = "opensky_dulles_2023-03-14_450polls.zip"  # 4,237 states, 2,124 distinct
MALFORMED_EVERY = 1000


def replay_app(tmp_path, broker_url: str, **env) -> TestApp:
    """An app with no source (the test feeds flight-raw-data itself) and windows that stay open."""
    return TestApp(tmp_path, broker_url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                   FLIGHTS_WINDOW=str(WINDOW_S), FLIGHTS_WINDOW_GRACE="3600", FLIGHTS_AGGREGATE_FLUSH="0.5", **env)


def wait_ready(app: TestApp, worker) -> None:
    def ready():
        app.check_workers()
        status, _, health = http_get(f"http://127.0.0.1:{worker.web_port}/health", timeout_s=5)
        return status == 200 and health["recovery_done"] and health["model_loaded"]
    wait_until(ready, 180, f"{worker.name} to be healthy")


def where_stages_were(app: TestApp) -> dict:
    """Per partition, the group stage's committed offset and the end of flight-window-partials, and the end
    of the group table's changelog: which life wrote what, when a failure's history is read."""
    group = app.env["FLIGHTS_APP_ID"]
    partials = asyncio.run(group_offsets(app.bootstrap, group, app.topic(WINDOW_PARTIALS)))
    changelog = asyncio.run(group_offsets(app.bootstrap, group, f"{group}-group-windows-changelog"))
    return {"partials (committed, end)": partials,
            "group changelog ends": {p: end for p, (_, end) in changelog.items()}}


def test_three_kill_9s_and_a_lost_data_directory_lose_nothing(kafka, tmp_path, cleanup, shared_data):
    """57,756 states with known duplicates and malformed messages among them; the worker is killed
    (SIGKILL) three times at random moments, and before one restart its data directory is deleted
    (its tables come back from the changelogs). At the end every input has a scored record, the
    per-country and per-airline window totals equal the distinct counts made from the recording,
    and every malformed message is on the invalid topic once per delivery."""
    recording = shared_data / DCMETRO
    expected = expected_totals(recording)
    assert sum(n for (d, _, _), n in expected.items() if d == "country") == 18844
    seed = int(os.environ.get("FLIGHTS_TEST_KILL_SEED") or random.randrange(10**6))  # to replay a failure
    rng = random.Random(seed)
    print(f"kill points seed {seed}")
    app = replay_app(tmp_path, kafka.url)
    cleanup.append(app)
    worker = app.start_worker()
    wait_ready(app, worker)
    states = produce_recording(app.bootstrap, app.topic(RAW), recording, malformed_every=MALFORMED_EVERY)
    assert states == 57756
    kill_points = sorted(rng.sample(range(states // 10, states * 8 // 10), 3))
    processed = app.topic(PROCESSED)

    for n, kill_at in enumerate(kill_points):
        wait_until(lambda k=kill_at: app.check_workers() or topic_size(app.bootstrap, processed) >= k,
                   300, f"{kill_at} processed states", interval_s=0.2)
        assert topic_size(app.bootstrap, processed) < states, "finished before the kill: not a mid-stream crash"
        worker.kill()
        if n == 1:
            shutil.rmtree(tmp_path / "worker")  # the tables come back from their changelogs
        worker = app.start_worker()
        # Read once the next worker is starting (not before: a quick restart is part of what is tested).
        print(f"kill {n + 1} at {kill_at} states: {where_stages_were(app)}")  # to read a failure's history by

    wait_for_exact_totals(app, expected, 420,
                          f"exact country and airline totals after kills at {kill_points} (seed {seed})", recording)
    # And the last worker commits what it processed (a message dropped in a rebalance used to stop a
    # partition's commits for good: agents/commit_watchdog.py).
    group = app.env["FLIGHTS_APP_ID"]
    try:
        wait_until(lambda: all(committed_lag(app.bootstrap, group, app.topic(t)) == 0 for t in (RAW, WINDOW_PARTIALS)),
                   120, "every input offset committed")
    except AssertionError as error:
        lags = {t: committed_lags(app.bootstrap, group, app.topic(t)) for t in (RAW, WINDOW_PARTIALS)}
        stalls = [line for line in worker.log_text().splitlines() if "Commits of" in line]
        raise AssertionError(f"{error}: uncommitted records per partition {lags}; watchdog: {stalls}") from None

    inputs = collections.Counter()
    for _, value in read_states(app.bootstrap, app.topic(RAW), timeout_s=120):
        if isinstance(value, dict) and "poll_id" in value:
            inputs[(value["icao24"], value["poll_id"])] += 1
    scored = {(v["state"]["icao24"], v["state"]["poll_id"]) for _, v in read_topic(app.bootstrap, processed,
                                                                                    timeout_s=120)}
    assert sum(inputs.values()) == states
    missing = set(inputs) - scored
    assert not missing, f"{len(missing)} states never scored, e.g. {sorted(missing)[:3]}"

    rejected = collections.defaultdict(list)
    places = collections.defaultdict(list)
    for _, value in read_topic(app.bootstrap, app.topic(INVALID)):
        rejected[malformed_number(value)].append(value["reason"])
        places[malformed_number(value)].append((value["poll_id"], value["ingest_time"]))
    sent = states // MALFORMED_EVERY
    for i in range(1, sent + 1):
        reasons = rejected.get(i, [])
        # At least once; more only where a crash made the worker read it again (at most once per kill).
        assert 1 <= len(reasons) <= 1 + len(kill_points), (i, reasons, places[i])
        assert set(reasons) == {malformed(i)[1]}, (i, reasons)
    assert set(rejected) == set(range(1, sent + 1))


def test_a_worker_killed_between_its_commit_and_its_flush_republishes_its_windows(kafka, tmp_path, cleanup,
                                                                                   shared_data):
    """The windows updated since the last flush are known only in memory. A worker that committed the
    partials it applied and was killed before it published the windows' records must publish them
    after its restart (the partials are not read again). Made certain here: the first life never
    flushes (FLIGHTS_AGGREGATE_FLUSH=3600) and is killed once everything it read is committed."""
    recording = shared_data / DULLES
    expected = expected_totals(recording)
    app = replay_app(tmp_path, kafka.url)
    cleanup.append(app)
    worker = app.start_worker(FLIGHTS_AGGREGATE_FLUSH="3600")
    wait_ready(app, worker)
    states = produce_recording(app.bootstrap, app.topic(RAW), recording)
    group = app.env["FLIGHTS_APP_ID"]

    def all_committed() -> bool:
        app.check_workers()
        return (topic_size(app.bootstrap, app.topic(PROCESSED)) == states
                and committed_lag(app.bootstrap, group, app.topic(RAW)) == 0
                and committed_lag(app.bootstrap, group, app.topic(WINDOW_PARTIALS)) == 0)

    wait_until(all_committed, 180, "every state scored and every partial applied and committed", interval_s=0.5)
    assert topic_size(app.bootstrap, app.topic(AGGREGATED)) == 0  # the premise: nothing flushed yet
    worker.kill()
    app.start_worker(FLIGHTS_WEB_PORT=str(worker.web_port))
    wait_for_exact_totals(app, expected, 180, "the restarted worker to publish the windows it holds", recording)


def test_a_closed_window_changed_by_late_states_is_republished_after_a_crash(kafka, tmp_path, cleanup,
                                                                              shared_data):
    """The same crash for a window that already had its final record: late states changed it, the
    partials were committed, the worker was killed before its flush. The restarted worker must publish
    it again (its newest record counting the late states), not only the windows still open."""
    recording = shared_data / DULLES
    window = 60
    expected = expected_totals(recording, window_s=window)
    held_back = slice(20, 40)  # ~50 s of traffic, sent only after its windows have closed
    late_windows = {("country", c, w) for (c, w) in expected_counts(recording, window, held_back)[0]}
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_WINDOW=str(window), FLIGHTS_WINDOW_GRACE="5", FLIGHTS_WINDOW_EXPIRY="86400")
    cleanup.append(app)
    group = app.env["FLIGHTS_APP_ID"]

    def all_committed(states: int) -> bool:
        app.check_workers()
        return (topic_size(app.bootstrap, app.topic(PROCESSED)) == states
                and committed_lag(app.bootstrap, group, app.topic(RAW)) == 0
                and committed_lag(app.bootstrap, group, app.topic(WINDOW_PARTIALS)) == 0)

    worker = app.start_worker(FLIGHTS_AGGREGATE_FLUSH="0.5")
    wait_ready(app, worker)
    states = produce_recording(app.bootstrap, app.topic(RAW), recording, polls=slice(0, held_back.start))
    states += produce_recording(app.bootstrap, app.topic(RAW), recording, polls=slice(held_back.stop, None))

    def finals() -> set:
        return {(r["dimension"], r["name"], r["window_start"]) for _, r in read_topic(app.bootstrap,
                                                                                      app.topic(AGGREGATED))
                if r.get("final")}

    wait_until(lambda: app.check_workers() or late_windows <= finals(), 180,
               "the final records of the windows the held-back states belong to", interval_s=1)
    worker.stop()  # a clean stop: everything so far committed and published

    worker = app.start_worker(FLIGHTS_AGGREGATE_FLUSH="3600", FLIGHTS_WEB_PORT=str(worker.web_port))
    wait_ready(app, worker)
    states += produce_recording(app.bootstrap, app.topic(RAW), recording, polls=held_back)
    wait_until(lambda: all_committed(states), 180, "the late states applied and committed", interval_s=0.5)
    worker.kill()

    app.start_worker(FLIGHTS_AGGREGATE_FLUSH="0.5", FLIGHTS_WEB_PORT=str(worker.web_port))

    def totals_with_late() -> dict:
        latest = {}
        for _, r in read_topic(app.bootstrap, app.topic(AGGREGATED), timeout_s=60):
            key = (r["dimension"], r["name"], r["window_start"])
            if key not in latest or r["emitted_at"] >= latest[key]["emitted_at"]:
                latest[key] = r
        return {k: r["events"] + r["late_events"] for k, r in latest.items()}

    try:
        wait_until(lambda: app.check_workers() or totals_with_late() == expected, 120,
                   "every window's newest record to count its late states")
    except AssertionError:
        got = totals_with_late()
        diff = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
        raise AssertionError(f"{len(diff)} windows differ (got, expected), e.g. {sorted(diff.items())[:6]}") from None


def test_a_clean_shutdown_commits_everything_and_a_restart_reprocesses_nothing(kafka, tmp_path, cleanup,
                                                                                shared_data):
    """SIGTERM when idle, then Ctrl-C (SIGINT) in the middle of a replay: each time the worker exits 0
    with its offsets committed, and no state is ever scored twice."""
    recording = shared_data / DULLES
    expected = expected_totals(recording)
    app = replay_app(tmp_path, kafka.url)
    cleanup.append(app)
    worker = app.start_worker()
    wait_ready(app, worker)
    first_half = produce_recording(app.bootstrap, app.topic(RAW), recording, polls=slice(0, 225))
    processed = app.topic(PROCESSED)
    group = app.env["FLIGHTS_APP_ID"]

    def caught_up(worker) -> bool:  # its partitions of flight-raw-data assigned, and nothing left to read
        app.check_workers()
        lag = http_get(f"http://127.0.0.1:{worker.web_port}/health")[2]["lag"]
        return app.topic(RAW) in lag["by_topic"] and lag["total"] == 0

    def stop_and_restart(worker, stop_signal):
        worker.process.send_signal(stop_signal)
        assert worker.process.wait(60) == 0, worker.tail()
        worker.stop()
        return app.start_worker(FLIGHTS_WEB_PORT=str(worker.web_port))

    wait_until(lambda: caught_up(worker), 120, "the first half to be processed")
    worker = stop_and_restart(worker, signal.SIGTERM)
    assert committed_lag(app.bootstrap, group, app.topic(RAW)) == 0  # every offset committed on the way out
    wait_ready(app, worker)
    wait_until(lambda: caught_up(worker), 60, "the restarted worker to be assigned and caught up")
    model = http_get(f"http://127.0.0.1:{worker.web_port}/model/")[2]
    assert model["scorer"]["events"] == 0, model  # nothing read again
    assert topic_size(app.bootstrap, processed) == first_half

    # As single states, so that the worker is still at it when Ctrl-C comes (a batch per poll and
    # partition goes through in about a second).
    total = first_half + produce_recording(app.bootstrap, app.topic(RAW), recording, polls=slice(225, None),
                                           batched=False)
    wait_until(lambda: app.check_workers() or topic_size(app.bootstrap, processed) >= first_half + 300, 60,
               "the second half to be under way")
    worker = stop_and_restart(worker, signal.SIGINT)
    assert topic_size(app.bootstrap, processed) < total, "finished before Ctrl-C: not a stop mid-replay"
    wait_ready(app, worker)
    wait_until(lambda: caught_up(worker), 120, "the rest to be processed after the restart")
    scored = collections.Counter((v["state"]["icao24"], v["state"]["poll_id"])
                                 for _, v in read_topic(app.bootstrap, processed))
    assert sum(scored.values()) == total == 4237
    assert max(scored.values()) == 1, [k for k, n in scored.items() if n > 1][:5]
    wait_for_exact_totals(app, expected, 60, "exact totals", recording)
