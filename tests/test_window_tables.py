"""The window tables over time and across workers: expiry (RocksDB and changelog), routing of every
endpoint between two workers, and rebuilding a worker's tables from the changelogs."""

from __future__ import annotations

import shutil
import urllib.parse

import pytest

from flights_app.partitioner import partition_for
from flights_app.topic_names import AGGREGATED
from tables.keys import parse_group_key
from tables.window_core import newest_seen
from tests.harness import TestApp, http_get, read_topic, wait_until
from tests.replay import expected_counts, latest_records, newest_states, produce_recording

pytestmark = [pytest.mark.kafka, pytest.mark.recordings]

DULLES = "opensky_dulles_2023-03-14_450polls.zip"
US = "United States"
US_KEY = b"country|United States"  # its key on flight-window-partials


def latest_country_totals(app: TestApp) -> dict[tuple[str, int], int]:
    return {k: r["events"] for k, r in latest_records(app)[0].items()}


def wait_for_country_totals(app: TestApp, expected: dict, timeout_s: float, what: str) -> None:
    """Wait until every country window's newest record equals ``expected``; on timeout, say which differ
    (and each worker's window counters), so an intermittent failure leaves its evidence."""
    try:
        wait_until(lambda: app.check_workers() or latest_country_totals(app) == expected, timeout_s, what, 1)
    except AssertionError as error:
        got = latest_country_totals(app)
        diff = {k: (got.get(k), expected.get(k)) for k in set(got) | set(expected) if got.get(k) != expected.get(k)}
        live = [w for w in app.workers if not w.stopped and w.alive()]
        counters = [http_get(f"http://127.0.0.1:{w.web_port}/stats/windows/")[2] for w in live]
        health = [http_get(f"http://127.0.0.1:{w.web_port}/health")[2] for w in live]
        raise AssertionError(f"{error}: {len(diff)} (country, window) differ as (got, expected), e.g. "
                             f"{sorted(diff.items())[:8]}; the live workers' window counters: {counters}; "
                             f"health: {health}; where their agents wait: "
                             f"{[w.agent_stacks() for w in live]}") from None


def changelog(app: TestApp, table: str) -> dict[str, dict | None]:
    """The table as its changelog says: each key's last value (None: deleted)."""
    last = {}
    for key, value in read_topic(app.bootstrap, f"{app.env['FLIGHTS_APP_ID']}-{table}-changelog"):
        last[key] = value
    return last


