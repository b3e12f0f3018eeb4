"""Kafka partitioning by the key's prefix, so table keys route like the stream keys they derive from.

A table key ``"abc123@1763938800"`` (an aircraft's window) lives in the
partition of the event that wrote it, keyed ``"abc123"``. Hashing only the part
before the first ``@`` puts the key where Faust's table routing
(``/table/{name}/{key}/``, ``app.router``) looks for it. Keys without ``@``
hash exactly as Kafka's default partitioner (murmur2), so producers outside
this app (or in another language) partition the input topics the same way.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import murmur2

from flights_app.topic_names import KEY_SEP as SEP

_SEP = SEP.encode()


def routing_part(key: bytes) -> bytes:
    return key.split(_SEP, 1)[0]


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (Kafka's murmur2 of its routing part)."""
    return _hashed(routing_part(key), partitions)


@lru_cache(maxsize=1 << 16)
def _hashed(part: bytes, partitions: int) -> int:
    """Kafka's murmur2 partition of ``part``, remembered: murmur2 in Python takes microseconds, and
    every record the worker sends and every state the source and the decoder route asks for one
    (the same tens of thousands of aircraft again and again)."""
    return (murmur2(part) & 0x7FFFFFFF) % partitions


def icao24_partition(icao24: str, partitions: int) -> int:
    """The partition of an aircraft's states and table entries (``partition_for`` of its icao24)."""
    return _hashed(icao24.encode(), partitions)


class PrefixPartitioner:
    """``producer_partitioner`` for the app: aiokafka's partitioner interface."""

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return random.choice(list(available) or list(all_partitions))
        return all_partitions[partition_for(key, len(all_partitions))]


partitioner = PrefixPartitioner()
