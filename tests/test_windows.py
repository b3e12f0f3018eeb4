"""Window arithmetic and aggregates: boundaries, lateness, replayed partials."""

import pytest

from tables.windows import Partial, airline_of, is_expired, is_late, summarize, window_start

SIZE = 600


def test_an_event_exactly_at_a_boundary_opens_the_next_window():
    assert window_start(1200, SIZE) == 1200
    assert window_start(1199.999, SIZE) == 600
    assert window_start(0, SIZE) == 0


def test_lateness_is_judged_against_the_watermark_and_the_grace():
    # window [600, 1200), grace 30 s: it closes once the watermark reaches 1230
    assert not is_late(700, watermark=1229, size_s=SIZE, grace_s=30)
    assert is_late(700, watermark=1230, size_s=SIZE, grace_s=30)
    assert not is_late(1200, watermark=1230, size_s=SIZE, grace_s=30)  # next window, still open


@pytest.mark.parametrize("callsign, airline", [
    ("DLH4AB", "DLH"), ("NKS2003 ", "NKS"), ("N280PC", None), ("", None), (None, None), ("LXJ444", "LXJ"),
])
def test_airline_is_the_icao_prefix_of_an_airline_callsign(callsign, airline):
    assert airline_of(callsign) == airline


def test_summary_sums_partials_and_a_replayed_partial_counts_once():
    a, b = Partial(), Partial()
    a.add(200.0, 10000.0, anomaly=False, on_ground=False, emergency=False)
    a.add(220.0, 10100.0, anomaly=True, on_ground=False, emergency=True)
    b.add(0.0, None, anomaly=False, on_ground=True, emergency=False)
    partials = {"aaaaaa": a.as_dict(), "bbbbbb": b.as_dict()}
    s = summarize(partials)
    assert (s["events"], s["aircraft"], s["anomalies"], s["on_ground"], s["emergencies"]) == (3, 2, 1, 1, 1)
    assert (s["velocity_min"], s["velocity_max"]) == (0.0, 220.0)
    assert s["velocity_mean"] == pytest.approx(140.0)
    assert (s["altitude_min"], s["altitude_mean"], s["altitude_max"]) == (10000.0, 10050.0, 10100.0)
    partials["aaaaaa"] = a.as_dict()  # the same partial again: an upsert, not an addition
    assert summarize(partials) == s
    assert summarize({})["events"] == 0


def test_a_window_keeps_each_aircraft_s_newest_partial_whatever_order_copies_arrive_in():
    from tables.windows import upsert_partial

    older, newer = Partial(), Partial()
    older.add(200.0, 10000.0, anomaly=False, on_ground=False, emergency=False)
    newer.add(200.0, 10000.0, anomaly=False, on_ground=False, emergency=False)
    newer.add(210.0, 10100.0, anomaly=False, on_ground=False, emergency=False)
    partials: dict = {}
    assert upsert_partial(partials, "a", older.as_dict()) and upsert_partial(partials, "a", newer.as_dict())
    assert not upsert_partial(partials, "a", older.as_dict())  # an older copy arriving late
    assert partials["a"] == newer.as_dict() and upsert_partial(partials, "a", newer.as_dict())  # a replay


def test_a_window_expires_once_closed_for_the_expiry():
    # window [600, 1200), grace 30, expiry 100: closed at 1230, gone at 1330
    assert not is_expired(600, watermark=1329.9, size_s=SIZE, grace_s=30, expiry_s=100)
    assert is_expired(600, watermark=1330, size_s=SIZE, grace_s=30, expiry_s=100)
    assert not is_expired(1200, watermark=1330, size_s=SIZE, grace_s=30, expiry_s=100)


def test_keys_without_the_separator_partition_as_kafkas_default_partitioner():
    import random

    from aiokafka.partitioner import DefaultPartitioner

    from flights_app.partitioner import partitioner

    rng = random.Random(7)
    for _ in range(2000):
        key = "".join(rng.choice("0123456789abcdef|xyz ") for _ in range(rng.randint(1, 20))).encode()
        n = rng.randint(1, 64)
        assert partitioner(key, list(range(n)), list(range(n))) == DefaultPartitioner()(key, list(range(n)), [])


def test_a_table_key_lands_in_the_partition_of_its_stream_key():
    from flights_app.partitioner import partitioner
    from tables.keys import final_key, group_key, group_name, parse_group_key, window_of_key

    parts = list(range(12))
    key = group_key("country", "United States", 1800, 7)
    assert partitioner(key.encode(), parts, parts) == partitioner(group_name("country", "United States").encode(),
                                                                  parts, parts)
    assert parse_group_key(key) == ("country", "United States", 1800, "7") and window_of_key(key) == 1800
    assert parse_group_key(final_key("airline", "UAL", 600)) == ("airline", "UAL", 600, "final")


def test_a_batch_s_partials_split_into_messages_of_at_most_so_many_partials_in_order():
    from tables.window_core import GroupPartials, PartialUpdate, partials_chunks

    groups = [GroupPartials("country", f"c{g}", [PartialUpdate(0, f"{g}-{i}", {}) for i in range(n)])
              for g, n in enumerate([3, 7, 0, 1, 4])]
    chunks = partials_chunks(groups, 4)
    assert [sum(len(g.partials) for g in chunk) for chunk in chunks] == [4, 4, 4, 3]
    flat = [(g.name, u.icao24) for chunk in chunks for g in chunk for u in g.partials]
    assert flat == [(g.name, u.icao24) for g in groups for u in g.partials]
    assert partials_chunks([], 4) == [[]] and partials_chunks(groups[:1], 1000) == [groups[:1]]


def test_an_aircraft_window_counts_each_event_time_once_in_its_bitmask():
    from tables.window_core import WindowCount, newest_seen, seen_mask

    window = {"seen": "", "partial": {}}
    count = WindowCount(window, 600, ())
    assert [count.mark(t) for t in (605, 610, 605, 1199, 600)] == [True, True, False, True, True]
    count.partial.count += 4
    assert count.close() is window and window["partial"]["count"] == 4
    assert isinstance(window["seen"], str) and len(window["seen"]) <= 600 // 4
    assert seen_mask(window, 600) == (1 << 0) | (1 << 5) | (1 << 10) | (1 << 599)
    assert newest_seen({"600": window, "0": {"seen": format(1 << 7, "x")}}) == 1199
    assert newest_seen({}) is None


def test_an_entry_written_with_a_list_of_event_times_reads_and_counts_alike():
    from tables.window_core import WindowCount, newest_seen, seen_mask

    old = {"seen": [605, 610], "partial": {"count": 2}}
    assert seen_mask(old, 600) == (1 << 5) | (1 << 10)
    assert newest_seen({"600": dict(old)}) == 610
    count = WindowCount(old, 600, ())
    assert not count.mark(610) and count.mark(615)
    count.close()
    assert seen_mask(old, 600) == (1 << 5) | (1 << 10) | (1 << 15) and old["partial"]["count"] == 2
