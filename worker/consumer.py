"""The Faust consumer of every zapflow app: it never commits past an event no agent finished.

Faust (faust-streaming 0.15) commits, per partition, the end of the first run of consecutive
acked offsets. Around a rebalance it can lose events, and a rolling restart of two
``zapflow run`` workers showed it (``tests/integration/fleet/test_fleet_run.py``: a few
consecutive events of one partition in the topic, no action record for them, the group's
offset past them). Traced with per-offset logging, four faults combine:

- **Records dropped between the fetcher and the agents.** Recovery resumes the flow before
  its last seek to the committed offsets (faust-streaming#216, #221); records fetched in
  between are handed over while the seek moves the read offset, and some never reach the
  stream (the fetcher counts them as read, so it drops them when they come again).
- **The commit guard is off by one.** Faust holds a commit back when the acked offsets do not
  start at the committed one, but only when they start two or more past it
  (``min(acked) - committed > 1``): an event missing at the head of a partition's acks is
  committed past (faust-streaming#312, #606). A committed offset of 0 is not even known
  (stored as ``None``), so there is no guard at all then.
- **Gaps inferred from stale records.** When a fetched offset jumps ahead of the last one
  read, Faust takes the offsets between as absent from the log (compaction, transaction
  markers) and commits past them. After a seek, the rest of a batch fetched before it makes
  the same jump: a record lost on its way to the agent was then committed as "absent".
- **Acks from another generation count.** An event Faust skips because it belongs to the
  previous generation, or one an agent finishes after a rebalance, is acked into the new
  generation's bookkeeping, where it may be committed before this generation processed it.

:class:`GaplessConsumer` fixes each at the commit:

- no offset counts as absent because the fetch skipped it (zapflow's topics are neither
  compacted nor written in transactions);
- the acks of a partition are reset when it is assigned, and an ack of a message from
  another generation is ignored;
- the committed offset is known exactly, 0 included (and the consumer is sought to it, which
  aiokafka skips for 0);
- a commit never passes an offset that was not acked: the acked offsets must start at the
  committed one. zapflow's agents ack each partition in offset order (see
  :mod:`worker.process.acks` and the executor's batches), so acks that start beyond the
  committed offset mean the events before them were dropped on the way to the agent. After
  :data:`HOLE_GRACE_S` the consumer reads the partition again from the committed offset, at
  the next fetch (the fetcher is between batches then, so nothing is handed over while it
  moves). The events already processed come again and are recognised as duplicates
  downstream (message ids, idempotency keys); the dropped ones are processed, late and out
  of order with the later events of their partition, which the log says. An agent that
  acked out of order (``concurrency`` above 1) would make the same pattern while an earlier
  event is still being worked on: nothing is lost then, but a partition may be read again
  for nothing.

A record that really is absent at the committed offset (a compacted or deleted record, a
transaction marker; zapflow's own topics have none) would keep the head missing for good:
after a repair, the first record fetched for the partition shows which offsets are absent,
and those count as acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.utils.functional import consecutive_numbers
from mode.utils.futures import notify

from worker.stopping import stop_budget, stop_consumer
from worker.streaming import hand_over

log = logging.getLogger("zapflow.kafka")

_App = TypeVar("_App")

#: How long acks may start beyond the committed offset before the partition is read again.
#: Acks arrive in offset order, so the wait only covers an ack on its way, not slow work.
#: It doubles with each read of the same hole, up to :data:`HOLE_GRACE_MAX_S`.
HOLE_GRACE_S = 2.0
HOLE_GRACE_MAX_S = 60.0

#: The fetch wait while partitions are held back for a full stream buffer: how long one of
#: them may wait for its next fetch once the stream has made room (Faust's is a second).
HELD_BACK_FETCH_WAIT_S = 0.05


@dataclass
class _Hole:
    """Acks of a partition that start beyond its committed offset."""

    committed: int
    first_acked: int
    since: float
    #: How many times the partition was read again for this hole.
    rereads: int = 0


@dataclass(frozen=True)
class _Repair:
    """A partition to read again from ``offset``, asked for in ``generation``."""

    offset: int
    generation: int


class _ConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, stopping cleanly while Kafka is away."""

    async def on_thread_stop(self) -> None:
        # Faust's stops the thread's method queue, then the consumer. A stray cancellation
        # from the consumer (see stop_consumer) would end the thread before it tells the
        # worker it has stopped, and the worker would wait a minute for it.
        consumer = self._consumer
        if consumer is None:
            await super().on_thread_stop()
        else:
            await stop_consumer(consumer, super().on_thread_stop())


