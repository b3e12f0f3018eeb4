"""After a rebalance the stream partitions are sought to their committed offsets before they resume
(flights_app/faust_recovery_fix.py), on stand-ins for Faust's app and consumer."""

import asyncio
import io
from types import SimpleNamespace

from faust.tables.recovery import Recovery

from flights_app import faust_recovery_fix

STREAM, CHANGELOG = ("raw", 0), ("t-aircraft-changelog", 0)


def recovery_and_calls():
    calls = []

    async def nothing(*_args, **_kwargs):
        return None

    async def perform_seek():
        calls.append("seek")

    async def wait(coro, timeout=None):
        await coro

    consumer = SimpleNamespace(
        assignment=lambda: {STREAM, CHANGELOG}, perform_seek=perform_seek,
        resume_partitions=lambda tps: calls.append(("resume", frozenset(tps))),
        resume_flow=lambda: calls.append("flow"))
    app = SimpleNamespace(
        consumer=consumer, consumer_generation_id=3, on_rebalance_complete=SimpleNamespace(send=nothing),
        conf=SimpleNamespace(broker_request_timeout=30), flow_control=SimpleNamespace(resume=lambda: None),
        _fetcher=SimpleNamespace(maybe_start=nothing), assignor=SimpleNamespace(assigned_standbys=lambda: []),
        on_rebalance_end=lambda: calls.append("ready"))
    recovery = SimpleNamespace(
        app=app, log=SimpleNamespace(info=lambda *a: None, dev=lambda *a: None, warning=lambda *a: None),
        _set_recovery_ended=lambda: None, tables=SimpleNamespace(values=lambda: [], on_actives_ready=lambda: None,
                                                                 on_standbys_ready=lambda: None),
        _wait=wait, completed=SimpleNamespace(set=lambda: None), _is_changelog_tp=lambda tp: tp == CHANGELOG)
    return recovery, calls


def test_faust_alone_resumes_the_stream_partitions_before_it_seeks_them():
    """The defect the patch is for: whatever is fetched between the two is delivered twice."""
    recovery, calls = recovery_and_calls()
    asyncio.run(faust_recovery_fix._original(recovery, 3))
    assert calls.index(("resume", frozenset({STREAM}))) < calls.index("seek")


def test_the_stream_partitions_are_sought_while_paused_then_resumed():
    recovery, calls = recovery_and_calls()
    asyncio.run(faust_recovery_fix.on_recovery_completed(recovery, 3))
    assert calls == ["seek", ("resume", frozenset({STREAM})), "flow", "ready"]


def test_a_rebalance_during_recovery_resumes_nothing():
    recovery, calls = recovery_and_calls()
    asyncio.run(faust_recovery_fix.on_recovery_completed(recovery, 2))  # another generation began
    assert calls == []


def test_install_patches_faust():
    faust_recovery_fix.install()
    assert Recovery.on_recovery_completed is faust_recovery_fix.on_recovery_completed


def test_a_worker_at_warning_level_keeps_the_root_logger_at_warning():
    """Faust's worker sets the root logger to DEBUG behind a terminal spinner at warning and above, so
    every debug call of Faust and aiokafka (one per message sent) builds a record only to drop it."""
    import logging

    import faust

    import flights_app.app  # noqa: F401 - the app first (it imports the agents)
    from flights_app.worker import Worker

    def configured(worker_class) -> logging.Logger:
        worker = worker_class.__new__(worker_class)
        worker.spinner = faust.worker.terminal.Spinner(file=io.StringIO())
        root = logging.Logger("root-under-test", logging.WARNING)
        root.addHandler(logging.StreamHandler(io.StringIO()))
        worker_class.on_setup_root_logger(worker, root, logging.WARNING)
        return root

    assert configured(faust.Worker).getEffectiveLevel() == logging.DEBUG  # Faust's own, the defect
    root = configured(Worker)
    assert root.getEffectiveLevel() == logging.WARNING and len(root.handlers) == 1
    assert not root.isEnabledFor(logging.DEBUG)