def test_expired_windows_leave_rocksdb_and_their_changelogs(kafka, tmp_path, cleanup, shared_data):
    """1-minute windows over an 18-minute recording, kept 2 minutes after they close: the old ones are
    deleted (tombstones in the changelogs), after their final record; the recent ones stay, exact."""
    window, grace, expiry = 60, 60, 120
    keep_s = window + grace + expiry
    recording = shared_data / DULLES
    expected, last_event = expected_counts(recording, window)
    assert len({t for _, t in expected}) >= 18  # the recording spans 18 minutes
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_WINDOW=str(window), FLIGHTS_WINDOW_GRACE=str(grace), FLIGHTS_WINDOW_EXPIRY=str(expiry),
                  FLIGHTS_AGGREGATE_FLUSH="0.5")
    cleanup.append(app)
    worker = app.start_worker()
    base = f"http://127.0.0.1:{worker.web_port}"
    wait_until(lambda: app.check_workers() or "Scoring with model" in worker.log_text(), 90, "the worker to start")
    produce_recording(app.bootstrap, app.topic("flight-raw-data"), recording)

    def only_unexpired_windows_exact():
        """The US windows the worker answers for are exactly those not yet expired, with exact counts."""
        app.check_workers()
        counters = http_get(f"{base}/stats/windows/")[2]
        # The group stage's watermark of the US's partials partition (which judges its windows' expiry).
        watermark = counters["watermarks"].get(str(partition_for(US_KEY, app.partitions)))
        status, _, body = http_get(f"{base}/stats/countries/{urllib.parse.quote(US)}/")
        seen.update(counters=counters, windows={w["window_start"]: w["events"] for w in body.get("windows", [])})
        return status == 200 and counters["states"] == 4237 and watermark and {
            w["window_start"]: w["events"] for w in body["windows"]} == {
            t: n for (c, t), n in expected.items() if c == US and t + keep_s > watermark} and watermark

    seen = {}
    try:
        wait_until(only_unexpired_windows_exact, 180, "only the unexpired windows, exact counts", 1)
    except AssertionError as timeout:
        expected_us = {t: n for (c, t), n in expected.items() if c == US}
        raise AssertionError(f"{timeout}; last seen {seen}, expected (all windows) {expected_us}") from None
    groups = changelog(app, "group-windows")
    deleted_windows = {parse_group_key(k)[:3] for k, v in groups.items() if v is None}
    finals = {(r["dimension"], r["name"], r["window_start"])
              for _, r in read_topic(app.bootstrap, app.topic(AGGREGATED)) if r["final"]}
    assert len(deleted_windows) > 10
    assert deleted_windows <= finals  # every deleted window had its final record first
    aircraft = changelog(app, "aircraft")
    deleted = {k for k, v in aircraft.items() if v is None}
    assert deleted and len(deleted) < len(aircraft)
    # An aircraft is deleted once every window of its entry has expired (by its partition's watermark,
    # which lies between the group stage's and the recording's last event time); the entry of one still
    # flying keeps only the windows its last write's watermark had not expired (at least its newest
    # state's), so what a restart would rebuild holds no window that was expired when it was written.
    newest = newest_states(recording)
    assert all(newest[k]["event_time"] // window * window + keep_s <= last_event for k in deleted)
    live = {k: v for k, v in aircraft.items() if v is not None}
    for icao24, value in live.items():
        seen = newest_seen(value["windows"])
        assert all(int(start) + keep_s > seen for start in value["windows"]), (icao24, sorted(value["windows"]), seen)
    dropped = http_get(f"{base}/stats/windows/")[2]["aircraft_windows_dropped"]
    assert dropped > 0  # aircraft flying through the whole recording lost their oldest windows
    # The group stage expires on its flush timer, and a window only after its final record is out:
    # wait (with a deadline) for that pass rather than judge the changelog at one instant. Each window
    # is judged by the watermark of its own partials partition.
    def live_expired_groups() -> list[str]:
        marks = http_get(f"{base}/stats/windows/")[2]["watermarks"]
        return [k for k, v in changelog(app, "group-windows").items()
                if v is not None and int(k.split("@")[1]) + keep_s
                <= marks.get(str(partition_for(k.encode(), app.partitions)), float("-inf"))]
    try:
        wait_until(lambda: not live_expired_groups(), 60, "no live group window past the expiry in the changelog")
    except AssertionError as timeout:
        left = live_expired_groups()
        raise AssertionError(f"{timeout}: {len(left)} left, e.g. {left[:6]}; the worker's counters "
                             f"{http_get(f'{base}/stats/windows/')[2]}") from None
    # Every entry the worker counts as expired is a tombstone in a changelog (and no other is): read
    # again, as the partitions' watermarks may still have moved since the reads above.
    def expired_count_is_the_tombstones() -> bool:
        counted = http_get(f"{base}/stats/windows/")[2]["windows_expired"]
        # Every tombstone (an aircraft may come back after its entry was deleted, and go again).
        tombstones = sum(value is None for table in ("aircraft", "group-windows") for _, value in read_topic(
            app.bootstrap, f"{app.env['FLIGHTS_APP_ID']}-{table}-changelog"))
        return counted == tombstones
    wait_until(expired_count_is_the_tombstones, 30,
               "the worker's count of expired entries to equal the changelogs' tombstones")
    # Every partials partition heard every source's newest watermark (the last batch's reaches the
    # partitions it wrote partials to by the timer's tick between batches, unless the batch's first state
    # already held it: when the timer ticks depends on how the replay fell into batches, see
    # test_watermarks for the schedule): each has a watermark at least the lowest of the sources' newest
    # event times counted.
    newest_by_source: dict[int, int] = {}
    for icao24, value in live.items():
        source = partition_for(icao24.encode(), app.partitions)
        newest_by_source[source] = max(newest_by_source.get(source, 0), newest_seen(value["windows"]))
    floor = min(newest_by_source.values())

    last: dict = {}

    def every_partition_heard_the_newest() -> bool:
        last.update(http_get(f"{base}/stats/windows/")[2])
        marks = last["watermarks"]
        return sorted(marks) == [str(p) for p in range(app.partitions)] and all(m >= floor for m in marks.values())
    wait_until(every_partition_heard_the_newest, 30, f"every partials partition's watermark to reach {floor}")
    # (Whether batches sent ticks on the way depends on how the replay fell into batches: a batch ticks only
    # the partitions it wrote no partial to for a second, and on a slow machine every batch wrote to every
    # partition: CI saw 0. The schedule itself is tested in test_watermarks.)


def answers(base: str, icao24s: list[str]) -> dict:
    out = {}
    for path in ["/stats/countries/", "/stats/airlines/", f"/stats/countries/{urllib.parse.quote(US)}/",
                 *(f"/aircraft/{i}/" for i in icao24s), *(f"/table/aircraft/{i}/" for i in icao24s)]:
        status, _, body = http_get(base + path)
        assert status == 200, (base, path, status, body)
        if isinstance(body, dict):
            body.pop("workers", None)
            if "last" in body:
                body = body["last"]
            body.pop("processed_time", None)
        out[path] = body
    return out


def test_two_workers_answer_for_every_key_and_a_worker_rebuilds_its_tables_from_changelogs(
        kafka, tmp_path, cleanup, shared_data):
    recording = shared_data / DULLES
    expected, _ = expected_counts(recording)
    newest = newest_states(recording)
    sample = sorted(newest)[::150]
    app = TestApp(tmp_path, kafka.url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_TOPIC_PARTITIONS="4", FLIGHTS_WINDOW_GRACE="3600", FLIGHTS_AGGREGATE_FLUSH="0.5")
    cleanup.append(app)
    one, two = app.start_worker("one"), app.start_worker("two")
    bases = [f"http://127.0.0.1:{w.web_port}" for w in (one, two)]

    def both_assigned():
        app.check_workers()
        return all(http_get(f"{b}/health", timeout_s=5)[0] == 200 and "Scoring with model" in w.log_text()
                   for b, w in zip(bases, (one, two), strict=True))
    wait_until(both_assigned, 180, "two healthy workers")
    produce_recording(app.bootstrap, app.topic("flight-raw-data"), recording, polls=slice(0, 225))
    half, _ = expected_counts(recording, polls=slice(0, 225))
    wait_for_country_totals(app, half, 240, "exact totals of a half")

    # Worker two dies: worker one takes over its partitions (and their tables) and does the rest alone.
    two.kill()
    produce_recording(app.bootstrap, app.topic("flight-raw-data"), recording, polls=slice(225, None))
    wait_for_country_totals(app, expected, 240, "exact totals from the one worker left")
    assert {r["name"] for r in http_get(f"{bases[0]}/stats/countries/?scope=local")[2]["rows"]} == {
        c for c, _ in expected}  # it holds every country now
    two = app.start_worker("two", FLIGHTS_WEB_PORT=str(two.web_port))
    wait_until(both_assigned, 180, "worker two back")
    wait_until(lambda: all(http_get(f"{b}/health")[2]["recovery_done"] for b in bases), 120, "recovery")

    local = [http_get(f"{b}/stats/countries/?scope=local")[2]["rows"] for b in bases]
    assert local[0] and local[1], "each worker holds some countries"
    assert not {r["name"] for r in local[0]} & {r["name"] for r in local[1]}
    first, second = answers(bases[0], sample), answers(bases[1], sample)
    assert first == second  # each worker answers for keys the other owns
    current = first["/stats/countries/"]
    assert {r["name"]: r["events"] for r in current["countries"]} == {
        c: n for (c, t), n in expected.items() if t == current["window_start"]}
    for icao24 in sample:
        assert first[f"/aircraft/{icao24}/"]["state"]["event_time"] == newest[icao24]["event_time"]

    # Worker two loses its disk: its tables come back from the changelogs.
    two.kill()
    shutil.rmtree(tmp_path / "two")
    two = app.start_worker("two", FLIGHTS_WEB_PORT=str(two.web_port))
    wait_until(both_assigned, 180, "worker two back and recovered")
    wait_until(lambda: answers(bases[1], sample) == first, 60, "the same answers from the rebuilt worker", 1)
    # Deduplication state came back too: the whole recording again changes no total. (The counters
    # are the workers' since they started: the 4,237 replayed states come on top of what they hold.)
    def dropped() -> int:
        return sum(http_get(f"{b}/stats/windows/")[2]["duplicates_dropped"] for b in bases)
    before = dropped()
    produce_recording(app.bootstrap, app.topic("flight-raw-data"), recording, batched=False)
    wait_until(lambda: dropped() >= before + 4237, 180, "the replayed recording to be recognised as duplicates", 1)
    assert latest_country_totals(app) == expected
    assert answers(bases[0], sample) == first == answers(bases[1], sample)
