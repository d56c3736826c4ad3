"""Faust's per-event path, made cheaper where it costs most without changing what it does.

Used by every Faust app of zapflow (the processing stage, the executor, ``zapflow run``).
Measured on ``zapflow process`` (py-spy, ``python -m bench rules``), Faust spent more CPU per
event than the rules engine, and stood idle while work was waiting:

- The fetcher hands each record to the conductor through ``Service.wait_first(callback,
  suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per record, so that a callback
  blocked on a full stream buffer or on a rebalance can be abandoned. The callback blocks on
  neither almost always, so :class:`DrainingConsumer` first runs it directly and falls back
  to ``wait_first`` with the rest of it only when it actually suspends.
- When a stream's buffer is full, Faust stops fetching its partitions until the stream has
  emptied it, but the fetcher meanwhile waits up to a second for records of the other
  partitions (the tick topic's come once a second), or, with none left, sleeps a second;
  the stream empties its buffer well within that (3,300 events at 7,000 a second), so the
  worker stood idle for a third of the time. :class:`DrainingConsumer` fetches with a 10 ms
  wait while partitions are held back, and wakes as soon as there is room.
- The :class:`faust.Monitor` sensor keeps per-event and per-send statistics (dicts keyed by
  stream, topic and partition, timestamps, deques of latencies) that only Faust's web views
  read; the stage serves its own counters. :class:`QuietMonitor` skips those.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, cast

from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer

#: How long one fetch waits for records while partitions wait for room in the stream
#: buffers: Faust's second would keep them waiting that long after the room is made.
HELD_BACK_FETCH_WAIT_S = 0.01


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Carry on a coroutine that was stepped by hand and suspended on ``yielded``.

    Hands what it waits on to the task that awaits this, then passes results and exceptions
    (a cancellation included) back into it, as ``await`` would have done from the start.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _resume(coro, yielded)


class DrainingConsumer(Consumer):
    """The aiokafka consumer of Faust, handing records over without a task per record, and
    fetching again as soon as the stream buffers have room.

    ``_drain_messages`` is Faust's own (faust-streaming 0.15.3) but for two things. The
    hand-over: the conductor's callback runs in the fetcher's task until it first suspends;
    only then does the rest of it go through ``wait_first`` against ``suspend_flow``, as
    every record did before (a callback that never suspends could not have been interrupted
    anyway). And the fetch's wait, 10 ms instead of a second while partitions are held back.
    """

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs Kafka
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Any, self)._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                held_back = bool(self._buffered_partitions)
                ait = getmany(timeout=HELD_BACK_FETCH_WAIT_S if held_back else 1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await self._hand_over(callback(message))
                            set_read_offset(tp, offset)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)

    #: Set when a partition held back for a full stream buffer may be fetched again.
    _room: asyncio.Event | None = None

    def on_buffer_drop(self, tp: Any) -> None:
        super().on_buffer_drop(tp)
        if self._room is not None:
            self._room.set()

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        if self._held_back():
            # Faust's own wait below is a second's sleep; wait for room instead (at most
            # that second, so a stream that does not drain is not polled any harder).
            room = self._room = self._room or asyncio.Event()
            room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(room.wait(), 1.0)
        return await super()._wait_next_records(timeout)

    def _held_back(self) -> bool:
        """Whether every assigned partition waits for room in the stream buffers."""
        return (
            self.flow_active
            and not self.app.client_only
            and bool(self._buffered_partitions)
            and not self._get_active_partitions()
        )

    async def _hand_over(self, delivery: Awaitable[Any]) -> None:
        """Run the conductor's callback for one record; abandon it on a flow suspension."""
        if not isinstance(delivery, Coroutine):
            await self.wait_first(delivery, self.suspend_flow.wait())
            return
        try:
            yielded = delivery.send(None)
        except StopIteration:
            return
        await self.wait_first(_finish(delivery, yielded), self.suspend_flow.wait())


class QuietMonitor(Monitor):
    """Faust's monitor without its per-event and per-send bookkeeping (see module doc)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        return None


def use_draining_consumer(app: Any) -> None:
    """Make ``app`` (its consumer not created yet) consume with :class:`DrainingConsumer`."""
    app.transport.Consumer = DrainingConsumer
