"""Creating the app's topics before the worker subscribes to them.

A consumer that subscribes to a topic that does not exist yet ignores it
until its next metadata refresh (five minutes by default), so the worker
creates every topic it reads or writes first, with its partitions,
replication and retention.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """The cluster cannot hold the topics as configured; the message says what to change."""


def topic_config(retention_s: int) -> dict[str, str]:
    """Retention, and segments that close often enough for it to apply: Kafka deletes whole closed
    segments only, and a quiet partition's segment would otherwise stay open for a week."""
    segment_ms = max(60_000, min(retention_s * 1000 // 4, 24 * 3600 * 1000))
    return {"retention.ms": str(retention_s * 1000), "segment.ms": str(segment_ms)}


def _created(response, replication: int) -> None:
    """Raise TopicError for a topic the broker refused (other than one that already exists)."""
    for topic, code, *rest in getattr(response, "topic_errors", ()):
        if code == 0 or for_code(code) is TopicAlreadyExistsError:
            continue
        detail = rest[0] if rest and rest[0] else for_code(code).__name__
        if code == 38:  # INVALID_REPLICATION_FACTOR
            raise TopicError(f"cannot create {topic} with FLIGHTS_TOPIC_REPLICATION={replication}: {detail} "
                             "(the replication factor cannot exceed the number of live brokers)")
        raise TopicError(f"cannot create {topic}: {detail}")


def _check_partitions(described: list[dict], partitions: int) -> None:
    """Topics made earlier with another partition count break the tables' co-partitioning."""
    for topic in described:
        count = len(topic.get("partitions") or ())
        if topic.get("error_code", 0) == 0 and count and count != partitions:
            raise TopicError(
                f"{topic['topic']} has {count} partitions but FLIGHTS_TOPIC_PARTITIONS={partitions}: the tables "
                f"are partitioned like the topics, so set FLIGHTS_TOPIC_PARTITIONS={count}, or start a new app "
                "(FLIGHTS_APP_ID and FLIGHTS_TOPIC_PREFIX) with the new count (docs/deploy.md)")


#: How long a new topic may take to appear in the broker's metadata with a leader for every partition.
SERVED_WITHIN_S = 30.0


async def _until_served(admin, names: list[str], partitions: int) -> None:
    """Until every topic of ``names`` is in the broker's metadata with a leader for each partition: a
    consumer that subscribes before then leaves the topic out of its assignment until its next metadata
    refresh (minutes). Seen on a busy machine with the leader election's topic: no source for minutes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVED_WITHIN_S
    while True:
        described = await admin.describe_topics(names)
        if all(t.get("error_code", 0) == 0 and len(t.get("partitions") or ()) == partitions
               and all(p.get("leader", -1) >= 0 for p in t["partitions"]) for t in described):
            return
        if loop.time() > deadline:
            log.warning("Topics %s are not served with a leader per partition after %.0f s; going on",
                        ", ".join(names), SERVED_WITHIN_S)
            return
        await asyncio.sleep(0.1)


def changelog_config(topic) -> dict[str, str]:
    """The configuration Faust gives a table's changelog topic when it creates it (its aiokafka
    transport's rule: compaction, deletion, retention)."""
    policy = [name for name, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on]
    config = {"cleanup.policy": ",".join(policy)} if policy else {}
    if topic.retention:
        config["retention.ms"] = str(int(topic.retention * 1000))
    return config


async def ensure_topics(bootstrap: str, names: Iterable[str], *, partitions: int, replication: int,
                        retention_s: int | None = None, config: dict[str, str] | None = None,
                        timeout_s: float | None = None, client_options: dict | None = None) -> None:
    """Create the topics that are missing, with ``config`` (default: ``topic_config(retention_s)``);
    while the broker is not reachable, retry (backing off up to 10 s) until it is, or until
    ``timeout_s`` if one is given, saying so every 30 s. ``client_options``: the login
    (``KafkaSecurity.client_options``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay, next_notice = 0.5, started
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000, **(client_options or {}))
        try:
            await admin.start()
            names = list(names)
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            _check_partitions(await admin.describe_topics([n for n in names if n in existing]), partitions)
            if missing:
                configs = config if config is not None else topic_config(retention_s)
                try:
                    _created(await admin.create_topics([NewTopic(n, partitions, replication, topic_configs=configs)
                                                        for n in missing]), replication)
                except TopicAlreadyExistsError:  # another worker was first
                    pass
                log.info("Created topics %s (%d partitions, replication %d)", ", ".join(missing), partitions,
                         replication)
                await _until_served(admin, missing, partitions)
            return
        except (KafkaConnectionError, OSError) as error:
            waited = loop.time() - started
            if timeout_s is not None and waited > timeout_s:
                raise
            if loop.time() >= next_notice:
                log.warning("Kafka at %s is not reachable (%s); waiting for it (%.0f s so far, retrying "
                            "every %.0f s)", bootstrap, error, waited, delay)
                next_notice = loop.time() + 30
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            await admin.close()
