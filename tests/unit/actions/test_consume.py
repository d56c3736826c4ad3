"""The executor's agent acks a batch only once it has handled it, never on cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import faust

from worker.actions.executor import Executor
from worker.actions.settings import ExecutorSettings


class TakeStream:
    """What the agent relies on from a Faust stream: ``take_events`` acks each event of a
    batch through ``self.ack`` in a ``finally``, also when the consumer is cancelled."""

    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        return True

    async def take_events(self, max_: int, within: float) -> AsyncIterator[list[Any]]:
        for events in self.batches:
            try:
                yield list(events)
            finally:
                for event in events:
                    await self.ack(event)


def executor() -> Executor:
    app = faust.App("test-consume", broker="kafka://127.0.0.1:1", store="memory://")
    return Executor(app, ExecutorSettings())


async def test_a_handled_batch_is_acked() -> None:
    ex = executor()
    seen: list[list[str]] = []

    async def accept(events: list[str]) -> None:
        seen.append(events)

    ex._accept_batch = accept  # type: ignore[method-assign]
    stream = TakeStream([["a", "b"], ["c"]])
    await ex._consume(stream)
    assert seen == [["a", "b"], ["c"]]
    assert stream.acked == ["a", "b", "c"]


async def test_a_batch_cancelled_before_its_claims_are_in_is_not_acked() -> None:
    ex = executor()
    entered = asyncio.Event()

    async def accept(events: list[str]) -> None:
        entered.set()
        await asyncio.Event().wait()  # the claims never reach Kafka

    ex._accept_batch = accept  # type: ignore[method-assign]
    stream = TakeStream([["a", "b"]])
    task = asyncio.ensure_future(ex._consume(stream))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stream.acked == []


async def test_a_batch_that_failed_is_acked_like_before() -> None:
    ex = executor()

    async def accept(events: list[str]) -> None:
        raise ValueError("bad batch")

    ex._accept_batch = accept  # type: ignore[method-assign]
    event = SimpleNamespace(
        message=SimpleNamespace(topic="codechat.actions", partition=0, offset=7)
    )
    stream = TakeStream([[event]])
    await ex._consume(stream)
    assert stream.acked == [event]
