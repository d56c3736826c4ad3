"""Faust's per-event bookkeeping, made cheaper where nothing reads it.

Used by every Faust app of zapflow (the processing stage, the executor, ``zapflow run``).
The :class:`faust.Monitor` sensor keeps per-event and per-send statistics (dicts keyed by
stream, topic and partition, timestamps, deques of latencies) that only Faust's web views
read; the stages serve their own counters. :class:`QuietMonitor` skips those.

Faust's fetcher hands each record to the streams through ``Service.wait_first(callback,
suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per record, so that a callback
blocked on a full stream buffer or on a rebalance can be abandoned. The callback blocks on
neither almost always. :func:`hand_over` runs it in the fetcher's own task until it first
suspends, as an eager task does (``asyncio.eager_task_factory`` from Python 3.12), and only
then waits for the rest of it against ``suspend_flow`` as Faust does. While the flow is
suspended it goes through ``wait_first`` from the start, exactly as before.

An earlier consumer that did this and also fetched again sooner while stream buffers were
full failed the fleet chaos test (``tests/integration/fleet/test_fleet_run.py``) twice: the
first time it lost 16 of 592 messages in a rolling restart (the losses :mod:`worker.consumer`
has closed since); the second time, on top of that consumer, one run in eight hung a
partition's table recovery ("No event received for active tp ... since recovery start").
Both halves are back on top of it (the shorter fetch wait with a 50 ms wait instead of
10 ms, in :class:`worker.consumer.GaplessConsumer`), and 26 runs of a four-restart rolling
restart passed (see ``docs/processing.md``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

from faust.sensors.monitor import Monitor
from mode import Service

from worker.heap import freeze_startup_heap

#: How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
#: A Faust worker runs two busy threads: the Kafka consumer's event loop and the agents'.
#: Each socket write or poll of one releases the GIL and then waits up to the whole interval
#: for the other to give it back; at 500 events/s end to end that was the largest share of
#: the stages' samples (py-spy) and ~20 ms of the median latency (``bench/README.md``).
SWITCH_INTERVAL_S = 0.0005


def prepare_worker(worker: Any) -> None:
    """Settings every zapflow Faust (or mode) worker gets before it starts.

    No terminal spinner: at a log level of WARNING or above it sets the root logger to
    DEBUG (``faust.worker._setup_spinner_handler``), so every debug record of aiokafka and
    Faust is built and handled, hundreds of µs per event. A short GIL switch interval
    (:data:`SWITCH_INTERVAL_S`). And the start-up heap frozen out of the garbage
    collector's full collections (:mod:`worker.heap`).
    """
    worker.spinner = None
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    freeze_startup_heap()


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


async def hand_over(consumer: Service, suspend_flow: Any, delivery: Awaitable[Any]) -> None:
    """Run the conductor's callback for one record, abandoning it if the flow is suspended.

    What Faust's fetcher does with ``consumer.wait_first(delivery, suspend_flow.wait())``,
    without a task per record when the callback finishes without suspending (module doc).
    """
    if suspend_flow.is_set() or not isinstance(delivery, Coroutine):
        await consumer.wait_first(delivery, suspend_flow.wait())
        return
    try:
        yielded = delivery.send(None)
    except StopIteration:
        return
    await consumer.wait_first(_finish(delivery, yielded), suspend_flow.wait())
