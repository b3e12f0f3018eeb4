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
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, names: Iterable[str], *, partitions: int, replication: int,
                        retention_s: int, timeout_s: float | None = None) -> None:
    """Create the topics that are missing; while the broker is not reachable, retry (backing off up
    to 10 s) until it is, or until ``timeout_s`` if one is given, saying so every 30 s."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay, next_notice = 0.5, started
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                config = {"retention.ms": str(retention_s * 1000)}
                try:
                    await admin.create_topics([NewTopic(n, partitions, replication, topic_configs=config)
                                               for n in missing])
                except TopicAlreadyExistsError:  # another worker was first
                    pass
                log.info("Created topics %s (%d partitions)", ", ".join(missing), partitions)
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
