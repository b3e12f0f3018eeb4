"""The group stage's watermarks, one per partials partition (tables.watermarks), and the sources' ticks."""

from __future__ import annotations

from tables.watermarks import PartitionWatermarks, TickSchedule

IDLE = 10.0


def heard_from_all(marks: PartitionWatermarks, partition: int, watermark: float) -> None:
    for source in range(marks.sources):
        marks.hear(partition, source, watermark, idle=False)


def test_a_partition_that_lags_keeps_its_own_lower_watermark():
    """The soak's defect: partials partition 1, consumed faster while catching up, has heard every
    source at 2,000; partition 0 has heard them only at 1,000 (its messages after that are still
    waiting). Partition 0's windows are judged by 1,000, not by what partition 1 heard."""
    marks = PartitionWatermarks(sources=3)
    heard_from_all(marks, 0, 1000.0)
    heard_from_all(marks, 1, 2000.0)
    assert marks.mark(0) == 1000.0 and marks.mark(1) == 2000.0
    assert marks.lowest() == 1000.0
    assert marks.mark(2) is None  # not heard: unknown, not borrowed from another partition


def test_a_partitions_watermark_is_its_slowest_working_source_and_never_goes_back():
    marks = PartitionWatermarks(sources=2)
    marks.hear(0, 0, 500.0, idle=False)
    assert marks.mark(0) is None  # waits to hear every source after a start
    marks.hear(0, 1, 300.0, idle=False)
    assert marks.mark(0) == 300.0
    marks.hear(0, 1, 400.0, idle=False)
    assert marks.mark(0) == 400.0
    marks.hear(0, 1, 350.0, idle=False)  # a source's older watermark (a replay) changes nothing
    assert marks.mark(0) == 400.0


def test_a_silent_source_holds_the_clock_however_long_it_is_silent():
    """A source nobody consumes (its worker killed, its partition recovering elsewhere) says nothing: its
    states are still to come, so the partition's windows wait for it. Before, it fell idle after
    FLIGHTS_WATERMARK_IDLE and its states, once they came, found their windows closed and expired."""
    marks = PartitionWatermarks(sources=2)
    marks.hear(0, 0, 500.0, idle=False)
    for step in range(100):
        marks.hear(0, 0, 600.0 + step, idle=False)
    assert marks.mark(0) is None  # source 1 never heard after the start
    marks.hear(0, 1, 550.0, idle=False)
    assert marks.mark(0) == 550.0
    for step in range(100):
        marks.hear(0, 0, 700.0 + step, idle=False)
    assert marks.mark(0) == 550.0  # source 1 silent since: it holds the clock


def test_a_source_that_says_it_is_idle_stops_holding_the_clock():
    marks = PartitionWatermarks(sources=3)
    marks.hear(0, 0, 100.0, idle=False)
    marks.hear(0, 1, 200.0, idle=False)
    marks.hear(0, 2, 900.0, idle=False)
    assert marks.mark(0) == 100.0
    marks.hear(0, 0, 100.0, idle=True)  # its aircraft landed: nothing waits in its partition
    assert marks.mark(0) == 200.0
    marks.hear(0, 2, None, idle=False)  # a source's tick from a worker that has not processed it yet
    assert marks.mark(0) == 200.0  # (its watermark heard before is kept)
    marks.hear(0, 1, 300.0, idle=True)
    assert marks.mark(0) == 900.0
    marks.hear(0, 2, 950.0, idle=True)
    assert marks.mark(0) == 900.0  # every source idle: the watermark stays where it was
    marks.hear(0, 0, 120.0, idle=False)  # back, with new states: never goes back
    assert marks.mark(0) == 900.0


def test_a_working_source_without_a_watermark_holds_a_partition_it_has_never_been_heard_in():
    marks = PartitionWatermarks(sources=2)
    marks.hear(0, 0, 500.0, idle=False)
    marks.hear(0, 1, None, idle=False)  # held, not processed yet since its worker started
    assert marks.mark(0) is None
    marks.hear(0, 1, None, idle=True)  # an empty partition
    assert marks.mark(0) == 500.0


def test_a_source_ticks_each_partition_it_has_not_written_to_for_a_while():
    schedule = TickSchedule(partitions=4, every_s=1.0)
    assert schedule.due(source=0, now=0.0) == [0, 1, 2, 3]
    schedule.wrote(0, 2, now=0.5)  # a partial went to partition 2
    assert schedule.due(0, now=0.9) == []
    assert schedule.due(0, now=1.0) == [0, 1, 3]
    assert schedule.due(0, now=1.5) == [2]
    assert schedule.due(1, now=1.5) == [0, 1, 2, 3]  # each source on its own


def test_a_source_is_idle_once_nothing_waits_in_it_and_no_batch_went_for_the_idle_time():
    from tables.clock import WindowClock

    clock = WindowClock(size_s=600, grace_s=30, expiry_s=600, partitions=2, idle_s=IDLE)
    assert clock.tick_of(0, now=0.0, waiting=False) == (None, False)  # just held: not yet
    assert clock.tick_of(0, now=IDLE, waiting=False) == (None, True)  # an empty partition
    assert clock.tick_of(1, now=0.0, waiting=True) == (None, False)
    clock.saw(1, 1000)
    clock.handed_over(1, now=5.0)
    assert clock.tick_of(1, now=5.0 + IDLE, waiting=None) == (1000, False)  # not known (recovering): working
    assert clock.tick_of(1, now=5.0 + IDLE, waiting=True) == (1000, False)  # a backlog: working
    assert clock.tick_of(1, now=5.0 + IDLE - 0.1, waiting=False) == (1000, False)
    assert clock.tick_of(1, now=5.0 + IDLE, waiting=False) == (1000, True)


def test_the_window_clock_closes_each_window_once_and_scans_only_when_a_horizon_moves():
    from tables.clock import WindowClock

    clock = WindowClock(size_s=600, grace_s=30, expiry_s=600, partitions=1, idle_s=10)
    assert clock.saw(0, 1000) == 1000 and clock.saw(0, 900) == 1000  # a watermark never goes back
    assert not clock.late(900, 1000) and clock.late(500, 1230) and clock.window_of(1000) == 600
    clock.heard(0, source=0, watermark=1229, idle=False)
    windows = {("country", "X", 600), ("airline", "Y", 1200)}
    assert clock.to_close(windows, lambda w: 0, lambda w: False) == []  # [600, 1200) closes at 1230
    clock.heard(0, source=0, watermark=1230, idle=False)
    assert clock.to_close(windows, lambda w: 0, lambda w: False) == [("country", "X", 600)]
    assert clock.to_close(windows, lambda w: 0, lambda w: False) == []  # asked for already
    clock.finished(("country", "X", 600))
    assert clock.to_close(windows, lambda w: 0, lambda w: True) == []  # its final is out
    # expiry: a scan only when a watermark crosses into a window that may expire
    assert clock.aircraft_scan_due() and not clock.aircraft_scan_due()
    clock.saw(0, 1100)
    assert not clock.aircraft_scan_due()
    clock.saw(0, 1200 + 630 + 600)
    assert clock.aircraft_scan_due() and clock.expired(600, clock.sources[0])
    # after a rebalance, the next settled flush republishes, once
    clock.rebalanced()
    assert not clock.take_republish(settled=False) and clock.take_republish(settled=True)
    assert not clock.take_republish(settled=True)
