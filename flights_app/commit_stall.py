"""When a partition's offset commits are stuck: the judgement of agents/commit_watchdog.py, without Faust."""

from __future__ import annotations

from collections.abc import Sequence

STALL_CHECKS = 3  # with checks every 10 s: 30 s; a batch is acknowledged as a whole, so a gap at the head never lasts that long


class StallDetector:
    """Per partition: how many checks in a row its commits have been blocked at the same offset."""

    def __init__(self, checks: int = STALL_CHECKS):
        self.checks = checks
        self.seen: dict[object, tuple[int, int]] = {}  # tp -> (committed offset, checks blocked there)
        self.unstuck = 0

    @staticmethod
    def blocked(committed: int | None, acked: Sequence[int]) -> bool:
        """Whether acknowledged offsets wait above an offset that was never acknowledged."""
        return committed is not None and bool(acked) and min(acked) > committed

    def observe(self, tp, committed: int | None, acked: Sequence[int]) -> bool:
        """Record one check; True when ``tp`` has been blocked at ``committed`` for ``checks`` checks."""
        if not self.blocked(committed, acked):
            self.seen.pop(tp, None)
            return False
        previous, count = self.seen.get(tp, (committed, 0))
        count = count + 1 if previous == committed else 1
        self.seen[tp] = (committed, count)
        if count >= self.checks:
            self.seen.pop(tp, None)
            return True
        return False

    def reset(self) -> None:
        self.seen.clear()
