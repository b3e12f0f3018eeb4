"""Every message an agent or the dashboard consumes, and every web parameter: accepted or rejected
with a reason, never an exception (property tests)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flights_app.batches import Chunk, pack_states
from flights_app.decode import decode_raw, decode_state
from flights_app.partitioner import partition_for
from flights_app.publish import encode
from flights_app.records import STATE_FIELDS, InvalidState, StateBatch, StateVector
from flights_app.validation import validate_state
from tables.partials import WindowClose, WindowPartials, decode_partial
from tables.windows import Partial
from web import params
from web.dashboard.model import Traffic

T = 1678803647
ROW = ["a65527", "NKS2003 ", "United States", T, T, -77.3974, 38.8778, 7010.4, False,
       187.84, 208.46, 0, None, 6659.88, "0260", False, 0]
STATE = validate_state(ROW, T, ingest_time=T + 0.5, poll_id="p-1")
MESSAGE = encode(STATE)
PARTIAL = Partial(count=2, velocity_sum=300.0, velocity_min=140.0, velocity_max=160.0).as_dict()
UPDATES = [{"window_start": T // 600 * 600, "icao24": "a65527", "partial": PARTIAL}]
#: What the scoring agent sends: one message per partials partition and batch (agents.windows).
PACKED = {"kind": "partials", "source": 3, "watermark": T, "idle": False, "groups": [
    {"dimension": "country", "name": "United States", "partials": UPDATES},
    {"dimension": "airline", "name": "UAL", "partials": UPDATES}]}
#: The shape before partials were packed: one message per group.
PARTIALS = {"dimension": "country", "name": "United States", "source": 3, "watermark": T, "partials": UPDATES}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


def decode(value: bytes | None, key: bytes | None = b"a65527"):
    return decode_state(value, key, "flight-raw-data:0:42")


def test_a_state_as_the_source_publishes_it_decodes_to_the_same_state():
    assert decode(MESSAGE) == STATE


def test_a_chunk_is_full_at_its_states_or_its_aircraft_and_starts_again_empty():
    def states(*aircraft: str) -> list[StateVector]:
        return [STATE.derive(icao24=a) for a in aircraft]

    chunk = Chunk(most_states=4, most_aircraft=3)
    chunk.add(states("a00001", "a00001", "a00001"))  # three states of one aircraft: room for more
    assert not chunk.full()
    chunk.add(states("a00001"))
    assert chunk.full() and len(chunk.take()) == 4
    assert chunk.states == [] and not chunk.full()  # empty again: its aircraft forgotten too
    chunk.add(states("a00001", "a00002"))
    assert not chunk.full()
    chunk.add(states("a00003"))  # three distinct aircraft in three states
    assert chunk.full()
    taken = chunk.take()
    assert [s.icao24 for s in taken] == ["a00001", "a00002", "a00003"]  # in the order they came
    chunk.add(states("a00004", "a00005"))
    assert not chunk.full()  # the aircraft of the chunk taken before do not count


@pytest.mark.parametrize("value, reason, words", [
    (b"not json at all", "not_json", "not JSON"),
    (b'{"icao24": "a65527"', "not_json", "not JSON"),
    (b"[1, 2, 3]", "malformed_message", "JSON object"),
    (None, "empty_message", "tombstone"),
    (orjson.dumps({k: v for k, v in orjson.loads(MESSAGE).items() if k != "velocity"}),
     "malformed_message", "velocity"),
    (orjson.dumps({**orjson.loads(MESSAGE), "velocity": "fast"}), "invalid_velocity", "not a number"),
    (orjson.dumps({**orjson.loads(MESSAGE), "latitude": 95.0}), "latitude_out_of_range", "outside"),
    (orjson.dumps({**orjson.loads(MESSAGE), "poll_id": 7}), "malformed_message", "poll_id"),
])
def test_a_malformed_state_message_is_rejected_with_its_reason_and_place(value, reason, words):
    rejected = decode(value)
    assert isinstance(rejected, InvalidState)
    assert rejected.reason == reason and words in rejected.detail, rejected
    assert rejected.poll_id == "flight-raw-data:0:42" and rejected.icao24 == "a65527"
    orjson.loads(encode(rejected))  # publishable


def test_a_rejection_keeps_a_bounded_copy_of_what_arrived():
    rejected = decode(b"\xff" + b"x" * 100_000, key=b"\x00\x01")
    assert rejected.reason == "not_json" and rejected.icao24 is None
    assert len(rejected.raw) <= 2000


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_decode_or_are_rejected_never_raise(value):
    result = decode(value)
    assert isinstance(result, (StateVector, InvalidState))
    orjson.loads(encode(result))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*STATE_FIELDS, "ingest_time", "poll_id"]), json_values, max_size=20),
       st.booleans())
def test_any_object_with_state_fields_decodes_or_is_rejected(fields, over_a_real_state):
    data = {**orjson.loads(MESSAGE), **fields} if over_a_real_state else fields
    result = decode(json.dumps(data).encode())
    assert isinstance(result, (StateVector, InvalidState))
    if isinstance(result, InvalidState):
        assert result.reason and result.detail
    orjson.loads(encode(result))


def as_json(message) -> dict:
    """A decoded record as the JSON it would be sent as."""
    return orjson.loads(encode(message))


def test_partials_and_close_requests_decode_to_their_records():
    message = decode_partial(orjson.dumps(PACKED), None, "p:0:1")
    assert isinstance(message, WindowPartials) and as_json(message) == PACKED
    assert message.groups[1].partials[0].partial == PARTIAL and message.groups[1].name == "UAL"
    close = {"kind": "close", "dimension": "airline", "name": "UAL", "close": T // 600 * 600}
    message = decode_partial(orjson.dumps(close), None, "p:0:2")
    assert isinstance(message, WindowClose) and as_json(message) == close


def test_what_the_window_core_sends_is_what_the_stage_decodes():
    import dataclasses

    from tables import window_core as core

    sent = core.WindowPartials(3, T, [core.GroupPartials("country", "United States",
                                                         [core.PartialUpdate(T // 600 * 600, "a65527", PARTIAL)])])
    assert as_json(decode_partial(encode(sent), None, "p:0:1")) == dataclasses.asdict(sent)
    close = core.WindowClose("airline", "UAL", 600)
    assert as_json(decode_partial(encode(close), None, "p:0:2")) == dataclasses.asdict(close)


def test_the_shapes_before_packing_still_decode_as_packed_messages():
    one_group = {"kind": "partials", "source": 3, "watermark": T, "idle": False,
                 "groups": [{"dimension": "country", "name": "United States", "partials": UPDATES}]}
    assert as_json(decode_partial(orjson.dumps(PARTIALS), b"country|United States", "p:0:1")) == one_group
    unstamped = {k: v for k, v in PARTIALS.items() if k not in ("source", "watermark")}
    assert as_json(decode_partial(orjson.dumps(unstamped), None, "p:0:1")) == {
        **one_group, "source": None, "watermark": None}
    close = {"dimension": "airline", "name": "UAL", "close": T // 600 * 600}
    assert as_json(decode_partial(orjson.dumps(close), None, "p:0:2")) == {"kind": "close", **close}
    tick = {"tick": True, "source": 2, "watermark": T, "behind": True}
    assert as_json(decode_partial(orjson.dumps(tick), None, "p:0:3")) == {
        "kind": "partials", "source": 2, "watermark": T, "idle": False, "groups": []}


BAD_GROUPS = [
    {"dimension": "planet"}, {"name": 5}, {"partials": "many"},
    {"partials": [{"window_start": 0, "icao24": "a65527", "partial": {**PARTIAL, "count": -1}}]},
    {"partials": [{"window_start": 0, "icao24": "a65527", "partial": {**PARTIAL, "velocity_sum": None}}]},
    {"partials": [{"window_start": 0, "icao24": "a65527", "partial": {"count": 1}}]},
    {"partials": [{"window_start": "0", "icao24": "a65527", "partial": PARTIAL}]},
]


@pytest.mark.parametrize("change", [
    *({"groups": [PACKED["groups"][0], {**PACKED["groups"][1], **bad}]} for bad in BAD_GROUPS),
    {"groups": None}, {"groups": ["x"]}, {"kind": "partial"}, {"source": "x"}, {"watermark": "x"},
    {"source": None}, {"idle": "no"},
])
def test_a_malformed_partials_message_is_rejected_with_what_is_wrong(change):
    rejected = decode_partial(orjson.dumps({**PACKED, **change}), None, "p:1:9")
    assert isinstance(rejected, InvalidState) and rejected.reason == "malformed_partial", rejected
    assert rejected.poll_id == "p:1:9" and rejected.detail


def test_a_rejection_names_the_field_at_fault():
    bad = {**PACKED, "groups": [PACKED["groups"][0], {**PACKED["groups"][1], "partials": [
        {"window_start": 0, "icao24": "a65527", "partial": {**PARTIAL, "count": -1}}]}]}
    rejected = decode_partial(orjson.dumps(bad), None, "p:1:9")
    assert rejected.detail.startswith("groups[1].partials[0].partial.count=-1 is not a count"), rejected.detail


@pytest.mark.parametrize("change", [*BAD_GROUPS, {"close": "soon"}, {"source": "x"}, {"watermark": None}])
def test_a_malformed_partial_of_the_shape_before_packing_is_rejected(change):
    rejected = decode_partial(orjson.dumps({**PARTIALS, **change}), None, "p:1:9")
    assert isinstance(rejected, InvalidState) and rejected.reason == "malformed_partial", rejected


def _groups(most: int):
    return st.lists(st.fixed_dictionaries({}, optional={
        "dimension": st.sampled_from(["country", "airline", 1]), "name": json_values,
        "partials": st.lists(st.fixed_dictionaries({}, optional={
            "window_start": json_values, "icao24": json_values,
            "partial": st.fixed_dictionaries({k: json_values for k in PARTIAL})}), max_size=3)}) | json_values,
        max_size=most)


@settings(max_examples=300, deadline=None)
@given(json_values | st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["partials", "close"]) | json_values,
    "dimension": st.sampled_from(["country", "airline", 1]), "name": json_values, "close": json_values,
    "partials": st.lists(st.fixed_dictionaries({}, optional={
        "window_start": json_values, "icao24": json_values,
        "partial": st.fixed_dictionaries({k: json_values for k in PARTIAL})}), max_size=3),
    "groups": _groups(3) | json_values,
    "source": json_values, "watermark": json_values, "tick": st.just(True) | json_values,
    "idle": st.booleans() | json_values, "behind": st.booleans() | json_values}))
def test_any_partial_message_decodes_or_is_rejected(data):
    result = decode_partial(json.dumps(data).encode(), None, "p:0:0")
    assert isinstance(result, (WindowPartials, WindowClose, InvalidState))
    if isinstance(result, WindowClose):  # what the group stage then does with it must work
        assert isinstance(result.close, int) and result.dimension in ("country", "airline")
    elif isinstance(result, WindowPartials):
        from tables.windows import summarize

        for group in result.groups:
            assert group.dimension in ("country", "airline") and isinstance(group.name, str)
            for update in group.partials:
                summarize({update.icao24: update.partial})
        if result.source is not None:
            from tables.watermarks import PartitionWatermarks

            marks = PartitionWatermarks(sources=1)
            marks.hear(0, result.source, result.watermark, result.idle)
            assert marks.mark(0) == (None if result.idle else result.watermark)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["processed", "aggregated", "invalid"]), json_values | st.binary(max_size=100))
def test_the_dashboard_feed_counts_any_bad_record_and_keeps_going(kind, value):
    from web.dashboard.feed import Feed

    feed = Feed("127.0.0.1:9", {kind: f"t-{kind}"}, Traffic())
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    feed._dispatch(f"t-{kind}", raw)
    assert feed.messages + feed.malformed == 1


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_any_icao24_parameter_is_parsed_or_refused(text):
    value = params.icao24(text)
    assert value is None or (len(value) == 6 and int(value, 16) >= 0)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40) | st.integers().map(str), st.sets(st.integers(0, 2**40), max_size=5))
def test_any_window_parameter_is_a_window_or_an_error(text, starts):
    starts = {s // 600 * 600 for s in starts}
    value = params.pick_window(text, starts, 600)
    assert value is None or isinstance(value, str) or value % 600 == 0


def test_window_parameters():
    assert params.pick_window("current", {600, 1200}, 600) == 1200
    assert params.pick_window("previous", {600, 1200}, 600) == 600
    assert params.pick_window("1250", set(), 600) == 1200
    assert params.pick_window("current", set(), 600) is None
    for bad in ("soon", "1e9", "٣", "9" * 5000, ""):
        assert params.pick_window(bad, {600}, 600) == "window must be current, previous or a Unix time"


def test_a_tick_decodes_and_a_malformed_one_is_rejected():
    tick = {"kind": "partials", "source": 2, "watermark": T, "idle": True, "groups": []}
    assert as_json(decode_partial(orjson.dumps(tick), None, "p:0:3")) == tick
    legacy = {"tick": True, "source": 2, "watermark": T, "behind": False}  # "behind": read, no longer used
    assert as_json(decode_partial(orjson.dumps(legacy), None, "p:0:3")) == {**tick, "idle": False}
    for change in ({"tick": 1}, {"source": None}, {"watermark": "late"}):
        rejected = decode_partial(orjson.dumps({**legacy, **change}), None, "p:0:4")
        assert isinstance(rejected, InvalidState) and rejected.reason == "malformed_partial", (change, rejected)
    rejected = decode_partial(orjson.dumps({k: v for k, v in legacy.items() if k != "source"}), None, "p:0:4")
    assert isinstance(rejected, InvalidState), rejected


# flight-raw-data carries batches of states, one record per partition and poll (flights_app.batches).

def _states(n: int) -> list[StateVector]:
    rows = [[f"{0xa00000 + i:06x}", *ROW[1:]] for i in range(n)]
    return [validate_state(row, T, ingest_time=T + 0.5, poll_id="p-1") for row in rows]


def _batch_of(items: list) -> bytes:
    return orjson.dumps({"kind": "states", "states": items})


def test_a_poll_packs_into_one_batch_per_partition_that_decodes_to_the_same_states():
    states = _states(60)
    records = list(pack_states(states, 4))
    assert sorted(p for p, _, _ in records) == [0, 1, 2, 3]
    decoded = []
    for partition, key, value in records:
        assert partition_for(key, 4) == partition  # the key routes the batch where its states live
        valid, invalid = decode_raw(value, key, "raw", partition, 7, 4)
        assert not invalid and {partition_for(s.icao24.encode(), 4) for s in valid} == {partition}
        decoded += valid
    assert sorted(decoded, key=lambda s: s.icao24) == states


def test_a_large_poll_is_split_into_records_under_the_size_limit_in_order():
    states = _states(400)
    records = list(pack_states(states, 1, max_bytes=20_000))
    assert len(records) > 5 and all(len(value) <= 20_000 + 100 for _, _, value in records)
    unpacked = [s for p, k, v in records for s in decode_raw(v, k, "raw", p, 0, 1)[0]]
    assert unpacked == states


def test_a_bad_state_in_a_good_batch_is_rejected_with_its_place_and_the_rest_goes_on():
    states = _states(5)
    items = [orjson.loads(encode(s)) for s in states]
    items[1]["latitude"] = 95.0
    items[3] = "not a state"
    valid, invalid = decode_raw(_batch_of(items), b"a00000", "flight-raw-data", 0, 42, 1)
    assert valid == [states[0], states[2], states[4]]
    assert [(r.reason, r.poll_id, r.icao24) for r in invalid] == [
        ("latitude_out_of_range", "flight-raw-data:0:42#1", "a00001"),
        ("malformed_message", "flight-raw-data:0:42#3", None)]
    assert invalid[0].raw == items[1]  # what arrived, for the person reading the invalid topic
    for rejected in invalid:
        orjson.loads(encode(rejected))


@pytest.mark.parametrize("value, reason", [
    (b'{"kind": "states", "states": [', "not_json"),
    (b'{"kind": "states", "states": []}', "malformed_batch"),
    (b'{"kind": "states", "states": {"a": 1}}', "malformed_batch"),
    (b'{"kind": "partials", "states": [{}]}', "malformed_batch"),
    (None, "empty_message"),
])
def test_an_undecodable_batch_is_rejected_whole_once_with_its_place(value, reason):
    valid, invalid = decode_raw(value, b"a00000", "flight-raw-data", 2, 9, 4)
    assert valid == [] and len(invalid) == 1
    assert invalid[0].reason == reason and invalid[0].poll_id == "flight-raw-data:2:9"


def test_a_single_state_is_still_accepted_and_one_in_the_wrong_partition_refused():
    (state,) = _states(1)
    home = partition_for(state.icao24.encode(), 4)
    assert decode_raw(encode(state), state.icao24.encode(), "raw", home, 1, 4) == ([state], [])
    valid, (refused,) = decode_raw(encode(state), None, "raw", (home + 1) % 4, 1, 4)
    assert valid == [] and refused.reason == "wrong_partition" and f"partition {home}" in refused.detail
    items = [orjson.loads(encode(s)) for s in _states(8)]  # a batch packed for another partition count
    valid, invalid = decode_raw(_batch_of(items), b"a00000", "raw", 0, 1, 4)
    assert {s.icao24 for s in valid} == {i["icao24"] for i in items if partition_for(i["icao24"].encode(), 4) == 0}
    assert len(valid) + len(invalid) == 8 and {r.reason for r in invalid} == {"wrong_partition"}


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values | st.dictionaries(st.sampled_from([*STATE_FIELDS, "ingest_time", "poll_id"]),
                                             json_values, max_size=20), max_size=5),
       json_values)
def test_any_batch_decodes_or_is_rejected_item_by_item_never_raises(items, kind):
    for data in ({"kind": "states", "states": items}, {"kind": kind, "states": items}):
        valid, invalid = decode_raw(json.dumps(data).encode(), b"k", "raw", 0, 0, 1)
        assert len(valid) + len(invalid) in (len(items), 1)
        assert all(r.reason and r.detail for r in invalid)
        for result in [*valid, *invalid]:
            orjson.loads(encode(result))


def test_a_packed_batch_is_the_state_batch_record_and_decodes_to_its_states():
    second = validate_state(["a65528", *ROW[1:]], T, ingest_time=T + 0.5, poll_id="p-1")
    partition = partition_for(b"a65527", 4)
    states = [s for s in (STATE, second) if partition_for(s.icao24.encode(), 4) == partition]
    ((where_to, key, value),) = pack_states(states, 4)
    assert where_to == partition and key == b"a65527"
    assert orjson.loads(value) == orjson.loads(encode(StateBatch(states=states)))
    assert decode_raw(value, key, "flight-raw-data", partition, 7, 4) == (states, [])
