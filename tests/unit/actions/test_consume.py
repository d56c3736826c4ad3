"""The executor's agent batches what has arrived, and acks a batch only once it has handled
it, never on cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from tests.helpers import wait_for
from worker.actions import executor as executor_module
from worker.actions.executor import Executor
from worker.actions.settings import ExecutorSettings


class BurstStream:
    """What the agent relies on from a Faust stream read without acks: events come in
    bursts, ``ack`` acks one. Each burst after the first comes once every event before it
    is acked; after the last, with ``then_silent``, the stream yields nothing more (as when
    Faust skips the records that follow because its flow is suspended).

    ``faust_like`` reads the way Faust's iterator does: one loop turn per record, with the
    records of the burst not read yet in the channel's queue, and (``then_silent``) one more
    record in the queue that is never yielded."""

    def __init__(
        self, bursts: list[list[Any]], then_silent: bool = False, faust_like: bool = False
    ) -> None:
        self.bursts = bursts
        self.then_silent = then_silent
        self.faust_like = faust_like
        self.acked: list[Any] = []
        self._acked_changed = asyncio.Event()
        self.waiting = 0
        queue = SimpleNamespace(empty=lambda: self.waiting == 0) if faust_like else None
        self.channel = SimpleNamespace(queue=queue)

    def noack(self) -> BurstStream:
        return self

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        self._acked_changed.set()
        return True

    async def events(self) -> AsyncIterator[Any]:
        given = 0
        for burst in self.bursts:
            while len(self.acked) < given:
                self._acked_changed.clear()
                await self._acked_changed.wait()
            self.waiting = len(burst)
            for event in burst:
                if self.faust_like:
                    await asyncio.sleep(0)
                self.waiting -= 1
                given += 1
                yield event
        if self.then_silent:
            self.waiting = 1
            await asyncio.Event().wait()


def executor() -> Executor:
    app = faust.App("test-consume", broker="kafka://127.0.0.1:1", store="memory://")
    return Executor(app, ExecutorSettings())


def recording(ex: Executor) -> list[list[Any]]:
    """Stand in for the executor's claiming: the batches it is given, in order."""
    seen: list[list[Any]] = []

    async def accept(events: list[Any]) -> None:
        seen.append(events)

    ex._accept_batch = accept  # type: ignore[method-assign]
    return seen


async def test_a_handled_batch_is_acked() -> None:
    ex = executor()
    seen = recording(ex)
    stream = BurstStream([["a", "b"], ["c"]])
    await ex._consume(stream)
    assert seen == [["a", "b"], ["c"]], "a batch is what had arrived, a lone record waits not"
    assert stream.acked == ["a", "b", "c"]


async def test_a_burst_in_faust_s_queue_is_claimed_as_one_batch() -> None:
    ex = executor()
    seen = recording(ex)
    stream = BurstStream([[1, 2, 3, 4, 5], [6]], faust_like=True)
    await ex._consume(stream)
    assert seen == [[1, 2, 3, 4, 5], [6]]
    assert stream.acked == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("faust_like", [False, True])
async def test_records_read_are_handled_although_no_more_come(faust_like: bool) -> None:
    ex = executor()
    seen = recording(ex)
    stream = BurstStream([["a", "b"]], then_silent=True, faust_like=faust_like)
    task = asyncio.ensure_future(ex._consume(stream))
    try:
        await wait_for(lambda: stream.acked == ["a", "b"], timeout=5, message="a and b acked")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen == [["a", "b"]]


async def test_a_batch_is_at_most_the_claim_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "_CLAIM_BATCH", 2)
    ex = executor()
    seen = recording(ex)
    await ex._consume(BurstStream([["a", "b", "c"]]))
    assert seen == [["a", "b"], ["c"]]


async def test_a_batch_cancelled_before_its_claims_are_in_is_not_acked() -> None:
    ex = executor()
    entered = asyncio.Event()

    async def accept(events: list[str]) -> None:
        entered.set()
        await asyncio.Event().wait()  # the claims never reach Kafka

    ex._accept_batch = accept  # type: ignore[method-assign]
    stream = BurstStream([["a", "b"]])
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
    stream = BurstStream([[event]])
    await ex._consume(stream)
    assert stream.acked == [event]
