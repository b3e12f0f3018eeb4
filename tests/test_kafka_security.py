"""The app on a Kafka broker that requires SCRAM-SHA-512 logins and enforces ACLs (the embedded
broker with FLIGHTS_EMBEDDED_BROKER_SASL): the worker with its own principal processes a replay with
exact totals; a wrong password, or none, is refused in one line; the dashboard's principal cannot
write flight-raw-data; and no password reaches a debug-level log."""

from __future__ import annotations

import asyncio

import pytest

from flights_app.embedded.broker import EmbeddedBroker
from flights_app.kafka_security import KafkaSecurity, login_problem
from flights_app.topic_names import PROCESSED, RAW
from tests.conftest import KAFKA_LIB
from tests.harness import LOGINS, FakeOpenSky, TestApp, free_port_pair, read_topic, wait_until
from tests.replay import expected_counts
from tests.test_window_pipeline import wait_for_totals

pytestmark = [pytest.mark.kafka, pytest.mark.recordings]


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka-sasl"), free_port_pair(), lib_dir=KAFKA_LIB,
                            heap_mb=512, sasl=True)
    broker.start()
    yield broker
    LOGINS.pop(broker.bootstrap, None)
    broker.stop()


def login(broker: EmbeddedBroker, principal: str, password: str | None = None) -> KafkaSecurity:
    return KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", principal,
                         password or broker.password_file(principal).read_text().strip())


async def write(broker: EmbeddedBroker, security: KafkaSecurity, topic: str) -> str:
    """Try one record on ``topic``: "written", or the error's name."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **security.client_options())
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b'{"forged": true}'), 30)
        return "written"
    except Exception as error:  # noqa: BLE001 - which refusal is the point
        return type(error).__name__
    finally:
        await producer.stop()


def test_a_worker_logged_in_processes_a_replay_exactly_and_strangers_are_refused(sasl_broker, tmp_path, cleanup,
                                                                                 shared_data):
    broker = sasl_broker
    LOGINS[broker.bootstrap] = login(broker, "admin").client_options()  # the test reads every topic
    recording = shared_data / "opensky_dulles_2023-03-14_450polls.zip"
    expected, _ = expected_counts(recording)
    fake = FakeOpenSky(tmp_path, "--replay", str(recording), "--pace", "request")
    cleanup.append(fake)
    app = TestApp(tmp_path, broker.url, OPENSKY_URL=fake.api_url, FLIGHTS_POLL_INTERVAL="0.01",
                  FLIGHTS_AGGREGATE_FLUSH="0.5", FLIGHTS_LOG_LEVEL="debug")
    cleanup.append(app)

    # A wrong password and no login at all: one line each, the worker stops (both at once).
    (tmp_path / "pw").write_text("not-the-password\n")
    strangers = {"wrong": app.start_worker("wrong", **{**broker.login_settings("worker"),
                                                      "FLIGHTS_KAFKA_PASSWORD_FILE": str(tmp_path / "pw")}),
                 "none": app.start_worker("none")}
    # The app's ACLs, granted while the strangers are turned away (their logins fail before any ACL counts).
    broker.grant(app.env["FLIGHTS_APP_ID"], app.prefix)
    wait_until(lambda: not any(w.alive() for w in strangers.values()), 60, "the strangers' workers to stop")
    for name, stranger in strangers.items():
        line = stranger.log_text().strip().splitlines()[-1]
        assert line.startswith("flights-app: Kafka at") and ("refused the login of 'worker'" if name == "wrong"
                                                            else "closed the connection") in line, stranger.tail()
        app.workers.remove(stranger)

    worker = app.start_worker(**broker.login_settings("worker"))
    wait_for_totals(app, expected, 240, "the aggregated counts to equal the recording's distinct counts")

    # The ACLs hold: the dashboard reads the outputs but cannot forge states; no login gets nothing.
    async def checks():
        return (await write(broker, login(broker, "dashboard"), app.topic(RAW)),
                await write(broker, login(broker, "worker"), app.topic(RAW)),
                await login_problem(broker.bootstrap, login(broker, "dashboard", "wrong-password")),
                await login_problem(broker.bootstrap, KafkaSecurity()))
    dashboard_write, worker_write, wrong, anonymous = asyncio.run(checks())
    assert dashboard_write == "TopicAuthorizationFailedError" and worker_write == "written"
    assert "refused the login of 'dashboard'" in wrong and "closed the connection" in anonymous
    LOGINS[broker.bootstrap] = login(broker, "dashboard").client_options()
    assert len(read_topic(broker.bootstrap, app.topic(PROCESSED))) > 0  # what the dashboard is for
    LOGINS[broker.bootstrap] = login(broker, "admin").client_options()

    worker.stop()
    log = "\n".join(w.log_text() for w in app.workers)
    assert "DEBUG" in log  # the level the check is about
    for principal in ("admin", "worker", "dashboard"):
        assert broker.password_file(principal).read_text().strip() not in log, principal
