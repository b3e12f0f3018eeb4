"""The patches of Faust's internals (flights_app/faust_internals.py), each shown to be needed on
unpatched Faust, and the version check.

Faust never commits past a message it did not acknowledge, on the consumer's own bookkeeping
(``_committed_offset`` holds the next offset to process)."""

import asyncio
import io
from collections import defaultdict
from types import SimpleNamespace
from typing import NamedTuple

import orjson
import pytest
from faust.tables.recovery import Recovery
from faust.types.enums import ProcessingGuarantee
from intervaltree import IntervalTree

from flights_app import faust_internals

TP = ("raw", 0)


def bookkeeping(committed, acked, gap=None):
    return SimpleNamespace(_committed_offset=defaultdict(lambda: None, {TP: committed}),
                           _acked=defaultdict(list, {TP: list(acked)}),
                           _acked_index=defaultdict(set, {TP: set(acked)}),
                           _gap=defaultdict(IntervalTree, {TP: gap} if gap is not None else {}))


def test_faust_alone_commits_past_the_one_message_missing_at_the_committed_offset():
    """The defect the patch is for: offset 100 never acknowledged, 101 and 102 were; Faust commits 103."""
    assert faust_internals._original_new_offset(bookkeeping(100, [101, 102]), TP) == 103


def test_the_commit_waits_while_the_committed_offset_is_not_acknowledged():
    consumer = bookkeeping(100, [101, 102])
    assert faust_internals._new_offset(consumer, TP) is None
    assert consumer._acked[TP] == [101, 102]  # kept for when 100 comes


def test_acknowledged_runs_from_the_committed_offset_commit_as_before():
    assert faust_internals._new_offset(bookkeeping(100, [100, 101, 102]), TP) == 103
    assert faust_internals._new_offset(bookkeeping(100, [100, 101, 105]), TP) == 102  # up to the first hole
    assert faust_internals._new_offset(bookkeeping(None, [7, 8]), TP) == 9  # nothing committed yet
    assert faust_internals._new_offset(bookkeeping(100, []), TP) is None


def test_a_known_gap_at_the_committed_offset_does_not_hold_the_commit():
    gap = IntervalTree()
    gap.addi(100, 103)  # offsets 100..102 hold no message (skipped over by the consumer)
    assert faust_internals._new_offset(bookkeeping(100, [103, 104], gap), TP) == 105


def test_install_patches_the_consumer_class():
    from faust.transport.consumer import Consumer

    faust_internals.install()
    assert Consumer._new_offset is faust_internals._new_offset
    assert Consumer._add_gap is faust_internals._add_gap


# A jump in a stream's offsets is committed over only where offsets may hold no message.

def gap_consumer(compacting=False, guarantee="at_least_once", committed=90, acked=(*range(90, 100), 150, 151)):
    topic = SimpleNamespace(compacting=compacting)
    app = SimpleNamespace(conf=SimpleNamespace(processing_guarantee=ProcessingGuarantee(guarantee)),
                          topics=SimpleNamespace(_topic_name_index={"raw": [topic]}))
    consumer = bookkeeping(committed, acked)
    consumer.app = app
    return consumer


class Partition(NamedTuple):  # Faust's TP: equal to (and hashed as) the plain tuple TP
    topic: str
    partition: int


def jump(add_gap, consumer):
    """Faust's fetch loop delivered offsets 90..99, then 150 (100..149 fetched and dropped); 90..99, 150 and
    151 are acknowledged, 90 was the committed offset."""
    asyncio.run(add_gap(consumer, Partition(*TP), 100, 150))


def test_faust_alone_commits_over_messages_fetched_and_dropped():
    """The defect patch 4 is for: Faust records 100..150 as a gap and commits over 50 messages never processed."""
    consumer = gap_consumer()
    jump(faust_internals._original_add_gap, consumer)
    assert faust_internals._new_offset(consumer, TP) > 149  # over 100..149, never processed


def test_a_jump_on_a_topic_without_gaps_is_not_committed_over(caplog):
    consumer = gap_consumer()
    with caplog.at_level("WARNING", logger="flights_app.faust_internals"):
        jump(faust_internals._add_gap, consumer)
    assert not consumer._gap[TP]
    assert faust_internals._new_offset(consumer, TP) == 100  # up to the first missing offset
    consumer._committed_offset[TP] = 100
    consumer._acked[TP] = [150, 151]
    assert faust_internals._new_offset(consumer, TP) is None  # then waits there (the watchdog reads it again)
    assert "raw[0]: offsets 100..149 were fetched and never delivered" in caplog.text


