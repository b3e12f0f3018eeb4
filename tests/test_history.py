"""The history without a broker: files named by their offset range and written whole, leftovers of an
uncommitted range deleted, compaction that keeps each fact once, retention, queries that never show a
duplicate, bad requests refused with what is accepted, damaged files skipped."""

from __future__ import annotations

import logging
from collections import namedtuple
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from flights_app.history.layout import FileName, current, files_in, hour_dir, hour_of, hours_between
from flights_app.history.query import (
    History,
    QueryError,
    ask,
    parse_bbox,
    parse_dimension,
    parse_icao24,
    parse_kind,
    parse_range,
    parse_time,
)
from flights_app.history.store import HistoryStore
from flights_app.history.writer import HistoryWriter
from flights_app.settings import load_settings

TP = namedtuple("TP", "topic partition")
PROCESSED, AGGREGATED = "flight-processed-data", "flight-aggregated-data"
T0 = 1_765_000_800  # 2025-12-06 06:00:00 UTC, an hour's start


def scored(icao24: str, when: int, lat: float = 48.9, lon: float = 2.4, anomaly: bool = False,
           faults: tuple = ()) -> bytes:
    state = {"icao24": icao24, "callsign": f"AFR{icao24[:3]}", "origin_country": "France", "time_position": when,
             "last_contact": when, "longitude": lon, "latitude": lat, "baro_altitude": 3000.0, "on_ground": False,
             "velocity": 200.0, "true_track": 90.0, "vertical_rate": 0.0, "geo_altitude": 3100.0,
             "squawk": "1000", "ingest_time": when + 1.5, "poll_id": 1}
    return orjson.dumps({"state": state, "features": {}, "flight_phase": "cruise", "ml_anomaly_score": 0.9 if anomaly
                         else 0.1, "ml_is_anomaly": anomaly, "anomaly_reason": None, "alerts": [],
                         "data_faults": list(faults), "model_version": "m1", "processed_time": when + 2.0})


def window(name: str, start: int, events: int, final: bool, emitted_at: float) -> bytes:
    return orjson.dumps({"dimension": "country", "name": name, "window_start": start, "window_end": start + 600,
                         "events": events, "aircraft": 1, "final": final, "emitted_at": emitted_at})


@pytest.fixture
def writer(tmp_path):
    settings = load_settings({"FLIGHTS_HISTORY_DIR": str(tmp_path / "history")})
    return HistoryWriter(settings)


def feed(writer: HistoryWriter, tp, records: list[bytes], first: int = 0) -> int:
    for i, value in enumerate(records):
        writer.add(tp, first + i, value)
    return writer.write(tp)


def test_names_say_the_range_and_a_wider_range_supersedes():
    name = FileName("p-flight-processed-data", 3, 10, 99)
    assert FileName.parse(name.name) == name
    assert FileName.parse(".tmp-" + name.name) is None and FileName.parse("x.parquet") is None
    wider = FileName("p-flight-processed-data", 3, 0, 120)
    assert wider.covers(name) and not name.covers(wider) and not name.covers(name)
    assert not FileName("p-flight-processed-data", 2, 0, 120).covers(name)
    assert [h.hour for h in hours_between(T0 - 1, T0 + 3600)] == [5, 6, 7]


def test_a_range_is_filed_by_event_hour_and_read_back_once_per_state(writer, tmp_path):
    tp = TP(PROCESSED, 1)
    records = [scored("3c6444", T0 + 10 * i) for i in range(400)]  # 4,000 s: two hour boundaries
    records.insert(100, records[99])  # the scoring's at-least-once delivery: the same state twice
    records.insert(50, b"not json")  # not a record: skipped, counted
    records.insert(60, scored("3c6444", 10**15))  # an event time no calendar holds: skipped, counted
    assert feed(writer, tp, records) == len(records)
    hours = sorted(p.parent.name for p in (tmp_path / "history" / "states").rglob("*.parquet"))
    assert hours == ["hour=06", "hour=07"]
    assert writer.stats.skipped == 2 and writer.stats.rows == {"states": 401}
    history = History(tmp_path / "history")
    track = history.aircraft("3c6444", T0, T0 + 4000).as_dicts()
    assert [row["event_time"] for row in track] == [T0 + 10 * i for i in range(400)]  # once each, in order
    assert track[0]["callsign"] == "AFR3c6" and track[0]["ml_anomaly_score"] == pytest.approx(0.1)


