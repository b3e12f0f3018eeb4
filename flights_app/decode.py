"""Decoding the messages agents consume: every message is accepted or rejected with a reason.

The agents' input topics carry raw bytes (their Faust topics have the raw
serializer), so a message that is not JSON or not of the topic's schema never
reaches Faust's decoder, which would throw into the agent and stop it. Instead
it becomes an ``InvalidState`` with a reason, and the agent sends it on to
``flight-invalid-data`` and counts it. Nothing here raises.

A state on ``flight-raw-data`` goes through the same validator as a row from
OpenSky (``flights_app.validation``), except the time-consistency checks, which
need the poll's response time and were made by the source.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from flights_app.batches import KIND as BATCH_KIND
from flights_app.metrics import Metric, StageMetrics
from flights_app.partitioner import icao24_partition
from flights_app.records import STATE_FIELDS, InvalidState, StateVector
from flights_app.validation import Rejection, parse_icao24, validate_fields

log = logging.getLogger("flights_app.decode")

#: Of a rejected message, this many characters of its text are kept on the invalid topic.
MAX_RAW_CHARS = 2000
#: The fields a state message must have, besides the state vector's (category is optional).
_REQUIRED = (*STATE_FIELDS[:17], "ingest_time", "poll_id")
_REQUIRED_SET = frozenset(_REQUIRED)


def where(topic: str, partition: int, offset: int) -> str:
    """The message's place, as the ``poll_id`` of its rejection: ``topic:partition:offset``."""
    return f"{topic}:{partition}:{offset}"


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[:MAX_RAW_CHARS * 4].decode("utf-8", errors="replace")[:MAX_RAW_CHARS]


def _key(key: bytes | None) -> str | None:
    """The message key as an icao24, if it is one exactly (as the app writes keys)."""
    if key is None:
        return None
    text = key.decode("utf-8", errors="replace")
    return text if parse_icao24(text) == text else None


def reject(reason: str, detail: str, value: bytes | None, key: bytes | None, place: str,
           raw: Any = None, field_name: str | None = None) -> InvalidState:
    return InvalidState(reason=reason, detail=detail[:500], field_name=field_name,
                        raw=_text(value) if raw is None else raw, icao24=_key(key),
                        ingest_time=time.time(), poll_id=place)


def load_json(value: bytes | None, key: bytes | None, place: str) -> Any | InvalidState:
    if value is None:
        return reject("empty_message", "the message has no value (a tombstone)", value, key, place)
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return reject("not_json", f"not JSON: {error}", value, key, place)


def decode_state(value: bytes | None, key: bytes | None, place: str) -> StateVector | InvalidState:
    """A message of ``flight-raw-data`` as a ``StateVector``, or its rejection."""
    data = load_json(value, key, place)
    if isinstance(data, InvalidState):
        return data
    return _state_of(data, value, key, place)


def _state_of(data: Any, value: bytes | None, key: bytes | None, place: str,
              raw: Any = None) -> StateVector | InvalidState:
    """One state's JSON value (a message's, or a batch's item) as a ``StateVector``, or its rejection
    (keeping ``raw`` as what arrived, else the message's text)."""
    if not isinstance(data, dict):
        return reject("malformed_message", f"expected a JSON object, got {type(data).__name__}", value, key, place, raw)
    if not _REQUIRED_SET <= data.keys():
        missing = [name for name in _REQUIRED if name not in data]
        return reject("malformed_message", f"missing field(s): {', '.join(missing)}", value, key, place, raw)
    ingest_time, poll_id = data["ingest_time"], data["poll_id"]
    if not isinstance(ingest_time, (int, float)) or isinstance(ingest_time, bool) or ingest_time != ingest_time:
        return reject("malformed_message", f"ingest_time={ingest_time!r} is not a number", value, key, place, raw,
                      field_name="ingest_time")
    if not isinstance(poll_id, str):
        return reject("malformed_message", f"poll_id={poll_id!r} is not a string", value, key, place, raw,
                      field_name="poll_id")
    checked = validate_fields(data, ingest_time=float(ingest_time), poll_id=poll_id)
    if isinstance(checked, Rejection):
        return reject(checked.reason, checked.detail, value, key, place, field_name=checked.field_name,
                      raw=data)
    return checked


