"""The Faust application: ``faust -A flights_app.app worker -l info``.

The app and its settings live here; the stages (``STAGES``: the topics, one module per agent, the
web pages) declare themselves on it and are imported by Faust's autodiscovery when the worker
starts. The agents are thin loops over plain functions that are tested without Kafka.
"""

from __future__ import annotations

import faust

from flights_app import faust_internals
from flights_app.access import middleware
from flights_app.settings import SettingsError, load_settings

try:
    settings = load_settings()
except SettingsError as error:  # a user's mistake: one line, no traceback
    raise SystemExit(f"flights-app: configuration error: {error}") from None

#: The modules that declare the worker's stages (found by Faust's autodiscovery: see below).
STAGES = ["flights_app.topics", "agents", "web.endpoints", "web.metrics"]

faust_internals.check_version(settings.faust_untested)
faust_internals.install()  # commits, recovery and the producer buffer (see that module)

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
    # Static membership (FLIGHTS_WORKER_ID): a worker back within the session timeout (a kill -9 and a
    # restart, a deploy) gets its own partitions again and the others keep working: no rebalance.
    consumer_group_instance_id=settings.worker_id,
    Worker="flights_app.worker:Worker",
    # Broker not reachable yet: keep retrying with a clear log line instead of dying.
    broker_request_timeout=90.0,
    producer_acks=-1,
    # TLS and the SASL login (FLIGHTS_KAFKA_SECURITY_PROTOCOL, ...): Faust hands them to every client it makes.
    broker_credentials=settings.kafka_security.faust_credentials(),
    # Table keys "<stream key>@<rest>" route to the partition of their stream key (flights_app.partitioner).
    producer_partitioner="flights_app.partitioner:partitioner",
    # Throughput: batches of up to 1 MiB per partition, gathered for FLIGHTS_KAFKA_LINGER_MS and
    # compressed as FLIGHTS_KAFKA_COMPRESSION says (make bench measures each choice).
    producer_linger_ms=settings.kafka_linger_ms,
    producer_compression_type=None if settings.kafka_compression == "none" else settings.kafka_compression,
    producer_max_batch_size=1 << 20,
    producer_max_request_size=4 << 20,
    # The stages register their topics, agents, tables, timers and pages on `app` when Faust imports
    # them as the worker starts (App.main, `faust -A`): this module imports none of them, so the
    # core (settings, records, validation, topics) never depends on the agents or the web layer.
    autodiscover=STAGES,
    # Every request passes the bearer-token check first (flights_app/access.py).
    web_application_options={"middlewares": [middleware(settings)]},
    origin="flights_app",
)
