"""GaplessConsumer: what it commits, what acks it takes, how it reads a partition again.

Pure unit tests on a consumer that is never started: the broker calls (seeks, fetches) are
stand-ins, the bookkeeping is Faust's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import faust
import pytest
from aiokafka.errors import IllegalStateError
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from worker.consumer import (
    HELD_BACK_FETCH_WAIT_S,
    HOLE_GRACE_S,
    ConsumerCollector,
    GaplessConsumer,
)

TOPIC = "zf.messages.upsert"
P0 = TP(TOPIC, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Iterator[GaplessConsumer]:
    app = faust.App("zf-consumer-test", broker="kafka://127.0.0.1:1")
    app.transport.Consumer = GaplessConsumer
    app.topics._acking_topics.add(TOPIC)
    app.consumer_generation_id = 3
    consumer = app.consumer
    assert isinstance(consumer, GaplessConsumer)
    clock = Clock()
    monkeypatch.setattr(consumer, "clock", clock)
    monkeypatch.setattr(consumer, "assignment", lambda: {P0})
    yield consumer


def message(offset: int, generation: int = 3, tp: TP = P0) -> ConsumerMessage:
    return ConsumerMessage(
        tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=tp,
        generation_id=generation,
    )  # fmt: skip


def ack_all(consumer: GaplessConsumer, *offsets: int) -> None:
    for offset in offsets:
        assert consumer.ack(message(offset)) is True


def test_commits_the_run_of_acks_that_starts_at_the_committed_offset(
    consumer: GaplessConsumer,
) -> None:
    consumer._committed_offset[P0] = 85
    ack_all(consumer, 85, 86, 87, 89)
    assert consumer._new_offset(P0) == 88
    assert consumer._acked[P0] == [89]


def test_never_commits_past_an_event_missing_at_the_head(consumer: GaplessConsumer) -> None:
    consumer._committed_offset[P0] = 85
    ack_all(consumer, 86, 87, 88)
    # Faust's own guard lets one missing event through (it holds only from two on).
    stock = faust_consumer.Consumer._new_offset(consumer, P0)
    assert stock == 89
    consumer._acked[P0] = [86, 87, 88]
    consumer._acked_index[P0] = {86, 87, 88}
    assert consumer._new_offset(P0) is None
    assert consumer._acked[P0] == [86, 87, 88]
    ack_all(consumer, 85)
    assert consumer._new_offset(P0) == 89


def test_holds_at_a_committed_offset_of_zero(consumer: GaplessConsumer) -> None:
    consumer._committed_offset[P0] = 0
    ack_all(consumer, 1, 2)
    assert consumer._new_offset(P0) is None
    ack_all(consumer, 0)
    assert consumer._new_offset(P0) == 3


def test_offsets_known_to_be_absent_count_as_acked(consumer: GaplessConsumer) -> None:
    consumer._committed_offset[P0] = 10
    ack_all(consumer, 10, 11)
    consumer._gap[P0].addi(12, 15)  # offsets 12-14 hold no record
    ack_all(consumer, 15)
    assert consumer._new_offset(P0) == 16


def test_ignores_acks_of_another_generation(consumer: GaplessConsumer) -> None:
    consumer._committed_offset[P0] = 5
    stale = message(7, generation=2)
    consumer._unacked_messages.add(stale)
    assert consumer.ack(stale) is False
    assert stale.acked
    assert stale not in consumer._unacked_messages
    assert consumer._acked[P0] == []


async def test_assignment_forgets_acks_taken_since_the_revocation(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def assigned(self: Any, assigned: Any, generation_id: int = 0) -> None:
        return None

    monkeypatch.setattr(faust_consumer.Consumer, "on_partitions_assigned", assigned)
    ack_all(consumer, 40, 41)
    consumer._floor[P0] = 40
    consumer._gap[P0].addi(50, 52)
    await consumer.on_partitions_assigned({P0}, 4)
    assert consumer._acked[P0] == []
    assert consumer._acked_index[P0] == set()
    assert not consumer._gap[P0]
    assert P0 not in consumer._floor


def committed_at(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch, offsets: dict[TP, int]
) -> list[tuple[TP, int]]:
    """Make the group's committed offsets ``offsets``; returns the seeks made, as they come."""
    sought: list[tuple[TP, int]] = []

    async def committed(self: Any) -> dict[TP, int]:
        return offsets

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", committed)
    monkeypatch.setattr(consumer, "_seek", seek)
    return sought