def _at_home(state: StateVector, partition: int, partitions: int, place: str) -> StateVector | InvalidState:
    """``state`` if it arrived in its aircraft's partition (where that aircraft's table entries live),
    else its rejection: a producer that does not key states by icao24 would split an aircraft's
    memory and windows over several partitions."""
    home = icao24_partition(state.icao24, partitions)
    if home == partition:
        return state
    return InvalidState(reason="wrong_partition", field_name="icao24", raw=state.asdict(), icao24=state.icao24,
                        detail=f"aircraft {state.icao24} belongs in partition {home}, not {partition}: "
                               "key each message by its icao24 (a batch by its first state's)",
                        ingest_time=time.time(), poll_id=place)


def decode_raw(value: bytes | None, key: bytes | None, topic: str, partition: int, offset: int,
               partitions: int) -> tuple[list[StateVector], list[InvalidState]]:
    """A message of ``flight-raw-data``: a batch of states (``flights_app.batches``) or a single state.
    Returns its valid states and its rejections. A batch is checked as a whole (one rejection, with
    its place, if it is not one) and then state by state: a bad state is rejected with its reason and
    its place in the batch (``topic:partition:offset#index``), the others go on. Every state must
    have arrived in its aircraft's partition."""
    place = where(topic, partition, offset)
    data = load_json(value, key, place)
    if isinstance(data, InvalidState):
        return [], [data]
    if not (isinstance(data, dict) and "kind" in data):
        state = _state_of(data, value, key, place)
        if isinstance(state, StateVector):
            state = _at_home(state, partition, partitions, place)
        return ([state], []) if isinstance(state, StateVector) else ([], [state])
    items = data.get("states")
    if data["kind"] != BATCH_KIND or not isinstance(items, list) or not items:
        return [], [reject("malformed_batch", f"a batch needs kind={BATCH_KIND!r} and a non-empty list of "
                           f"states; got kind={str(data['kind'])[:40]!r}", value, key, place)]
    valid: list[StateVector] = []
    invalid: list[InvalidState] = []
    for index, item in enumerate(items):
        item_place = f"{place}#{index}"
        icao24 = item.get("icao24") if isinstance(item, dict) else None  # a rejection names the item's own
        item_key = icao24.encode() if icao24 is not None and parse_icao24(icao24) == icao24 else None
        state = _state_of(item, None, item_key, item_place, raw=item)
        if isinstance(state, StateVector):
            state = _at_home(state, partition, partitions, item_place)
        (valid if isinstance(state, StateVector) else invalid).append(state)
    return valid, invalid


class Rejections(StageMetrics):
    """Messages an agent rejected, by (topic, reason); the first of each kind is logged."""

    def __init__(self) -> None:
        super().__init__([Metric("rejected", "flights_rejected_messages", "Malformed messages an agent rejected to "
                                 "flight-invalid-data, by input topic and reason", ("topic", "reason"))])

    def note(self, topic: str, rejection: InvalidState) -> None:
        self.inc("rejected", 1, topic, rejection.reason)
        count = self.rejected[(topic, rejection.reason)]
        if count == 1 or count % 1000 == 0:
            log.warning("Rejected a message of %s at %s (%s: %s); sent to the invalid topic [%d so far]",
                        topic, rejection.poll_id, rejection.reason, rejection.detail, count)

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (topic, reason), n in sorted(self.rejected.items()):
            out.setdefault(topic, {})[reason] = n
        return out


#: This worker's agents' rejections (for /metrics and /stats/rejected/).
rejections = Rejections()
