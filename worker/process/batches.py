"""Handling the events a stream already holds one after another, as a batch.

The rule stage used to evaluate each event as Faust's stream handed it over: its fetcher's
hand-over, the stream's iteration, the acks and the producer all ran between two
evaluations, and evicted the engine's rules, plans and code from the CPU's caches: with 50
rules the engine took 31–35 µs an event alone, and about twice that inside the worker. The
engine alone with 20,000 small objects walked between evaluations (a stand-in for the
worker's other work) took 80–94 µs an event; walked between batches, 47 µs in batches of
4, 36 in batches of 16 and 32 in batches of 64 (``bench/README.md``).

:func:`handle_in_batches` reads events from the stream only while more are already
waiting in its queue (up to :data:`BATCH_MAX`), then handles them in order. It never waits
for an event to fill a batch, so it adds no latency; an event is still evaluated and its
records handed to the producer before the next one is evaluated, so a cancellation leaves
at most the event in hand half done, as before. The events read but not yet handled are
neither evaluated nor acked: a stop or a rebalance leaves them to the partition's next
reader, and a rebalance drops those of the partitions it takes away
(:meth:`EventBatch.drop`), as Faust clears its own stream buffers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Collection
from typing import Any

#: Events read ahead of their handling at most. With 50 rules the worker took 171–176 µs of
#: CPU an event in batches of up to 64, against 200–234 one at a time (four pairs).
BATCH_MAX = 64


class EventBatch(deque[Any]):
    """Events read from a stream and not yet handled, in the stream's order."""

    def drop(self, tps: Collection[Any]) -> None:
        """Forget the events of partitions taken away: their next owner reads them."""
        kept = [event for event in self if event.message.tp not in tps]
        self.clear()
        self.extend(kept)


async def handle_in_batches(
    events: AsyncIterable[Any],
    more_waiting: Callable[[], bool],
    handle: Callable[[Any], Awaitable[None]],
    batch: EventBatch,
    limit: int = BATCH_MAX,
) -> None:
    """Read ``events`` while ``more_waiting()`` (up to ``limit``), then ``handle`` each."""
    async for event in events:
        batch.append(event)
        if len(batch) < limit and more_waiting():
            continue
        while batch:
            await handle(batch.popleft())
