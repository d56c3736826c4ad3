"""worker.tasks: the tasks end, the caller's own cancellation is kept; a grace is given."""

from __future__ import annotations

import asyncio

import pytest

from worker.tasks import cancel_and_wait, end_within


async def test_tasks_are_cancelled_and_what_they_raise_is_dropped() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            raise RuntimeError("while stopping")

    sleeper = asyncio.ensure_future(asyncio.sleep(60))
    failer = asyncio.ensure_future(failing())
    await asyncio.sleep(0)
    await cancel_and_wait(sleeper, failer)
    assert sleeper.cancelled()
    assert isinstance(failer.exception(), RuntimeError)


async def test_with_reraise_the_first_error_comes_through_after_all_ended() -> None:
    async def failing() -> None:
        raise RuntimeError("broken")

    failer = asyncio.ensure_future(failing())
    sleeper = asyncio.ensure_future(asyncio.sleep(60))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="broken"):
        await cancel_and_wait(failer, sleeper, reraise=True)
    assert sleeper.cancelled()


async def test_a_cancellation_of_the_caller_while_it_waits_is_not_lost() -> None:
    released = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await released.wait()  # cleans up for a while, then ends normally

    task = asyncio.ensure_future(slow_to_stop())
    await asyncio.sleep(0)
    carried_on = []

    async def stopper() -> None:
        await cancel_and_wait(task)
        carried_on.append(True)  # must not run: this task was cancelled

    stopping = asyncio.ensure_future(stopper())
    await asyncio.sleep(0)
    stopping.cancel()
    released.set()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert carried_on == []
    await task
    assert task.done() and not task.cancelled()


async def test_a_task_that_ends_within_the_grace_is_not_cancelled() -> None:
    asked = asyncio.Event()

    async def finishing() -> str:
        await asked.wait()
        await asyncio.sleep(0)  # a last read before it ends
        return "finished"

    task = asyncio.ensure_future(finishing())
    asked.set()
    await end_within(30.0, task)
    assert not task.cancelled() and task.result() == "finished"


async def test_a_task_still_running_after_the_grace_is_cancelled() -> None:
    loop = asyncio.get_running_loop()
    stubborn = asyncio.ensure_future(asyncio.sleep(60))
    quick = asyncio.ensure_future(asyncio.sleep(0))
    began = loop.time()
    await end_within(0.05, stubborn, quick)
    assert stubborn.cancelled() and not quick.cancelled()
    assert 0.04 <= loop.time() - began < 30  # it waited the grace, not the task's minute


async def test_no_tasks_no_wait() -> None:
    await end_within(30.0)
