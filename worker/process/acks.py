"""Ack an event only once the action records it produced are in Kafka.

Faust acks an event when its agent moves on to the next one, and also when the agent is
cancelled part-way through it: the ``finally`` around the stream's ``yield`` acks the event
in hand, so a SIGTERM or a rebalance that cancels the agent inside ``emit`` commits the
offset of an event whose action records were never handed to the producer. Even without a
cancellation, Faust commits acked offsets without waiting for the producer, so a crash can
lose records still in its buffer. Either way an action is lost without a trace (a rolling
restart of two workers lost one message in ~530, about one run in four).

The stage therefore reads with ``stream.noack()`` and acks through :class:`DeliveryAcks`:
per partition, in offset order, an event is acked when its own records and those of every
earlier event of the partition are delivered. An event whose records are not all delivered
when the worker stops is not committed, so its next owner evaluates it again; the records
it produces again carry the same idempotency keys, and the executor performs each key once.

A record whose delivery fails for a reason that time can cure (the broker away, a leader
moving, a batch expired) is sent again, with backoff, until it is delivered. One that Kafka
will never take (too large, topic forbidden) is logged with its key and counted; its event
is then acked so the partition does not stall behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)

log = logging.getLogger("zapflow.process")

#: Delivery failures that sending again cannot cure.
PERMANENT = (MessageSizeTooLargeError, InvalidTopicError, TopicAuthorizationFailedError)

#: Backoff between attempts to send a record again, in seconds: 0.5, 1, 2 ... up to 30.
RESEND_FIRST_S = 0.5
RESEND_MAX_S = 30.0

Send = Callable[[Any], Awaitable["asyncio.Future[Any]"]]


@dataclass(eq=False)
class _Pending:
    """One event waiting for its records: how many are still on their way."""

    event: Any
    remaining: int


@dataclass
class DeliveryAcks:
    """Acks events in offset order per partition once their records are delivered.

    ``send(record)`` hands a record to the producer and returns its delivery future;
    ``ack(events)`` acks events (in the order given); ``failed(record, exc)`` is told of a
    record Kafka will never take.
    """

    send: Send
    ack: Callable[[Sequence[Any]], Awaitable[None]]
    failed: Callable[[Any, BaseException], None]
    _queues: dict[Any, deque[_Pending]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def emit(self, tp: Any, event: Any, records: Sequence[Any]) -> None:
        """Produce ``records`` for ``event`` of partition ``tp``; ack what is ready.

        A cancellation while records are being handed to the producer leaves the event
        unacked (the point of this class).
        """
        queue = self._queues.get(tp)
        if not records and not queue:
            await self.ack((event,))
            return
        if queue is None:
            queue = self._queues[tp] = deque()
        pending = _Pending(event, len(records))
        queue.append(pending)
        for record in records:
            try:
                future = await self.send(record)
            except PERMANENT as exc:
                self.failed(record, exc)
                pending.remaining -= 1
                continue
            except Exception:
                # Not handed over (the producer not ready, ...): keep trying in the background.
                self._spawn(self._resend(tp, pending, record))
                continue
            future.add_done_callback(self._delivered(tp, pending, record))
        if pending.remaining == 0:
            await self._drain(tp)

    def pending(self) -> int:
        """Events read but not yet acked, over all partitions."""
        return sum(len(queue) for queue in self._queues.values())

    def revoked(self, tps: Any) -> None:
        """Forget partitions taken away: their unacked events go to the next owner."""
        for tp in tps:
            self._queues.pop(tp, None)

    async def stop(self) -> None:
        """Stop sending again; what is not delivered stays unacked."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _delivered(
        self, tp: Any, pending: _Pending, record: Any
    ) -> Callable[[asyncio.Future[Any]], None]:
        def done(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                exc: BaseException | None = asyncio.CancelledError()
            else:
                exc = future.exception()
            if exc is None or isinstance(exc, PERMANENT):
                if exc is not None:
                    self.failed(record, exc)
                pending.remaining -= 1
                if pending.remaining == 0:
                    self._spawn(self._drain(tp))
            else:
                log.warning("record %s not delivered (%r); sending it again", _key(record), exc)
                self._spawn(self._resend(tp, pending, record))

        return done

    async def _resend(self, tp: Any, pending: _Pending, record: Any) -> None:
        delay = RESEND_FIRST_S
        while True:
            await asyncio.sleep(delay)
            try:
                await (await self.send(record))
            except PERMANENT as exc:
                self.failed(record, exc)
                break
            except Exception as exc:
                delay = min(delay * 2, RESEND_MAX_S)
                log.warning(
                    "record %s still not delivered (%r); next try in %.1fs",
                    _key(record),
                    exc,
                    delay,
                )
            else:
                log.info("record %s delivered on a later try", _key(record))
                break
        pending.remaining -= 1
        if pending.remaining == 0:
            await self._drain(tp)

    async def _drain(self, tp: Any) -> None:
        queue = self._queues.get(tp)
        if not queue:
            return
        ready = []
        while queue and queue[0].remaining == 0:
            ready.append(queue.popleft().event)
        if not queue:
            del self._queues[tp]
        if ready:
            await self.ack(ready)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _key(record: Any) -> str:
    return str(getattr(record, "idempotency_key", record))
