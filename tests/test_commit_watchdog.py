"""The commit watchdog's judgement (agents/commit_watchdog.py): a partition is read again only when
its acknowledged offsets have waited above an unacknowledged one for several checks in a row."""

from flights_app.commit_stall import StallDetector


def test_contiguous_acks_and_an_empty_list_are_never_a_stall():
    detector = StallDetector(checks=3)
    for _ in range(10):
        assert not detector.observe("tp", 100, [100, 101, 102])  # the next offset is acknowledged
        assert not detector.observe("tp", 100, [])
        assert not detector.observe("tp", None, [5, 6])  # nothing committed yet


def test_a_gap_at_the_head_that_lasts_is_a_stall_once_then_counted_again():
    detector = StallDetector(checks=3)
    assert not detector.observe("tp", 100, [103, 104])
    assert not detector.observe("tp", 100, [103, 104, 105])
    assert detector.observe("tp", 100, [103, 104, 105, 106])  # the third check in a row
    assert not detector.observe("tp", 100, [103, 104])  # counted again from the start after acting


def test_a_gap_that_closes_or_a_commit_that_moves_resets_the_count():
    detector = StallDetector(checks=3)
    assert not detector.observe("tp", 100, [102])
    assert not detector.observe("tp", 100, [100, 101, 102])  # the missing offsets arrived
    assert not detector.observe("tp", 100, [102])
    assert not detector.observe("tp", 100, [102])
    assert not detector.observe("tp", 150, [152])  # the commit moved on: a new count
    assert not detector.observe("tp", 150, [152])
    assert detector.observe("tp", 150, [152])
    assert not detector.observe("other", 150, [152])  # partitions are counted apart
