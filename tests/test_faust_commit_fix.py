"""Faust never commits past a message it did not acknowledge (flights_app/faust_commit_fix.py), on the
consumer's own bookkeeping (``_committed_offset`` holds the next offset to process)."""

from collections import defaultdict
from types import SimpleNamespace

from intervaltree import IntervalTree

from flights_app import faust_commit_fix

TP = ("raw", 0)


def bookkeeping(committed, acked, gap=None):
    return SimpleNamespace(_committed_offset=defaultdict(lambda: None, {TP: committed}),
                           _acked=defaultdict(list, {TP: list(acked)}),
                           _acked_index=defaultdict(set, {TP: set(acked)}),
                           _gap=defaultdict(IntervalTree, {TP: gap} if gap is not None else {}))


def test_faust_alone_commits_past_the_one_message_missing_at_the_committed_offset():
    """The defect the patch is for: offset 100 never acknowledged, 101 and 102 were; Faust commits 103."""
    assert faust_commit_fix._original_new_offset(bookkeeping(100, [101, 102]), TP) == 103


def test_the_commit_waits_while_the_committed_offset_is_not_acknowledged():
    consumer = bookkeeping(100, [101, 102])
    assert faust_commit_fix._new_offset(consumer, TP) is None
    assert consumer._acked[TP] == [101, 102]  # kept for when 100 comes


def test_acknowledged_runs_from_the_committed_offset_commit_as_before():
    assert faust_commit_fix._new_offset(bookkeeping(100, [100, 101, 102]), TP) == 103
    assert faust_commit_fix._new_offset(bookkeeping(100, [100, 101, 105]), TP) == 102  # up to the first hole
    assert faust_commit_fix._new_offset(bookkeeping(None, [7, 8]), TP) == 9  # nothing committed yet
    assert faust_commit_fix._new_offset(bookkeeping(100, []), TP) is None


def test_a_known_gap_at_the_committed_offset_does_not_hold_the_commit():
    gap = IntervalTree()
    gap.addi(100, 103)  # offsets 100..102 hold no message (skipped over by the consumer)
    assert faust_commit_fix._new_offset(bookkeeping(100, [103, 104], gap), TP) == 105


def test_install_patches_the_consumer_class():
    from faust.transport.consumer import Consumer

    faust_commit_fix.install()
    assert Consumer._new_offset is faust_commit_fix._new_offset