@pytest.mark.parametrize("how", [{"compacting": True}, {"guarantee": "exactly_once"}])
def test_a_jump_where_offsets_may_hold_no_message_is_a_gap_as_in_faust(how):
    consumer = gap_consumer(**how)
    jump(faust_internals._add_gap, consumer)
    assert consumer._gap[TP].overlaps(100)
    assert faust_internals._new_offset(consumer, TP) > 149  # over 100..149, never processed


# After a rebalance the stream partitions are sought to their committed offsets before they resume.

STREAM, CHANGELOG = ("raw", 0), ("t-aircraft-changelog", 0)


def recovery_and_calls():
    calls = []

    async def nothing(*_args, **_kwargs):
        return None

    async def perform_seek():
        calls.append("seek")

    async def wait(coro, timeout=None):
        await coro

    consumer = SimpleNamespace(
        assignment=lambda: {STREAM, CHANGELOG}, perform_seek=perform_seek,
        resume_partitions=lambda tps: calls.append(("resume", frozenset(tps))),
        resume_flow=lambda: calls.append("flow"))
    app = SimpleNamespace(
        consumer=consumer, consumer_generation_id=3, on_rebalance_complete=SimpleNamespace(send=nothing),
        conf=SimpleNamespace(broker_request_timeout=30), flow_control=SimpleNamespace(resume=lambda: None),
        _fetcher=SimpleNamespace(maybe_start=nothing), assignor=SimpleNamespace(assigned_standbys=lambda: []),
        on_rebalance_end=lambda: calls.append("ready"))
    recovery = SimpleNamespace(
        app=app, log=SimpleNamespace(info=lambda *a: None, dev=lambda *a: None, warning=lambda *a: None),
        _set_recovery_ended=lambda: None, tables=SimpleNamespace(values=lambda: [], on_actives_ready=lambda: None,
                                                                 on_standbys_ready=lambda: None),
        _wait=wait, completed=SimpleNamespace(set=lambda: None), _is_changelog_tp=lambda tp: tp == CHANGELOG)
    return recovery, calls


def test_faust_alone_resumes_the_stream_partitions_before_it_seeks_them():
    """The defect the patch is for: whatever is fetched between the two is delivered twice."""
    recovery, calls = recovery_and_calls()
    asyncio.run(faust_internals._original_on_recovery_completed(recovery, 3))
    assert calls.index(("resume", frozenset({STREAM}))) < calls.index("seek")


def test_the_stream_partitions_are_sought_while_paused_then_resumed():
    recovery, calls = recovery_and_calls()
    asyncio.run(faust_internals.on_recovery_completed(recovery, 3))
    assert calls == ["seek", ("resume", frozenset({STREAM})), "flow", "ready"]


def test_a_rebalance_during_recovery_resumes_nothing():
    recovery, calls = recovery_and_calls()
    asyncio.run(faust_internals.on_recovery_completed(recovery, 2))  # another generation began
    assert calls == []


def test_install_patches_faust():
    faust_internals.install()
    assert Recovery.on_recovery_completed is faust_internals.on_recovery_completed


def test_a_worker_at_warning_level_keeps_the_root_logger_at_warning():
    """Faust's worker sets the root logger to DEBUG behind a terminal spinner at warning and above, so
    every debug call of Faust and aiokafka (one per message sent) builds a record only to drop it."""
    import logging

    import faust

    from flights_app.worker import Worker

    def configured(worker_class) -> logging.Logger:
        worker = worker_class.__new__(worker_class)
        worker.spinner = faust.worker.terminal.Spinner(file=io.StringIO())
        root = logging.Logger("root-under-test", logging.WARNING)
        root.addHandler(logging.StreamHandler(io.StringIO()))
        worker_class.on_setup_root_logger(worker, root, logging.WARNING)
        return root

    assert configured(faust.Worker).getEffectiveLevel() == logging.DEBUG  # Faust's own, the defect
    root = configured(Worker)
    assert root.getEffectiveLevel() == logging.WARNING and len(root.handlers) == 1
    assert not root.isEnabledFor(logging.DEBUG)


