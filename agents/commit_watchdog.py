"""A watchdog for Faust's offset commits (faust-streaming #596, #606; FAUST-NOTES.md: "COMMIT OFFSET NOT
ADVANCING").

Faust commits a partition's offset only up to the first offset its agents have not acknowledged.
After a restart or a rebalance, a message can be read from Kafka and then dropped from Faust's
in-memory queues before any agent sees it (the queues are cleared once recovery ends), while the
consumer reads on past it. Nothing ever acknowledges that offset again, so the partition's commits
stop for good while its later messages are processed: the lag shown in /health grows without end,
and the dropped message is only processed after the next crash replays everything since.

Seen in the 30-minute soak after a kill -9 (the worker kept scoring, its committed offsets stayed
where the dead worker had left them). The watchdog sees the symptom: a partition whose acknowledged
offsets start above its committed offset, unchanged for ``STALL_CHECKS`` checks in a row. It then
reads that partition again from its committed offset: the dropped message is processed, its
successors a second time (at least once: scoring and window counts are idempotent), and commits
resume.
"""

from __future__ import annotations

import logging

from flights_app.app import app
from flights_app.commit_stall import STALL_CHECKS, StallDetector

log = logging.getLogger("flights_app.commits")

CHECK_S = 10.0

detector = StallDetector()


@app.timer(CHECK_S)
async def unstick_commits() -> None:
    consumer = app.consumer
    if getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False):
        detector.reset()  # the consumer's bookkeeping is being rebuilt
        return
    for tp in list(consumer.assignment()):
        if not app.topics.acks_enabled_for(tp.topic):
            continue
        committed = consumer._committed_offset.get(tp)
        acked = list(consumer._acked.get(tp) or ())
        if detector.observe(tp, committed, acked):
            detector.unstuck += 1
            log.warning("Commits of %s[%d] have been stuck at offset %d for %.0f s while offsets from %d on "
                        "were processed (a message dropped in a rebalance, faust-streaming #596): reading "
                        "the partition again from %d", tp.topic, tp.partition, committed,
                        CHECK_S * STALL_CHECKS, min(acked), committed)
            await consumer.seek(tp, committed)
