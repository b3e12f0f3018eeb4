"""The worker under broker faults, on a broker of the test's own: not up yet at start, stopped
(SIGTERM) and killed (kill -9) mid-run. It recovers without anyone's help and loses nothing."""

from __future__ import annotations

import collections

import pytest

from flights_app.embedded.broker import EmbeddedBroker
from flights_app.topic_names import PROCESSED, RAW
from tests.conftest import KAFKA_LIB
from tests.harness import (
    TestApp,
    free_port_pair,
    http_get,
    read_states,
    read_topic,
    topic_size,
    wait_until,
)
from tests.replay import expected_totals, produce_recording, wait_for_exact_totals
from tests.test_reliability import DULLES, replay_app

pytestmark = [pytest.mark.kafka, pytest.mark.recordings]


def test_the_worker_waits_for_the_broker_and_rides_out_its_stops_and_crashes(tmp_path, cleanup, shared_data):
    recording = shared_data / DULLES
    expected = expected_totals(recording)
    broker = EmbeddedBroker(tmp_path / "kafka", free_port_pair(), lib_dir=KAFKA_LIB, heap_mb=384)
    cleanup.append(broker)
    app: TestApp = replay_app(tmp_path, broker.url)
    cleanup.append(app)
    worker = app.start_worker()
    wait_until(lambda: app.check_workers() or "is not reachable" in worker.log_text(), 60,
               "the worker to say it waits for Kafka")
    assert worker.alive()
    broker.start()

    def healthy() -> bool:
        app.check_workers()
        status, _, health = http_get(f"http://127.0.0.1:{worker.web_port}/health", timeout_s=5)
        return status == 200  # the broker answers, tables recovered, a model loaded
    wait_until(healthy, 180, "the worker to start once the broker is up")

    processed = app.topic(PROCESSED)
    produce_recording(app.bootstrap, app.topic(RAW), recording, polls=slice(0, 150))
    wait_until(lambda: app.check_workers() or topic_size(app.bootstrap, processed) >= 300, 120, "work under way")
    broker.stop()  # SIGTERM: a clean broker shutdown, mid-run
    wait_until(lambda: app.check_workers() or http_get(f"http://127.0.0.1:{worker.web_port}/health",
                                                         timeout_s=10)[0] == 503, 60, "/health to say so")
    broker.start()
    wait_until(healthy, 180, "the worker back after the broker's restart")
    produce_recording(app.bootstrap, app.topic(RAW), recording, polls=slice(150, 300))
    wait_until(lambda: app.check_workers() or topic_size(app.bootstrap, processed) >= 1500, 120, "more work")
    broker.kill()  # kill -9: a crash, mid-run
    broker.start()
    wait_until(healthy, 180, "the worker back after the broker's crash")
    produce_recording(app.bootstrap, app.topic(RAW), recording, polls=slice(300, None))

    wait_for_exact_totals(app, expected, 240, "exact totals", recording)
    inputs = {(v["icao24"], v["poll_id"]) for _, v in read_states(app.bootstrap, app.topic(RAW))}
    scored = collections.Counter((v["state"]["icao24"], v["state"]["poll_id"])
                                 for _, v in read_topic(app.bootstrap, processed))
    assert len(inputs) > 0 and not inputs - set(scored), "states never scored"
    assert worker.alive()
