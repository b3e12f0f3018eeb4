"""The group stage's watermarks, one per partials partition (tables.watermarks), and the sources' ticks."""

from __future__ import annotations

from tables.watermarks import PartitionWatermarks, TickSchedule

IDLE = 10.0


def heard_from_all(marks: PartitionWatermarks, partition: int, watermark: float, now: float = 0.0) -> None:
    for source in range(marks.sources):
        marks.hear(partition, source, watermark, behind=False, now=now)


def test_a_partition_that_lags_keeps_its_own_lower_watermark():
    """The soak's defect: partials partition 1, consumed faster while catching up, has heard every
    source at 2,000; partition 0 has heard them only at 1,000 (its messages after that are still
    waiting). Partition 0's windows are judged by 1,000, not by what partition 1 heard."""
    marks = PartitionWatermarks(sources=3, idle_s=IDLE)
    heard_from_all(marks, 0, 1000.0)
    heard_from_all(marks, 1, 2000.0)
    assert marks.mark(0) == 1000.0 and marks.mark(1) == 2000.0
    assert marks.lowest() == 1000.0
    assert marks.mark(2) is None  # not heard: unknown, not borrowed from another partition


def test_a_partitions_watermark_is_its_slowest_working_source_and_never_goes_back():
    marks = PartitionWatermarks(sources=2, idle_s=IDLE)
    marks.hear(0, 0, 500.0, behind=False, now=0.0)
    assert marks.mark(0) is None  # waits to hear every source (or the idle time) after a start
    marks.hear(0, 1, 300.0, behind=False, now=1.0)
    assert marks.mark(0) == 300.0
    marks.hear(0, 1, 400.0, behind=False, now=2.0)
    assert marks.mark(0) == 400.0
    marks.hear(0, 1, 350.0, behind=False, now=3.0)  # a source's older watermark (a replay) changes nothing
    assert marks.mark(0) == 400.0


def test_after_the_idle_time_a_start_goes_on_without_a_silent_source():
    marks = PartitionWatermarks(sources=2, idle_s=IDLE)
    marks.hear(0, 0, 500.0, behind=False, now=0.0)
    marks.hear(0, 0, 600.0, behind=False, now=IDLE - 0.1)
    assert marks.mark(0) is None
    marks.hear(0, 0, 700.0, behind=False, now=IDLE)
    assert marks.mark(0) == 700.0


def test_an_idle_source_stops_holding_the_clock_but_one_with_a_backlog_holds_it():
    marks = PartitionWatermarks(sources=3, idle_s=IDLE)
    marks.hear(0, 0, 100.0, behind=False, now=0.0)  # then idle (its aircraft landed)
    marks.hear(0, 1, 200.0, behind=True, now=0.0)  # then slow: working through a backlog
    marks.hear(0, 2, 900.0, behind=False, now=0.0)
    assert marks.mark(0) == 100.0
    marks.hear(0, 2, 950.0, behind=False, now=IDLE + 1)
    assert marks.mark(0) == 200.0  # source 0 fell idle; source 1 said it had a backlog
    marks.hear(0, 1, 300.0, behind=False, now=IDLE + 2)
    assert marks.mark(0) == 300.0
    marks.advance(now=2 * IDLE + 3)
    assert marks.mark(0) == 300.0  # every source idle: the watermark stays where it was


def test_a_source_ticks_each_partition_it_has_not_written_to_for_a_while():
    schedule = TickSchedule(partitions=4, every_s=1.0)
    assert schedule.due(source=0, now=0.0, watermark=100.0) == [0, 1, 2, 3]
    schedule.wrote(0, 2, now=0.5, watermark=100.0)  # a partial went to partition 2
    assert schedule.due(0, now=0.9, watermark=100.0) == []
    assert schedule.due(0, now=1.0, watermark=100.0) == [0, 1, 3]  # a working source is heard
    assert schedule.due(0, now=1.5, watermark=100.0) == [2]
    assert schedule.due(1, now=1.5, watermark=50.0) == [0, 1, 2, 3]  # each source on its own


def test_between_batches_a_source_ticks_only_where_its_watermark_rose():
    schedule = TickSchedule(partitions=3, every_s=1.0)
    schedule.due(0, now=0.0, watermark=100.0)
    schedule.wrote(0, 1, now=0.0, watermark=90.0)  # a partial with the batch's lowest watermark
    assert schedule.due(0, now=5.0, watermark=100.0, rose_only=True) == [1]
    assert schedule.due(0, now=9.0, watermark=100.0, rose_only=True) == []  # nothing new: let it fall idle
    assert schedule.due(0, now=9.0, watermark=120.0, rose_only=True) == [0, 1, 2]


def test_the_window_clock_closes_each_window_once_and_scans_only_when_a_horizon_moves():
    from tables.clock import WindowClock

    clock = WindowClock(size_s=600, grace_s=30, expiry_s=600, partitions=1, idle_s=10)
    assert clock.saw(0, 1000) == 1000 and clock.saw(0, 900) == 1000  # a watermark never goes back
    assert not clock.late(900, 1000) and clock.late(500, 1230) and clock.window_of(1000) == 600
    clock.heard(0, source=0, watermark=1229, behind=False, now=0.0)
    windows = {("country", "X", 600), ("airline", "Y", 1200)}
    assert clock.to_close(windows, lambda w: 0, lambda w: False, now=0.0) == []  # [600, 1200) closes at 1230
    clock.heard(0, source=0, watermark=1230, behind=False, now=1.0)
    assert clock.to_close(windows, lambda w: 0, lambda w: False, now=1.0) == [("country", "X", 600)]
    assert clock.to_close(windows, lambda w: 0, lambda w: False, now=1.0) == []  # asked for already
    clock.finished(("country", "X", 600))
    assert clock.to_close(windows, lambda w: 0, lambda w: True, now=1.0) == []  # its final is out
    # expiry: a scan only when a watermark crosses into a window that may expire
    assert clock.aircraft_scan_due() and not clock.aircraft_scan_due()
    clock.saw(0, 1100)
    assert not clock.aircraft_scan_due()
    clock.saw(0, 1200 + 630 + 600)
    assert clock.aircraft_scan_due() and clock.expired(600, clock.sources[0])
    assert clock.groups_scan_due(finals_published=0) and not clock.groups_scan_due(finals_published=0)
    assert clock.groups_scan_due(finals_published=1)
    # after a rebalance, the next settled flush republishes, once
    clock.rebalanced()
    assert not clock.take_republish(settled=False) and clock.take_republish(settled=True)
    assert not clock.take_republish(settled=True)
