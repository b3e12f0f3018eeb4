"""After a rebalance, Faust must seek the stream partitions to their committed offsets before it
resumes them, not after.

Faust 0.15's ``Recovery.on_recovery_completed`` resumes the stream partitions and then seeks them
to their committed offsets. The fetcher is already running (it read the changelogs), so in between
it fetches from wherever the consumer stood and hands those messages to the agents; the seek then
sets the read offset back and the same messages come a second time. Every restart thus delivered
its first fetch twice: with one Kafka message per poll and partition (flights_app.batches) that is
up to ``FLIGHTS_SCORE_BATCH`` messages, tens of thousands of states, each scored twice. Here the
seek comes first, on paused partitions, and they are resumed from the committed offsets.
The rest of the method is Faust's, unchanged.
"""

from __future__ import annotations

import asyncio

from faust.tables.recovery import Recovery

_original = Recovery.on_recovery_completed


async def on_recovery_completed(self, generation_id: int = 0) -> None:
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                          self.standbys_for_table[table]))
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {self.app.consumer_generation_id} "
                         f"param {generation_id}")
        return
    if assignment:  # while the stream partitions are still paused
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def install() -> None:
    """Patch Faust's recovery (idempotent)."""
    Recovery.on_recovery_completed = on_recovery_completed
