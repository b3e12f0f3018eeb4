"""Shared fixtures: one embedded Kafka broker per test session, on free ports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flights_app.embedded.broker import EmbeddedBroker
from flights_app.settings import PROJECT_ROOT
from tests.harness import SHARED_DATA, free_port_pair

KAFKA_LIB = Path(os.environ.get("FLIGHTS_KAFKA_LIB", PROJECT_ROOT / ".kafka" / "lib"))


#: Files whose tests start a whole stack (`flights-app up`, several brokers) or a browser with 12,000
#: aircraft: with ``-n 2 --dist loadgroup`` (make test) they run one at a time in one test process, so
#: two such tests never share the 2 cores (together they starved a dashboard's first page past a minute).
ONE_AT_A_TIME = {"test_cli.py", "test_deploy.py", "test_dashboard_browser.py", "test_dashboard_scale.py",
                 "test_dashboard_history.py"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.path.name in ONE_AT_A_TIME:
            item.add_marker(pytest.mark.xdist_group("one-at-a-time"))


@pytest.fixture(scope="session")
def kafka(tmp_path_factory) -> EmbeddedBroker:
    """A real single-node Kafka for the whole session; every test uses its own topics."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("kafka"), free_port_pair(), lib_dir=KAFKA_LIB, heap_mb=768)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared OpenSky recordings are not at {SHARED_DATA} (CI has ../shared beside the clone)")
    return SHARED_DATA


@pytest.fixture
def cleanup():
    """Append what a test starts (fake servers, apps, processes); it is killed in reverse order, pass or
    fail. Each test has its own app id, topics and directories, so nothing a clean stop would give
    (a final commit, a flushed table) is used afterwards, and a clean stop costs seconds per worker."""
    started = []
    yield started
    for thing in reversed(started):
        (getattr(thing, "discard", None) or thing.stop)()
