"""Reading ahead of evaluation: which events make a batch, in what order, what is dropped."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import wait_for
from worker.process.batches import EventBatch, handle_in_batches


@dataclass(frozen=True)
class Message:
    tp: str
    offset: int


@dataclass(frozen=True)
class Event:
    message: Message


class FakeStream:
    """Events put in a queue, as Faust's conductor puts them in a stream's channel."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.read: list[Event] = []

    def put(self, tp: str, *offsets: int) -> None:
        for offset in offsets:
            self.queue.put_nowait(Event(Message(tp, offset)))

    async def events(self) -> AsyncIterator[Event]:
        while True:
            event = await self.queue.get()
            self.read.append(event)
            yield event


def run(stream: FakeStream, handle: Any, batch: EventBatch, limit: int = 64) -> asyncio.Task[None]:
    return asyncio.create_task(
        handle_in_batches(stream.events(), lambda: not stream.queue.empty(), handle, batch, limit)
    )


async def test_waiting_events_are_read_before_the_first_is_handled_and_handled_in_order() -> None:
    stream, batch = FakeStream(), EventBatch()
    handled: list[tuple[str, int, int]] = []

    async def handle(event: Event) -> None:
        # How many events had been read when this one was handled.
        handled.append((event.message.tp, event.message.offset, len(stream.read)))

    stream.put("a", 1, 2, 3)
    stream.put("b", 1)
    task = run(stream, handle, batch)
    await wait_for(lambda: len(handled) == 4, timeout=5)
    assert handled == [("a", 1, 4), ("a", 2, 4), ("a", 3, 4), ("b", 1, 4)]
    # A lone event is not held back waiting for company.
    stream.put("b", 2)
    await wait_for(lambda: len(handled) == 5, timeout=5)
    assert handled[-1] == ("b", 2, 5)
    task.cancel()


async def test_a_batch_holds_at_most_limit_events() -> None:
    stream, batch = FakeStream(), EventBatch()
    read_when_handled: list[int] = []

    async def handle(event: Event) -> None:
        read_when_handled.append(len(stream.read))

    stream.put("a", *range(10))
    task = run(stream, handle, batch, limit=4)
    await wait_for(lambda: len(read_when_handled) == 10, timeout=5)
    assert read_when_handled == [4] * 4 + [8] * 4 + [10] * 2
    task.cancel()


async def test_a_revoked_partitions_events_read_ahead_are_not_handled() -> None:
    stream, batch = FakeStream(), EventBatch()
    handled: list[tuple[str, int]] = []
    gate = asyncio.Event()

    async def handle(event: Event) -> None:
        handled.append((event.message.tp, event.message.offset))
        await gate.wait()  # the first event is in hand when the rebalance comes

    stream.put("a", 1, 2)
    stream.put("b", 1, 2)
    stream.put("a", 3)
    task = run(stream, handle, batch)
    await wait_for(lambda: len(handled) == 1 and len(batch) == 4, timeout=5)
    batch.drop({"a"})
    gate.set()
    await wait_for(lambda: len(handled) == 3 and not batch, timeout=5)
    # The one in hand finishes; the rest of "a" is left to the partition's next owner.
    assert handled == [("a", 1), ("b", 1), ("b", 2)]
    assert len(stream.read) == 5  # all read, two never handled
    task.cancel()


async def test_a_cancelled_reader_leaves_what_it_read_ahead_unhandled() -> None:
    stream, batch = FakeStream(), EventBatch()
    handled: list[int] = []
    started = asyncio.Event()

    async def handle(event: Event) -> None:
        handled.append(event.message.offset)
        started.set()
        await asyncio.Event().wait()

    stream.put("a", 1, 2, 3)
    task = run(stream, handle, batch)
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert handled == [1]
    assert [batch.popleft().message.offset for _ in range(len(batch))] == [2, 3]


def test_drop_keeps_the_order_of_the_other_partitions() -> None:
    batch = EventBatch()
    for tp, offset in [("a", 1), ("b", 1), ("c", 1), ("b", 2), ("a", 2)]:
        batch.append(Event(Message(tp, offset)))
    batch.drop(frozenset({"b"}))
    kept = deque(batch.popleft() for _ in range(len(batch)))
    assert [(e.message.tp, e.message.offset) for e in kept] == [("a", 1), ("c", 1), ("a", 2)]
