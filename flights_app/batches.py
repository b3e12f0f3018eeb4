"""State batches: how states travel on ``flight-raw-data``.

The source publishes one record per partition per poll, holding every state of
that poll whose aircraft lives in that partition::

    {"kind": "states", "states": [{<StateVector fields>, "ingest_time": ..., "poll_id": ...}, ...]}

(a ``StateBatch`` record, written here from each state's JSON encoded once).

Its key is the icao24 of its first state, so it routes (by Kafka's murmur2) to
the partition every one of its states routes to: the partition their
aircraft's table entries live in. A poll larger than ``MAX_BATCH_BYTES`` per
partition is split into several records. One Kafka message per partition and
poll instead of one per state is what lets the scoring agent keep up: Faust's
consumer costs about 136 us per message before any work is done.

A single state (the object itself, without ``kind``) is still a valid message
of the topic: older data and other tools may write them (``flights_app.decode``).

The scoring agent gathers a partition's decoded states in a ``Chunk`` and scores
them together, up to a number of states or of distinct aircraft.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from flights_app.faust_internals import record_defaults
from flights_app.partitioner import icao24_partition
from flights_app.publish import encode
from flights_app.records import StateBatch, StateVector

#: The ``kind`` of a batch record.
KIND: str = record_defaults(StateBatch)["kind"]
#: Encoded states per record at most (Kafka's default message limit is 1 MiB; this leaves room).
MAX_BATCH_BYTES = 512 * 1024

_HEAD = b'{"kind":"' + KIND.encode() + b'","states":['
_TAIL = b"]}"


def pack(encoded: Iterable[tuple[str, bytes]], partitions: int,
         max_bytes: int = MAX_BATCH_BYTES) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of the batch records holding ``encoded`` (icao24, one state's JSON),
    each state in its aircraft's partition, in the order given within a partition."""
    by_partition: dict[int, list[tuple[str, bytes]]] = {}
    for icao24, state in encoded:
        by_partition.setdefault(icao24_partition(icao24, partitions), []).append((icao24, state))
    for partition, states in sorted(by_partition.items()):
        chunk: list[bytes] = []
        size = 0
        first = states[0][0]
        for icao24, state in states:
            if chunk and size + len(state) + 1 > max_bytes:
                yield partition, first.encode(), _HEAD + b",".join(chunk) + _TAIL
                chunk, size, first = [], 0, icao24
            chunk.append(state)
            size += len(state) + 1
        yield partition, first.encode(), _HEAD + b",".join(chunk) + _TAIL


def pack_states(states: Iterable[StateVector], partitions: int,
                max_bytes: int = MAX_BATCH_BYTES) -> Iterator[tuple[int, bytes, bytes]]:
    """``pack`` for validated states, encoded as the topic carries them."""
    return pack(((state.icao24, encode(state)) for state in states), partitions, max_bytes)


class Chunk:
    """The states of one partition scored together, gathered message by message: full at
    ``most_states`` states or ``most_aircraft`` distinct aircraft (checked after each message, so a
    chunk ends at a message's end), whatever the messages hold: the memory of a chunk stays bounded."""

    def __init__(self, most_states: int, most_aircraft: int):
        self.most_states, self.most_aircraft = most_states, most_aircraft
        self.states: list[StateVector] = []
        self.aircraft: set[str] = set()

    def add(self, states: list[StateVector]) -> None:
        self.states += states
        self.aircraft.update(s.icao24 for s in states)

    def full(self) -> bool:
        return len(self.states) >= self.most_states or len(self.aircraft) >= self.most_aircraft

    def take(self) -> list[StateVector]:
        """The chunk's states; the chunk starts again empty."""
        states, self.states = self.states, []
        self.aircraft.clear()
        return states
