"""Static group membership on the embedded Kafka: a worker killed and restarted within the session timeout
gets its own partitions back and the other worker never rebalances; a clean stop hands its partitions over
at once."""

from __future__ import annotations

import time

import pytest

from tests.harness import TestApp, http_get, wait_until

pytestmark = [pytest.mark.kafka]


def membership(worker) -> dict | None:
    status, _, health = http_get(f"http://127.0.0.1:{worker.web_port}/health", timeout_s=5)
    return health["membership"] if status == 200 else None


def two_workers(tmp_path, broker_url: str, session_timeout_s: int):
    app = TestApp(tmp_path, broker_url, OPENSKY_URL="http://127.0.0.1:9/api", FLIGHTS_POLL_INTERVAL="3600",
                  FLIGHTS_SESSION_TIMEOUT=str(session_timeout_s))
    first, second = app.start_worker("first"), app.start_worker("second")

    def split():
        app.check_workers()
        a, b = membership(first), membership(second)
        return a and b and a["partitions"] and b["partitions"] and \
            sorted(a["partitions"] + b["partitions"]) == list(range(app.partitions)) and (a, b)
    return app, first, second, wait_until(split, 180, "both workers healthy, the partitions split between them")


def test_a_worker_killed_and_back_within_the_session_timeout_keeps_its_partitions_without_a_rebalance(
        kafka, tmp_path, cleanup):
    app, first, second, (before, other_before) = two_workers(tmp_path, kafka.url, session_timeout_s=60)
    cleanup.append(app)
    assert before["worker_id"] and before["worker_id"] != other_before["worker_id"]
    first.kill()
    killed_at = time.monotonic()
    first = app.start_worker("first", FLIGHTS_WEB_PORT=str(first.web_port))  # the same data directory and address

    def back():
        app.check_workers()
        now = membership(first)
        return now and now["partitions"] == before["partitions"] and now
    after = wait_until(back, 60, "the restarted worker healthy with its own partitions")
    resumed_s = time.monotonic() - killed_at
    assert after["worker_id"] == before["worker_id"]
    assert membership(second) == other_before  # the other worker neither rebalanced nor moved
    assert resumed_s < 60  # back within the session timeout, not after it
    print(f"kill -9 to the restarted worker healthy with its partitions: {resumed_s:.1f} s")


def test_a_clean_stop_hands_its_partitions_over_at_once(kafka, tmp_path, cleanup):
    app, first, second, _ = two_workers(tmp_path, kafka.url, session_timeout_s=60)
    cleanup.append(app)
    first.stop()
    stopped_at = time.monotonic()
    # Well within the 60 s session timeout: the stopping worker left its group (a static member would
    # otherwise hold its partitions until the timeout).
    wait_until(lambda: app.check_workers() or (membership(second) or {}).get("partitions") == list(range(4)),
               30, "the other worker to hold every partition")
    print(f"clean stop to the other worker holding every partition: {time.monotonic() - stopped_at:.1f} s")
