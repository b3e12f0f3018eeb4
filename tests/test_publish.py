"""Outbox.send_many on a real broker: whole record batches, each record in its key's partition, in order."""

import asyncio
import uuid
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flights_app.partitioner import partition_for
from flights_app.publish import Outbox

PARTITIONS = 3


async def records_of(bootstrap: str, topic: str) -> dict[int, list[tuple[bytes, bytes, int]]]:
    """Every record of ``topic`` by partition: (key, value, offset), in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out: dict[int, list] = {p: [] for p in range(PARTITIONS)}
        while sum(len(v) for v in out.values()) < sum(ends.values()):
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                out[tp.partition] += [(m.key, m.value, m.offset) for m in messages]
        return out
    finally:
        await consumer.stop()


def test_send_many_fills_batches_in_each_key_s_partition_in_order_and_says_where_each_batch_begins(kafka):
    async def run():
        topic = f"publish-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        await admin.close()
        # Small batches, so that each partition's records fill several of them.
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks=-1, max_batch_size=64 * 1024)
        await producer.start()
        try:
            outbox = Outbox(SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer)))
            sent = [(f"{i % 40:06x}".encode(), f"{i:05d}".encode() + b"x" * 1000) for i in range(3000)]
            batches = await outbox.send_many(topic, sent)
            pinned = await outbox.send_many(topic, [(b"zzz", b"pinned-%d" % i) for i in range(5)], partition=1)
            assert len(outbox) == 3005 and sum(count for _, count in batches) == 3000
            assert len(batches) > 2 * PARTITIONS  # full batches were queued whole and new ones begun
            await outbox.sent()
            assert len(outbox) == 0
            return sent, batches, pinned, await records_of(kafka.bootstrap, topic)
        finally:
            await producer.stop()

    sent, batches, pinned, stored = asyncio.run(run())
    for partition, records in stored.items():
        mine = [(k, v) for k, v in sent if partition_for(k, PARTITIONS) == partition]
        assert [(k, v) for k, v, _ in records if k != b"zzz"] == mine  # each in its key's partition, in order
    assert [v for k, v, _ in stored[1] if k == b"zzz"] == [b"pinned-%d" % i for i in range(5)]
    offsets = {(p, o): v for p, records in stored.items() for _, v, o in records}
    for future, count in batches + pinned:
        meta = future.result()
        assert (meta.partition, meta.offset) in offsets and (meta.partition, meta.offset + count - 1) in offsets
    last = {}
    for future, count in batches + pinned:  # what TableWrites.persist_offsets records: each partition's last
        meta = future.result()
        last[meta.partition] = max(last.get(meta.partition, -1), meta.offset + count - 1)
    assert last == {p: records[-1][2] for p, records in stored.items() if records}