def test_leftovers_of_an_uncommitted_range_are_deleted_and_the_range_rewritten_the_same(writer, tmp_path):
    tp = TP(PROCESSED, 0)
    committed = feed(writer, tp, [scored("abc123", T0 + i) for i in range(10)])
    leftover = feed(writer, tp, [scored("abc123", T0 + 10 + i) for i in range(10)], first=committed)
    assert leftover == 20
    store = HistoryStore(tmp_path / "history")
    assert store.drop_uncommitted("states", PROCESSED, 0, committed) == 1  # killed before committing 20
    assert store.drop_uncommitted("states", PROCESSED, 1, 0) == 0  # another partition's: kept
    # The range is read again, cut elsewhere this time (more had arrived): neither new file covers the
    # leftover's range, so without its deletion offsets 10-19 would be kept twice.
    feed(writer, tp, [scored("abc123", T0 + 10 + i) for i in range(5)], first=committed)
    feed(writer, tp, [scored("abc123", T0 + 15 + i) for i in range(10)], first=committed + 5)
    rows = History(tmp_path / "history").aircraft("abc123", T0, T0 + 100).rows
    assert len(rows) == 25
    assert offsets_held(store) == list(range(25))  # each offset in one file: nothing kept twice


def offsets_held(store: HistoryStore) -> list[int]:
    """Every (kafka) offset the current files hold, with repeats."""
    import pyarrow.parquet as pq

    return sorted(o for path in store.files("states") for o in pq.read_table(path)["kafka_offset"].to_pylist())


def test_compaction_merges_an_hour_into_one_file_keeping_each_fact_once(writer, tmp_path):
    tp = TP(PROCESSED, 2)
    offset = 0
    for batch in range(5):
        records = [scored(f"a0000{i}", T0 + 60 * batch + i) for i in range(3)]
        records.append(records[0])  # a duplicate in every batch
        offset = feed(writer, tp, records, first=offset)
    windows = TP(AGGREGATED, 0)
    end = feed(writer, windows, [window("France", T0, 5, False, T0 + 5), window("France", T0, 9, True, T0 + 700),
                                 window("France", T0, 7, False, T0 + 300)])
    store = HistoryStore(tmp_path / "history")
    directory = hour_dir(store.root, "states", hour_of(T0))
    assert len(files_in(directory)) == 5
    before = History(store.root).anomalies(T0, T0 + 3599, "any").rows
    done = store.compact("states", closed_before=hour_of(T0 + 7200))
    assert len(done) == 1 and [n for n, _ in files_in(directory)] == [FileName(PROCESSED, 2, 0, offset - 1)]
    import pyarrow.parquet as pq

    assert pq.read_table(done[0]).num_rows == 15  # 20 rows, 5 duplicates
    assert History(store.root).anomalies(T0, T0 + 3599, "any").rows == before
    assert len(store.compact("windows", closed_before=hour_of(T0 + 7200))) == 0  # one file: nothing to merge
    final = History(store.root).windows("country", T0, T0 + 3600).as_dicts()
    assert [(w["events"], w["final"]) for w in final] == [(9, True)] and end == 3


def test_a_crash_after_compaction_leaves_the_superseded_files_unread(writer, tmp_path):
    tp = TP(PROCESSED, 0)
    feed(writer, tp, [scored("b00001", T0 + i) for i in range(4)])
    feed(writer, tp, [scored("b00001", T0 + 4 + i) for i in range(4)], first=4)
    directory = hour_dir(tmp_path / "history", "states", hour_of(T0))
    small = files_in(directory)
    # the merged file written, the small ones not yet deleted (killed in between)
    feed(writer, tp, [scored("b00001", T0 + i) for i in range(8)], first=0)
    assert len(files_in(directory)) == 3 and [n for n, _ in current(files_in(directory))] == [
        FileName(PROCESSED, 0, 0, 7)]
    assert len(History(tmp_path / "history").aircraft("b00001", T0, T0 + 10).rows) == 8
    HistoryStore(tmp_path / "history").compact("states", closed_before=hour_of(T0 + 7200))
    assert all(not path.exists() for _, path in small)


def test_retention_deletes_whole_hours_older_than_the_limit(writer, tmp_path):
    tp = TP(PROCESSED, 0)
    feed(writer, tp, [scored("c00001", T0 - 86400 * 3), scored("c00001", T0)])
    store = HistoryStore(tmp_path / "history")
    assert store.expire(datetime.fromtimestamp(T0, UTC) - timedelta(days=2)) == 1
    assert [p.parent.parent.name for p in store.root.rglob("*.parquet")] == ["date=2025-12-06"]