async def test_seek_to_committed_seeks_to_zero_and_knows_it(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    p1 = TP(TOPIC, 1)
    sought = committed_at(consumer, monkeypatch, {P0: 0, p1: 12})
    await consumer.perform_seek()
    assert sought == [(P0, 0)]
    assert consumer._committed_offset[P0] == 0
    assert consumer._committed_offset[p1] == 12


class Fetches:
    """Stand-in for Faust's fetch: Kafka returns the given records, Faust hands them all over;
    the seeks are recorded."""

    def __init__(self, consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records: list[ConsumerMessage] = []
        self.seeks: list[tuple[TP, int]] = []
        self.refuse_seeks = False

        async def wait_next_records(_self: Any, timeout: float) -> tuple[Any, Any]:
            records, self.records = self.records, []
            batches: dict[TP, list[ConsumerMessage]] = {}
            for record in records:
                batches.setdefault(record.tp, []).append(record)
            return batches, set(batches)

        async def getmany(_self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
            batches, _ = await _self._wait_next_records(timeout)
            for tp, batch in batches.items():
                for record in batch:
                    yield tp, record

        async def seek(tp: TP, offset: int) -> None:
            if self.refuse_seeks:
                raise IllegalStateError(f"{tp} is not assigned")
            self.seeks.append((tp, offset))

        monkeypatch.setattr(faust_consumer.Consumer, "_wait_next_records", wait_next_records)
        monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)
        monkeypatch.setattr(consumer, "seek", seek)

    async def fetch(self, consumer: GaplessConsumer, *offsets: int) -> list[int]:
        self.records = [message(offset) for offset in offsets]
        return [m.offset async for _, m in consumer.getmany(timeout=1.0)]


def hole_past_grace(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch, *acked: int
) -> Fetches:
    """Committed 85 and ``acked`` acked: two commits, the grace period apart, find the hole.

    Returns the stand-in fetch, whose next fetch reads the partition again.
    """
    fetches = Fetches(consumer, monkeypatch)
    consumer._committed_offset[P0] = 85
    ack_all(consumer, *acked)
    assert consumer._new_offset(P0) is None
    consumer.clock.now += HOLE_GRACE_S  # type: ignore[attr-defined]
    assert consumer._new_offset(P0) is None
    return fetches


async def test_a_hole_that_lasts_is_read_again_at_the_next_fetch(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches = Fetches(consumer, monkeypatch)
    consumer._committed_offset[P0] = 85
    ack_all(consumer, 87, 88)
    assert consumer._new_offset(P0) is None
    assert await fetches.fetch(consumer, 89) == [89]
    assert fetches.seeks == [], "no repair within the grace period"
    consumer.clock.now += HOLE_GRACE_S  # type: ignore[attr-defined]
    assert consumer._new_offset(P0) is None
    assert await fetches.fetch(consumer, 85, 86, 87) == [85, 86, 87]
    assert fetches.seeks == [(P0, 85)]
    assert consumer.repairs == 1
    ack_all(consumer, 85, 86)
    assert consumer._new_offset(P0) == 89


async def test_offsets_with_no_record_after_a_repair_count_as_acked(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches = hole_past_grace(consumer, monkeypatch, 87, 88)
    # Read again from 85, the first record is 87: 85 and 86 are not in the log.
    assert await fetches.fetch(consumer, 87, 88) == [87, 88]
    assert consumer._new_offset(P0) == 89


async def test_no_repair_once_the_partition_was_reassigned(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches = hole_past_grace(consumer, monkeypatch, 87)
    consumer.app.consumer_generation_id = 4
    await fetches.fetch(consumer, 85)
    assert fetches.seeks == []
    assert consumer.repairs == 0


def test_the_rereads_are_a_metric(consumer: GaplessConsumer) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(ConsumerCollector(consumer.app))
    assert b"zapflow_consumer_rereads_total 0.0" in generate_latest(registry)
    consumer.repairs = 2
    assert b"zapflow_consumer_rereads_total 2.0" in generate_latest(registry)


async def test_offsets_the_fetch_loop_saw_skipped_do_not_count_as_acked(
    consumer: GaplessConsumer,
) -> None:
    consumer._committed_offset[P0] = 487
    # After a seek back to 487, a record of a batch fetched before it (489) comes next.
    await consumer._add_gap(P0, 488, 489)
    ack_all(consumer, 487, 489)
    assert consumer._new_offset(P0) == 488
    assert consumer._new_offset(P0) is None


async def test_no_commit_past_a_hole_while_faust_revokes_the_partition(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed_at(consumer, monkeypatch, {P0: 100})
    await consumer.perform_seek()
    ack_all(consumer, 101, 102)
    assert consumer._new_offset(P0) is None
    # Faust's revocation forgets the partition's committed offset and acks, then commits
    # once more; an event finished meanwhile is acked.
    for table in (consumer._committed_offset, consumer._acked, consumer._acked_index):
        table.pop(P0, None)
    ack_all(consumer, 103)
    assert consumer._new_offset(P0) is None
    # An event behind the committed offset, finished late, does not move it back either.
    ack_all(consumer, 95)
    assert consumer._new_offset(P0) is None
    ack_all(consumer, 100)  # 101 and 102 were forgotten with the revocation
    assert consumer._new_offset(P0) == 101


async def test_a_hole_read_again_waits_longer_each_time(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches = hole_past_grace(consumer, monkeypatch, 87)
    assert await fetches.fetch(consumer, 85, 86, 87) == [85, 86, 87]  # 85 lost again
    assert fetches.seeks == [(P0, 85)]
    consumer.clock.now += HOLE_GRACE_S  # type: ignore[attr-defined]
    assert consumer._new_offset(P0) is None
    await fetches.fetch(consumer, 88)
    assert fetches.seeks == [(P0, 85)], "the second read waits twice as long"
    consumer.clock.now += HOLE_GRACE_S  # type: ignore[attr-defined]
    assert consumer._new_offset(P0) is None
    await fetches.fetch(consumer, 85)
    assert fetches.seeks == [(P0, 85), (P0, 85)]


async def test_a_partition_revoked_before_its_repair_does_not_stop_the_fetch(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches = hole_past_grace(consumer, monkeypatch, 87)
    fetches.refuse_seeks = True
    assert await fetches.fetch(consumer, 90) == [90]
    assert consumer.repairs == 0
    assert consumer._repairs == {}


class Waits:
    """Stand-in for Faust's own wait for records: the timeouts it was called with."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.timeouts: list[float] = []

        async def wait_next_records(_self: Any, timeout: float) -> tuple[Any, Any]:
            self.timeouts.append(timeout)
            return {}, set()

        monkeypatch.setattr(faust_consumer.Consumer, "_wait_next_records", wait_next_records)


async def test_fetches_with_faust_wait_while_no_partition_is_held_back(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = Waits(monkeypatch)
    await consumer._wait_next_records(1.0)
    assert waits.timeouts == [1.0]


async def test_fetches_with_a_short_wait_while_a_full_stream_holds_partitions_back(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = Waits(monkeypatch)
    p1 = TP(TOPIC, 1)
    consumer._active_partitions = {p1}
    consumer.on_buffer_full(P0)
    assert consumer._buffered_partitions == {P0}
    await consumer._wait_next_records(1.0)
    assert waits.timeouts == [HELD_BACK_FETCH_WAIT_S]


async def test_waits_for_room_when_every_partition_is_held_back(
    consumer: GaplessConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = Waits(monkeypatch)
    consumer._active_partitions = {P0}
    consumer.on_buffer_full(P0)
    assert not consumer._get_active_partitions()
    waiting = asyncio.ensure_future(consumer._wait_next_records(30.0))
    await asyncio.sleep(0)
    assert not waiting.done() and waits.timeouts == [], "no fetch before there is room"
    consumer.on_buffer_drop(P0)
    await asyncio.wait_for(waiting, 5.0)  # far less than Faust's 30 s
    assert waits.timeouts == [HELD_BACK_FETCH_WAIT_S]
    assert consumer._get_active_partitions() == {P0}
