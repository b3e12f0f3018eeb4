"""The Faust worker class the app uses (``App(Worker=...)``).

With ``FLIGHTS_BROKER`` unset, the worker makes sure the embedded broker runs
before the app connects: it uses one already listening on the embedded port
(``flights-app broker``, or ``flights-app up``), and otherwise starts one of
its own and stops it when the worker stops.

``kill -USR1 <pid>`` logs where each of the worker's tasks waits (its chain of awaits), for a
worker that seems stuck.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging

import faust

from flights_app import faust_internals
from flights_app.embedded.broker import BrokerError, EmbeddedBroker, accepts_connections

log = logging.getLogger("flights_app.worker")


def _inside(awaited):
    """What ``awaited`` (the object a coroutine waits on) runs: a coroutine or generator as it is, a
    task's coroutine, or the one a wrapper holds (``coro.__await__()``, a future's iterator); None: a
    plain future, the end of the chain."""
    if awaited is None or any(hasattr(awaited, a) for a in ("cr_frame", "ag_frame", "gi_frame")):
        return awaited
    if isinstance(awaited, asyncio.Task):
        return awaited.get_coro()
    for inner in gc.get_referents(awaited):
        if isinstance(inner, asyncio.Task):
            return inner.get_coro()
        if inspect.iscoroutine(inner) or inspect.isasyncgen(inner) or inspect.isgenerator(inner):
            return inner
    return None


def await_chain(task: asyncio.Task) -> list[str]:
    """Where ``task`` waits: each coroutine it awaits, outermost first, as ``file:line function``."""
    chain: list[str] = []
    awaited, seen = task.get_coro(), set()
    while awaited is not None and id(awaited) not in seen and len(chain) < 100:
        seen.add(id(awaited))
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) \
            or getattr(awaited, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaited = _inside(getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
                          or getattr(awaited, "gi_yieldfrom", None))
    return chain


class Worker(faust.Worker):
    embedded_broker: EmbeddedBroker | None = None

    def _on_sigusr1(self) -> None:
        """``kill -USR1``: one log line per task, saying where it waits (mode's own dump shows only the
        outermost frame of each task)."""
        tasks = asyncio.all_tasks(self.loop)
        for task in sorted(tasks, key=lambda t: t.get_name()):
            log.warning("task %s waits at: %s", task.get_name(), " -> ".join(await_chain(task)))
        try:  # the consumer's own thread: aiokafka's fetcher and coordinator
            for task in list(asyncio.all_tasks(faust_internals.consumer_thread_loop(self.app.consumer))):
                log.warning("consumer thread task %s waits at: %s", task.get_name(), " -> ".join(await_chain(task)))
        except Exception as error:  # noqa: BLE001 - not up yet: say so
            log.warning("consumer thread: not known (%r)", error)
        try:
            log.warning("consumer: %s", faust_internals.flow_state(self.app.consumer))
        except Exception as error:  # noqa: BLE001 - not up yet: say so
            log.warning("consumer: not known (%r)", error)
        log.warning("%d tasks listed (kill -USR1)", len(tasks))

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """No terminal spinner: the root logger stays at the chosen level.

        At a level of warning or above, Faust's worker adds a spinner handler at DEBUG and sets
        the root logger to DEBUG, so every debug call of Faust and aiokafka (one per message sent)
        builds a log record that is then dropped: about 10% of the worker's time (py-spy).
        """
        self.spinner = None

    async def on_first_start(self) -> None:
        from flights_app.app import settings

        (settings.datadir / "worker").mkdir(parents=True, exist_ok=True)
        await super().on_first_start()  # sets up logging first, so our lines are seen

        if settings.uses_embedded_broker and not accepts_connections(
            "127.0.0.1", settings.embedded_broker_port
        ):
            broker = EmbeddedBroker(
                settings.datadir / "kafka",
                settings.embedded_broker_port,
                heap_mb=settings.kafka_heap_mb,
                lib_dir=settings.kafka_lib,
                partitions=settings.topic_partitions,
                sasl=settings.embedded_broker_sasl,
            )
            self.log.info("FLIGHTS_BROKER is unset: starting the embedded Kafka on %s", broker.bootstrap)
            try:
                await asyncio.get_running_loop().run_in_executor(None, broker.start)
            except BrokerError as error:
                raise SystemExit(f"flights-app: {error}") from None
            self.embedded_broker = broker
        from flights_app.kafka_security import login_problem
        from flights_app.topic_admin import TopicError, changelog_config, ensure_topics
        from flights_app.topics import ALL_TOPICS, RETENTION_S

        bootstrap = settings.bootstrap_servers
        security = settings.kafka_security
        self.log.info("Kafka at %s: %s", bootstrap, security.describe())
        problem = await login_problem(bootstrap, security)
        if problem is not None:  # refused: one line, no retrying forever
            raise SystemExit(f"flights-app: {problem}")
        # The tables' changelogs too, as Faust would make them: made here, seconds before the consumer
        # subscribes, they are in its first metadata (made by Faust, they could miss it by milliseconds
        # and be left out of the assignment until the next rebalance).
        changelogs: dict[tuple, list[str]] = {}
        for table in self.app.tables.values():
            config = changelog_config(table.changelog_topic)
            changelogs.setdefault(tuple(sorted(config.items())), []).append(table.changelog_topic.get_topic_name())
        try:
            await ensure_topics(
                bootstrap, [t.get_topic_name() for t in ALL_TOPICS],
                partitions=settings.topic_partitions, replication=settings.topic_replication,
                retention_s=RETENTION_S, client_options=security.client_options(),
            )
            for config, names in changelogs.items():
                await ensure_topics(bootstrap, names, partitions=settings.topic_partitions,
                                    replication=settings.topic_replication, config=dict(config),
                                    client_options=security.client_options())
            # And the leader election's topic, as Faust makes it (one partition, the broker's defaults):
            # made by Faust while the consumer starts, it was missing from the first assignment when the
            # machine was busy, and no worker was the source's leader until a rebalance (minutes).
            await ensure_topics(bootstrap, [faust_internals.leader_topic_name(self.app)], partitions=1,
                                replication=settings.topic_replication, config={},
                                client_options=security.client_options())
        except TopicError as error:  # a configuration the cluster cannot take: one line, no traceback
            raise SystemExit(f"flights-app: {error}") from None

    async def on_stop(self) -> None:
        # A clean stop leaves the Kafka group at once (a static member would hold its partitions for
        # the session timeout); a kill -9 leaves nothing, and a worker back in time keeps its partitions.
        faust_internals.leave_group_when_stopping(self.app)
        await super().on_stop()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.embedded_broker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.embedded_broker.stop)