class GaplessConsumer(Consumer):
    """Faust's aiokafka consumer, committing only offsets every earlier event was acked for.

    See the module documentation for why and how. ``clock`` is the monotonic clock the
    grace period is measured with.
    """

    clock: Callable[[], float] = time.monotonic

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._holes: dict[Any, _Hole] = {}
        self._repairs: dict[Any, _Repair] = {}
        #: Partitions read again, waiting for their first record: the offset they restart at.
        self._restarted: dict[Any, int] = {}
        #: The committed offset of each assigned partition as this consumer last knew it.
        #: Faust forgets its own at a revocation before its last commit of the partition.
        self._floor: dict[Any, int] = {}
        #: How many times a partition was read again to recover dropped events.
        self.repairs = 0
        #: Set when a partition held back for a full stream buffer may be fetched again.
        self._room: asyncio.Event | None = None

    # -- stopping ---------------------------------------------------------------------------

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_empty(self) -> None:
        """Faust's wait for the agents and the last commit; bounded when the app stops
        (:mod:`worker.stopping`)."""
        if self.app.should_stop:
            await stop_budget(self.app).wait("the last commit", super().wait_empty())
        else:  # a rebalance: Faust's own wait
            await super().wait_empty()

    # -- one generation's bookkeeping -------------------------------------------------------

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        # Acks that came in since the revocation belong to the generation before.
        for tp in assigned:
            for table in (self._acked, self._acked_index, self._gap):
                table.pop(tp, None)
            self._floor.pop(tp, None)
            self._holes.pop(tp, None)
            self._repairs.pop(tp, None)
            self._restarted.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)

    def ack(self, message: Any) -> bool:
        if message.generation_id != self.app.consumer_generation_id:
            # Processed (or skipped) under the previous assignment: this generation reads
            # the event again from its committed offset and acks it then.
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
            return False
        return bool(super().ack(message))

    async def seek_to_committed(self) -> Mapping[Any, int]:
        offsets = await super().seek_to_committed()
        committed: Mapping[Any, int | None] = offsets  # aiokafka's None: never committed
        for tp, offset in committed.items():
            if offset is None:
                continue  # nothing committed: the reset policy applies
            self._floor[tp] = offset
            if offset == 0:
                # aiokafka seeks only to a committed offset above 0, leaving the position
                # where an earlier assignment's fetches took it.
                try:
                    await self._seek(tp, 0)
                except IllegalStateError:
                    continue  # no longer assigned: a rebalance is under way
        return offsets

    async def perform_seek(self) -> None:
        await super().perform_seek()
        # Faust keeps a committed offset of 0 as "unknown", which turns its guard off.
        for tp, floor in self._floor.items():
            if floor == 0 and self._committed_offset.get(tp) is None:
                self._committed_offset[tp] = 0

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Faust's fetch loop found ``offset_from``..``offset_to - 1`` skipped: not trusted.

        Records of a batch fetched before a seek make the same jump, so these offsets may be
        records lost on their way to an agent. Offsets really absent from the log are found
        by reading the partition again (:meth:`_absent`).
        """

    # -- the commit ---------------------------------------------------------------------------

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for ``tp``: past the acked run that starts at the committed one.

        Faust's own (0.15.3), with its gaps merged in the same way, but holding the commit
        back whenever the acked offsets do not start exactly at the committed offset.
        """
        acked = self._acked[tp]
        if not acked:
            self._holes.pop(tp, None)
            return None
        max_offset = max(acked)
        gap_for_tp = self._gap[tp]
        if gap_for_tp:
            candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
            if candidates:
                absent: list[int] = []
                for entry in candidates:
                    absent.extend(range(entry.begin, entry.end))
                acked.extend(absent)
                gap_for_tp.chop(0, max(absent[-1], max_offset + 1))
        acked.sort()
        committed = self._committed_offset[tp]
        if committed is None:
            committed = self._floor.get(tp)
        if committed is not None and acked[0] < committed:
            # Acked once Faust had forgotten the committed offset (a revocation): behind it.
            behind = [offset for offset in acked if offset < committed]
            del acked[: len(behind)]
            self._acked_index[tp].difference_update(behind)
            if not acked:
                return None
        if committed is not None and acked[0] > committed:
            self._hold(tp, committed, acked[0])
            return None
        self._holes.pop(tp, None)
        batch = next(consecutive_numbers(acked))
        acked[: len(batch)] = []
        self._acked_index[tp].difference_update(batch)
        offset = self._floor[tp] = int(batch[-1]) + 1
        return offset

    def _hold(self, tp: Any, committed: int, first_acked: int) -> None:
        now = self.clock()
        hole = self._holes.get(tp)
        if hole is None or hole.committed != committed:
            self._holes[tp] = _Hole(committed, first_acked, now)
            return
        grace = min(HOLE_GRACE_S * 2**hole.rereads, HOLE_GRACE_MAX_S)
        if now - hole.since < grace or tp in self._repairs or tp in self._restarted:
            return  # an ack may be on its way, or the partition is being read again
        log.warning(
            "%s[%d]: %s never reached an agent (lost between Faust's fetcher and the "
            "agents, as happens around rebalances); reading the partition again from %d: "
            "the events after them come again and are skipped as duplicates, these are "
            "processed late and out of order",
            tp.topic,
            tp.partition,
            _offsets(committed, first_acked),
            committed,
        )
        self._repairs[tp] = _Repair(committed, self.app.consumer_generation_id)
        hole.since = now
        hole.rereads += 1

    # -- handing records to the streams ----------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs Kafka
        """Faust's fetch loop (0.15.3), handing records over with :func:`hand_over`.

        The same loop but for two things: records go to the conductor's callback through
        :func:`worker.streaming.hand_over` instead of ``wait_first`` (four tasks per record),
        and skipped offsets are not recorded as gaps (see :meth:`_add_gap`).
        """
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        suspend_flow = self.suspend_flow
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                # Faust's: getmany may return at once, again and again.
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await hand_over(self, suspend_flow, callback(message))
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r: k=%r", offset, message.key)
                    unset_flag(CONSUMER_FETCHING)
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
            unset_flag(CONSUMER_FETCHING)

    # -- reading a partition again ------------------------------------------------------------

    def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        # Called by Faust's fetch loop between batches: nothing is being handed over, so a
        # seek here cannot race a record on its way to a stream.
        if self._repairs:
            return self._getmany_after_repairs(timeout)
        return super().getmany(timeout)

    async def _getmany_after_repairs(
        self,
        timeout: float,  # noqa: ASYNC109 (Faust's fetch wait, passed on)
    ) -> AsyncIterator[tuple[Any, Any]]:
        if self.flow_active:  # not while a rebalance holds the flow: the repairs wait
            await self._apply_repairs()
        async for item in super().getmany(timeout):
            yield item

    def on_buffer_drop(self, tp: Any) -> None:
        super().on_buffer_drop(tp)
        if self._room is not None:
            self._room.set()

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        if self._buffered_partitions and self.flow_active and not self.app.client_only:
            # Partitions wait for room in a full stream buffer. Faust would fetch the others
            # with its full second's wait, or sleep a second when none is left, and a
            # partition given room meanwhile would wait that long: the stream empties its
            # buffer far sooner. Wait for room instead, and fetch with a short wait.
            if not self._get_active_partitions():
                room = self._room = self._room or asyncio.Event()
                room.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await room.wait()
            timeout = min(timeout, HELD_BACK_FETCH_WAIT_S)
        records, active = await super()._wait_next_records(timeout)
        if self._restarted and records:
            # The records as Kafka returned them, before Faust picks what to hand over: the
            # first one of a partition read again shows which offsets hold no record.
            for tp, batch in records.items():
                restart = self._restarted.pop(tp, None)
                if restart is not None and batch and batch[0].offset > restart:
                    self._absent(tp, restart, batch[0].offset)
        return records, active

    async def _apply_repairs(self) -> None:
        for tp, repair in list(self._repairs.items()):
            del self._repairs[tp]
            if repair.generation != self.app.consumer_generation_id:
                continue  # reassigned since: the new generation starts at the committed offset
            try:
                if tp not in self.assignment():
                    continue
                await self.seek(tp, repair.offset)
            except IllegalStateError:
                continue  # revoked meanwhile; the hole is found again if it is still there
            self._restarted[tp] = repair.offset
            self.repairs += 1

    def _absent(self, tp: Any, start: int, first: int) -> None:
        """Offsets ``start`` to ``first - 1`` hold no record: count them as acked."""
        log.warning(
            "%s[%d]: %s hold(s) no record (compacted, deleted or a transaction marker); "
            "committing past",
            tp.topic,
            tp.partition,
            _offsets(start, first),
        )
        gap = self._gap[tp]
        gap.addi(start, first)
        gap.merge_overlaps()


class ConsumerCollector:
    """``zapflow_consumer_rereads_total``: partitions read again by :class:`GaplessConsumer`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "zapflow_consumer_rereads",
            "Partitions read again from their committed offset because events fetched from "
            "them never reached an agent (logged with the offsets)",
        )
        consumer = self.app._consumer  # not created before the worker starts
        family.add_metric([], getattr(consumer, "repairs", 0) if consumer is not None else 0)
        yield family


def _offsets(start: int, end: int) -> str:
    """Offsets ``start`` to ``end - 1``, for a log line."""
    return f"offset {start}" if end - start == 1 else f"offsets {start}-{end - 1}"


def use_gapless_consumer(app: _App) -> _App:
    """Make a Faust app (its consumer not created yet) consume with :class:`GaplessConsumer`."""
    app.transport.Consumer = GaplessConsumer  # type: ignore[attr-defined]
    return app
