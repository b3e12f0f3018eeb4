"""A watchdog for Faust's offset commits (faust-streaming #596, #606; FAUST-NOTES.md: "COMMIT OFFSET NOT
ADVANCING").

Every ``CHECK_S`` it judges each assigned input partition (flights_app/commit_stall.py says how): a
message dropped from Faust's queues in a rebalance, or a commit the broker refused in one while Faust
took it as done, stops that partition's commits for good while the worker carries on. The lag in
/health then grows without end, and a dropped message is processed only after the next crash
replays everything since. A partition stuck at the same place for ``STALL_CHECKS`` checks in a row is read again
from there: what was dropped is processed, its successors a second time (at least once: scoring
and window counts are idempotent), and commits resume. Counted in ``flights_commit_stalls_total``.
"""

from __future__ import annotations

from flights_app.app import app
from flights_app.commit_stall import StallDetector, unstick

CHECK_S = 10.0

detector = StallDetector()


@app.timer(CHECK_S)
async def unstick_commits() -> None:
    if getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False):
        detector.reset()  # the consumer's bookkeeping is being rebuilt
        return
    await unstick(app.consumer, app.topics, detector, check_s=CHECK_S)
