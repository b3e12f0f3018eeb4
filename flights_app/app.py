"""The Faust application: ``faust -A flights_app.app worker -l info``.

Declarations live here and in the modules imported at the bottom (topics,
then one module per agent); the agents themselves are thin loops over plain
functions that are tested without Kafka.
"""

from __future__ import annotations

import faust
from faust.transport.producer import ProducerBuffer

from flights_app import faust_commit_fix, faust_recovery_fix
from flights_app.settings import SettingsError, load_settings

faust_commit_fix.install()  # never commit past a message that was not acknowledged
faust_recovery_fix.install()  # seek the stream partitions before resuming them after a rebalance

try:
    settings = load_settings()
except SettingsError as error:  # a user's mistake: one line, no traceback
    raise SystemExit(f"flights-app: configuration error: {error}") from None

app = faust.App(
    settings.app_id,
    broker=settings.broker_url,
    store=settings.store,
    datadir=str(settings.datadir / "worker"),
    web_bind=settings.web_bind,
    web_port=settings.web_port,
    web_host=settings.web_host,
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    processing_guarantee="at_least_once",
    table_standby_replicas=settings.standby_replicas,
    # A crashed worker's partitions are handed over after this long (the broker's default
    # group.min.session.timeout.ms is 6 s); heartbeats every tenth of it.
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 10),
    Worker="flights_app.worker:Worker",
    # Broker not reachable yet: keep retrying with a clear log line instead of dying.
    broker_request_timeout=90.0,
    producer_acks=-1,
    # Table keys "<stream key>@<rest>" route to the partition of their stream key (flights_app.partitioner).
    producer_partitioner="flights_app.partitioner:partitioner",
    # Throughput: batches of up to 1 MiB per partition, gathered for up to 5 ms.
    producer_linger_ms=5,
    producer_max_batch_size=1 << 20,
    producer_max_request_size=4 << 20,
)
# Table writes (changelog messages) go through Faust's producer buffer, which stalls the
# stream once more than 100 wait. A micro-batch writes up to two per state (bounded by
# FLIGHTS_SCORE_BATCH), and every commit flushes the buffer first, so this only removes the stall.
ProducerBuffer.max_messages = 10_000

# Import for their side effect of registering topics, tasks and agents on `app`.
from agents import commit_watchdog, scoring, source, windows  # noqa: E402,F401
from flights_app import topics  # noqa: E402,F401
from web import endpoints  # noqa: E402,F401
