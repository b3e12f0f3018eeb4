"""``kill -USR1`` on a worker: where each task waits (flights_app/worker.py), through nested awaits,
other tasks and the wrappers Faust's agents await."""

import asyncio

from flights_app.worker import await_chain


def test_the_dump_follows_a_task_s_awaits_into_other_tasks_and_wrapped_coroutines():
    started = asyncio.Event()

    async def innermost(gate: asyncio.Event) -> None:
        started.set()  # the task is suspended in gate.wait() by the time main runs again
        await gate.wait()

    class Actor:  # as Faust's AwaitableActor: awaiting it awaits the coroutine it wraps
        def __init__(self, coro):
            self.coro = coro

        def __await__(self):
            return self.coro.__await__()

    async def middle(gate: asyncio.Event) -> None:
        await Actor(innermost(gate))

    async def outer(gate: asyncio.Event) -> None:
        await asyncio.create_task(middle(gate))

    async def main() -> list[str]:
        gate = asyncio.Event()
        task = asyncio.create_task(outer(gate))
        await asyncio.wait_for(started.wait(), 5)
        chain = await_chain(task)
        gate.set()
        await task
        return chain

    chain = asyncio.run(main())
    assert [frame.rsplit(" ", 1)[1] for frame in chain][:3] == ["outer", "middle", "innermost"], chain
    assert all(":" in frame for frame in chain)