def test_area_is_the_newest_state_of_each_aircraft_in_the_box_within_15_s(writer, tmp_path):
    feed(writer, TP(PROCESSED, 0), [
        scored("d00001", T0 + 100, lat=48.9, lon=2.4), scored("d00001", T0 + 110, lat=48.95, lon=2.45),
        scored("d00002", T0 + 90, lat=48.9, lon=2.4),  # 20 s before: gone from the picture
        scored("d00003", T0 + 105, lat=51.5, lon=0.0),  # outside the box
        scored("d00004", T0 + 111, lat=49.0, lon=2.5),  # after the moment
    ])
    rows = History(tmp_path / "history").area(parse_bbox("48.5,1.8,49.2,3.0"), T0 + 110).as_dicts()
    assert [(r["icao24"], r["latitude"]) for r in rows] == [("d00001", 48.95)]


def test_a_damaged_file_is_skipped_with_one_warning(writer, tmp_path, caplog):
    feed(writer, TP(PROCESSED, 0), [scored("e00001", T0 + i) for i in range(3)])
    directory = hour_dir(tmp_path / "history", "states", hour_of(T0))
    (directory / FileName(PROCESSED, 1, 0, 9).name).write_bytes(b"PAR1 half a file")
    history = History(tmp_path / "history")
    with caplog.at_level(logging.WARNING, logger="flights_app.history"):
        assert len(history.aircraft("e00001", T0, T0 + 10).rows) == 3
        assert len(history.aircraft("e00001", T0, T0 + 10).rows) == 3
    assert sum("not a readable Parquet file" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize(("call", "says"), [
    (lambda: parse_icao24("3C644"), "6 hexadecimal digits"),
    (lambda: parse_icao24("3c6444' OR 1=1 --"), "6 hexadecimal digits"),
    (lambda: parse_time("at", "yesterday"), "Unix seconds or ISO 8601"),
    (lambda: parse_time("at", "1; DROP TABLE history"), "Unix seconds or ISO 8601"),
    (lambda: parse_time("at", "-5"), "out of range"),
    (lambda: parse_time("at", None), "required"),
    (lambda: parse_range("2026-12-07T10:00:00Z", "2026-12-07T09:00:00Z", 24), "before"),
    (lambda: parse_range(0, 25 * 3600, 24), "at most 24"),
    (lambda: parse_bbox("48.5,1.8,49.2"), "lamin,lomin,lamax,lomax"),
    (lambda: parse_bbox("49.2,1.8,48.5,3.0"), "lamin < lamax"),
    (lambda: parse_bbox("1,2,3,4) UNION SELECT 1"), "lamin,lomin,lamax,lomax"),
    (lambda: parse_kind("model; DELETE"), "model, fault, any"),
    (lambda: parse_dimension("country' --", ("country", "airline")), "country, airline"),
])
def test_bad_requests_are_refused_with_what_is_accepted(call, says):
    with pytest.raises(QueryError, match=says):
        call()


def test_times_read_as_unix_seconds_or_iso_8601():
    assert parse_time("at", "1765000800") == parse_time("at", "2025-12-06T06:00:00Z") == T0
    assert parse_time("at", "2025-12-06T07:00:00+01:00") == T0 and parse_time("at", "2025-12-06T06:00:00") == T0


def test_one_place_turns_given_parameters_into_a_checked_question(writer, tmp_path):
    """`flights-app history` and `/history/...` both go through ``ask``: the same checks, the same rows."""
    feed(writer, TP(PROCESSED, 0), [scored("f00001", T0 + i, anomaly=i == 2) for i in range(5)])
    history, limits = History(tmp_path / "history"), {"max_hours": 24, "dimensions": ("country",)}
    track = ask(history, "aircraft", {"icao24": "F00001", "from": str(T0), "to": "2025-12-06T06:00:03Z"}, **limits)
    assert [r["event_time"] for r in track.as_dicts()] == [T0, T0 + 1, T0 + 2, T0 + 3] and not track.truncated
    flagged = ask(history, "anomalies", {"from": T0, "to": T0 + 10, "kind": "model"}, **limits)
    assert [r["event_time"] for r in flagged.as_dicts()] == [T0 + 2]
    assert ask(history, "windows", {"dimension": "country", "from": T0, "to": T0 + 10}, **limits).rows == []
    with pytest.raises(QueryError, match="to is required"):
        ask(history, "aircraft", {"icao24": "f00001", "from": T0}, **limits)
    with pytest.raises(QueryError, match="expected one of aircraft, area, anomalies, windows"):
        ask(history, "tracks", {}, **limits)


def test_one_history_answers_questions_from_several_threads_at_once(writer, tmp_path):
    """The endpoints ask one ``History`` from a pool of threads: each query reads its own files (a view
    shared between the threads' cursors would let one query read another's files)."""
    from concurrent.futures import ThreadPoolExecutor

    feed(writer, TP(PROCESSED, 0), [scored("f00001", T0 + i) for i in range(5)])
    feed(writer, TP(AGGREGATED, 0), [window("France", T0, 7, True, T0 + 700.0)])
    history = History(tmp_path / "history")
    questions = [("track", lambda: [r["event_time"] for r in history.aircraft("f00001", T0, T0 + 60).as_dicts()]),
                 ("windows", lambda: [r["events"] for r in history.windows("country", T0, T0 + 60).as_dicts()])]
    with ThreadPoolExecutor(4) as pool:
        answers = [(name, pool.submit(ask_)) for _ in range(40) for name, ask_ in questions]
        got = [(name, future.result()) for name, future in answers]
    assert {name: answer for name, answer in got} == {"track": [T0 + i for i in range(5)], "windows": [7]}
    assert all(answer == {"track": [T0 + i for i in range(5)], "windows": [7]}[name] for name, answer in got)


def test_the_lag_is_what_the_assigned_partitions_hold_beyond_their_last_commit(writer):
    """/metrics's flights_history_lag: written and committed records are not behind; read and pending are."""
    class Consumer:
        ends = {TP(PROCESSED, 0): 120, TP(PROCESSED, 1): 50, TP(AGGREGATED, 0): None}  # None: not fetched yet

        def assignment(self):
            return set(self.ends)

        def highwater(self, tp):
            return self.ends[tp]

    writer.consumer = Consumer()
    writer.committed.update({TP(PROCESSED, 0): 100, TP(PROCESSED, 1): 50, TP(AGGREGATED, 0): 0})
    writer.note_lag()
    assert writer.stats.lag == {PROCESSED: 20, AGGREGATED: 0, "flight-alerts": 0}
    writer.committed[TP(PROCESSED, 0)] = 120
    writer.note_lag()
    assert writer.stats.lag[PROCESSED] == 0


def test_a_track_reads_only_the_partition_its_key_hashes_to_on_a_topic_of_one_recorded_count(writer, tmp_path):
    from flights_app.partitioner import partition_for

    home = partition_for(b"a1b2c3", 4)
    feed(writer, TP(PROCESSED, home), [scored("a1b2c3", T0 + i) for i in range(5)])
    # a row no producer would write (the aircraft in another partition) shows which files are read
    feed(writer, TP(PROCESSED, (home + 1) % 4), [scored("a1b2c3", T0 + 100)])
    root = tmp_path / "history"

    def track() -> list[int]:
        return [r["event_time"] for r in History(root).aircraft("a1b2c3", T0, T0 + 200).as_dicts()]

    assert len(track()) == 6  # no count recorded: every file read
    HistoryStore(root).note_partitions(PROCESSED, 4)  # what the writer does when it is assigned the topic
    HistoryStore(root).note_partitions(PROCESSED, 4)
    assert track() == [T0 + i for i in range(5)]  # the key's partition only
    HistoryStore(root).note_partitions(PROCESSED, 6)  # partitions were added to the topic: keys moved
    assert HistoryStore(root).partitions() == {} and len(track()) == 6
    assert len(History(root, {"another-topic": 4}).aircraft("a1b2c3", T0, T0 + 200).rows) == 6


def test_retention_counts_back_from_the_newest_hour_held_so_a_replay_of_old_data_keeps_its_days(tmp_path):
    writer = HistoryWriter(load_settings({"FLIGHTS_HISTORY_DIR": str(tmp_path / "history"),
                                          "FLIGHTS_HISTORY_DAYS": "2"}))
    feed(writer, TP(PROCESSED, 0), [scored("c00002", T0 - 86400 * 3), scored("c00002", T0 - 86400),
                                    scored("c00002", T0)])
    writer.chores(now=T0 + 400 * 86400)  # a year later: the recording's newest day is what counts
    kept = sorted(p.parent.parent.name for p in (tmp_path / "history").rglob("*.parquet"))
    assert kept == ["date=2025-12-05", "date=2025-12-06"] and writer.stats.expired_hours == 1
    feed(writer, TP(PROCESSED, 0), [scored("c00002", T0 + 400 * 86400)], first=3)  # live data arrives
    writer.chores(now=T0 + 400 * 86400)
    assert [p.parent.parent.name for p in (tmp_path / "history").rglob("*.parquet")] == ["date=2027-01-10"]
