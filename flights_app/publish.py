"""Sending a micro-batch of records: straight to the producer, then one wait for all acks.

Faust's ``Topic.send_soon`` puts each record in a buffer that a task drains one
message per event-loop turn, and past its ``max_messages`` it stalls
the stream until the buffer ebbs: about 200 us per record here. ``Outbox`` hands
each encoded record to aiokafka at once (which batches them per partition) and
keeps the delivery futures; ``await outbox.sent()`` before the batch's offsets
commit keeps at-least-once. Keys route through the app's partitioner like any
other send.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import faust
import orjson
from faust.types import AppT, TopicT

from flights_app.faust_internals import fields_of

#: Records handed to the producer by every Outbox of this process, by topic (for /metrics).
sent_by_topic: Counter[str] = Counter()


def _representation(value: Any) -> Any:
    if isinstance(value, faust.Record):
        return fields_of(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode(value: Any) -> bytes:
    """JSON as the topics carry it (records without Faust's metadata), fast."""
    return orjson.dumps(value, default=_representation, option=orjson.OPT_SERIALIZE_NUMPY)


class Outbox:
    """Records of one micro-batch on their way; ``sent()`` waits for every acknowledgement."""

    def __init__(self, app: AppT):
        self.producer = app.producer
        self.pending: list[asyncio.Future] = []

    async def send(self, topic: TopicT, key: str | None, value: Any, partition: int | None = None) -> None:
        await self.send_bytes(topic.get_topic_name(), None if key is None else key.encode(), encode(value), partition)

    async def send_bytes(self, topic: str, key: bytes | None, value: bytes | None,
                         partition: int | None = None) -> asyncio.Future:
        """Hand one encoded record to the producer; its acknowledgement is awaited by ``sent()``."""
        future = await self.producer.send(topic, key, value, partition, None, None)
        self.pending.append(future)
        sent_by_topic[topic] += 1
        return future

    async def sent(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            await asyncio.gather(*pending)

    def __len__(self) -> int:
        return len(self.pending)