def test_the_producer_buffer_no_longer_stalls_the_stream_at_faust_s_100_messages():
    from faust.transport.producer import ProducerBuffer

    import flights_app.app  # noqa: F401 - creating the app installs the patches

    assert faust_internals.PRODUCER_BUFFER_MESSAGES > 100
    assert ProducerBuffer.max_messages == faust_internals.PRODUCER_BUFFER_MESSAGES


def test_an_untested_faust_version_is_refused_in_one_line_naming_it_unless_allowed():
    assert faust_internals.version_problem(faust_internals.TESTED[0], allow_untested=False) is None
    problem = faust_internals.version_problem("0.16.0", allow_untested=False)
    assert "faust-streaming 0.16.0" in problem and "FLIGHTS_FAUST_UNTESTED=1" in problem and "\n" not in problem
    assert faust_internals.version_problem("0.16.0", allow_untested=True) is None


def test_the_worker_stops_on_an_untested_faust_version_with_one_line(tmp_path):
    import subprocess
    import sys

    code = ("import faust; faust.__version__ = '0.16.0'; import sys; sys.argv = ['flights-app', 'worker']; "
            "from flights_app.cli import main; main()")
    env = {"PATH": "/usr/bin:/bin", "FLIGHTS_DATADIR": str(tmp_path), "FLIGHTS_BROKER": "kafka://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flights-app: faust-streaming 0.16.0 is installed"), done.stderr


def _records():
    from flights_app.records import Alert, InvalidState, ScoredState, StateVector
    state = dict(icao24="abc123", callsign="AFR12", origin_country="France", time_position=1_790_000_000,
                 last_contact=1_790_000_001, longitude=2.0, latitude=48.0, baro_altitude=1000.0, on_ground=False,
                 velocity=200.0, true_track=90.0, vertical_rate=None, sensors=[1, 2], geo_altitude=1010.0,
                 squawk="7700", spi=False, position_source=0, category=3, ingest_time=1.5, poll_id="p")
    sv = StateVector(**state)
    scored = dict(state=sv, features={"velocity": 200.0}, flight_phase="cruise", ml_anomaly_score=0.4,
                  ml_is_anomaly=False, anomaly_reason=None, alerts=["squawk 7700"], data_faults=[],
                  model_version="abc", processed_time=2.5)
    return [(StateVector, state), (ScoredState, scored),
            (InvalidState, dict(reason="r", detail="d", field_name=None, raw=[1], icao24=None, ingest_time=1.0,
                                poll_id="p")),
            (Alert, dict(icao24="abc123", callsign=None, event_time=1, last_contact=1, latitude=1.0, longitude=2.0,
                         reasons=["x"], ml_anomaly_score=0.1, squawk=None))]


def test_a_record_built_from_checked_fields_is_the_record_its_constructor_builds():
    for record_type, fields in _records():
        built = faust_internals.built(record_type, dict(fields))
        made = record_type(**fields)
        assert built == made and built.asdict() == made.asdict()
        assert built.to_representation() == made.to_representation()
        assert faust_internals.fields_of(built) == faust_internals.fields_of(made) == made.to_representation()


def test_a_record_is_not_built_without_every_field():
    record_type, fields = _records()[0]
    with pytest.raises(TypeError, match="StateVector needs"):
        faust_internals.built(record_type, {k: v for k, v in fields.items() if k != "poll_id"})


def test_a_record_encodes_to_the_json_faust_s_own_representation_gives():
    from flights_app.publish import encode
    for record_type, fields in _records():
        made = record_type(**fields)
        faust_json = orjson.dumps(made.to_representation(), default=lambda r: r.to_representation())
        assert orjson.loads(encode(made)) == orjson.loads(faust_json)


def test_the_producer_under_faust_s_is_aiokafka_s_the_same_one_each_time(kafka):
    """``Outbox.send_many`` hands record batches to the aiokafka producer Faust's producer runs."""
    import faust
    from aiokafka import AIOKafkaProducer

    async def producers():
        app = faust.App("internals-producer", broker=kafka.url)
        await app.producer.start()
        try:
            return faust_internals.aiokafka_producer(app), faust_internals.aiokafka_producer(app)
        finally:
            await app.producer.stop()

    first, again = asyncio.run(producers())
    assert isinstance(first, AIOKafkaProducer) and again is first
