"""The pipeline's hand-over from spool to direct sending, with a stand-in producer.

The producer is replaced by one that records what it is given and acknowledges after a
short delay, so the order and the once-only property can be checked exactly (Kafka
itself is covered by the broker tests).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.helpers import wait_for
from worker.ingest.config import KafkaConfig
from worker.ingest.envelope import KafkaRecord
from worker.ingest.producer import DRAIN_BATCH, EventPipeline
from worker.ingest.spool import Spool
from worker.ingest.stats import IngestStats


class RecordingBatch:
    """A stand-in for aiokafka's BatchBuilder: takes up to ``limit`` records."""

    def __init__(self, limit: int = 64) -> None:
        self.values: list[str] = []
        self.limit = limit
        self.closed = False

    def append(self, *, value: bytes, **_: Any) -> object | None:
        if self.closed or len(self.values) >= self.limit:
            self.closed = True
            return None
        self.values.append(value.decode())
        return object()

    def close(self) -> None:
        self.closed = True


class RecordingProducer:
    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[str] = []
        self.fail_first = fail_first
        #: Records of the batches whose delivery failed.
        self.failed: int = 0

    def create_batch(self) -> RecordingBatch:
        return RecordingBatch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send_batch(
        self, batch: RecordingBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Any]:
        assert batch.closed, "a batch is closed before it is handed over"
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self.fail_first > 0:
            self.fail_first -= 1
            self.failed += len(batch.values)
            loop.call_later(0.01, fut.set_exception, ConnectionError("broker away"))
        else:
            self.sent.extend(batch.values)
            loop.call_later(0.01, fut.set_result, None)
        return fut

    async def stop(self) -> None:
        pass


def record(n: int) -> KafkaRecord:
    return KafkaRecord(
        topic="t.messages.upsert", key=b"k", value=f"{n:06d}".encode(), headers=(), id=str(n)
    )


async def start_pipeline(tmp_path: Path, producer: RecordingProducer) -> tuple[Any, IngestStats]:
    spool = Spool(tmp_path / "spool.sqlite", 64 * 1024 * 1024)
    stats = IngestStats()
    pipeline = EventPipeline(KafkaConfig(), ["t.messages.upsert"], spool, stats)

    async def connect() -> None:
        pipeline._producer = producer
        pipeline.kafka_ready.set()

    pipeline._connect = connect  # type: ignore[method-assign]
    await pipeline.start(connect_timeout=1.0)
    return pipeline, stats


async def test_a_spool_left_by_a_previous_run_drains_first_then_new_events_follow_in_order(
    tmp_path: Path,
) -> None:
    previous = Spool(tmp_path / "spool.sqlite", 64 * 1024 * 1024)
    previous.append([(n, record(n)) for n in range(1, 4501)])
    previous.close()
    producer = RecordingProducer()
    pipeline, stats = await start_pipeline(tmp_path, producer)
    try:
        # New events keep arriving while the spool drains.
        for n in range(4501, 6001):
            pipeline.accept(record(n), 0.0)
            if n % 100 == 0:
                await asyncio.sleep(0.005)
        await wait_for(lambda: stats.produced == 6000, timeout=20, message="all produced")
        await wait_for(lambda: stats.spool_depth == 0, timeout=5)
        assert pipeline.mode == "direct"
    finally:
        await pipeline.close()
    assert producer.sent == [f"{n:06d}" for n in range(1, 6001)]
    # Everything from the old spool, plus what arrived while it drained, came from disk.
    assert stats.drained == 4500 + stats.spooled


async def test_a_failed_drain_keeps_its_records_and_counts_them(tmp_path: Path) -> None:
    # More than a drain batch: the spool's last part goes the direct way, not the drain's.
    total = 2 * DRAIN_BATCH + 500
    previous = Spool(tmp_path / "spool.sqlite", 64 * 1024 * 1024)
    previous.append([(n, record(n)) for n in range(1, total + 1)])
    previous.close()
    producer = RecordingProducer(fail_first=2)  # the drain's first two batches fail
    pipeline, stats = await start_pipeline(tmp_path, producer)
    try:
        await wait_for(lambda: stats.produced == total, timeout=20, message="all produced")
        await wait_for(lambda: stats.spool_depth == 0, timeout=5)
    finally:
        await pipeline.close()
    # Each once; the failed batches' records come after those acknowledged meanwhile.
    assert sorted(producer.sent) == [f"{n:06d}" for n in range(1, total + 1)]
    assert len(producer.sent) == total
    # In records, like a failure in direct mode, not in tries.
    assert stats.produce_errors == producer.failed > 2


async def test_failed_sends_are_spooled_and_sent_again_exactly_once_in_order(
    tmp_path: Path,
) -> None:
    producer = RecordingProducer()
    pipeline, stats = await start_pipeline(tmp_path, producer)
    try:
        await wait_for(lambda: pipeline.mode == "direct", timeout=5)
        for n in range(1, 1001):
            pipeline.accept(record(n), 0.0)
        await wait_for(lambda: stats.produced == 1000, timeout=10)
        producer.fail_first = 5  # Kafka goes away for the next 5 batches
        for n in range(1001, 3001):
            pipeline.accept(record(n), 0.0)
            if n % 200 == 0:
                await asyncio.sleep(0.01)
        await wait_for(lambda: stats.produced == 3000, timeout=20, message="all produced")
        await wait_for(lambda: pipeline.mode == "direct" and stats.spool_depth == 0, timeout=5)
    finally:
        await pipeline.close()
    assert stats.spooled > 0
    # Counted in records, whether a batch failed in direct mode or in the spool's drain.
    assert stats.produce_errors == producer.failed > 0
    assert sorted(producer.sent) == [f"{n:06d}" for n in range(1, 3001)]
    assert len(producer.sent) == 3000
    # Before the failure everything went in order; records that failed in flight are sent
    # again from the spool (in receive order), after any that were acknowledged meanwhile.
    assert producer.sent[:1000] == [f"{n:06d}" for n in range(1, 1001)]


class HeldProducer(RecordingProducer):
    """Acknowledges nothing until ``release()``: a Kafka that is slow, not gone."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[Any]] = []

    async def send_batch(
        self, batch: RecordingBatch, topic: str, *, partition: int
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.extend(batch.values)
        self.pending.append(fut)
        return fut

    def release(self) -> None:
        for fut in self.pending:
            fut.set_result(None)
        self.pending.clear()


async def test_a_slow_kafka_pauses_reading_instead_of_spooling(tmp_path: Path) -> None:
    from worker.ingest.producer import HIGH_WATER

    producer = HeldProducer()
    pipeline, stats = await start_pipeline(tmp_path, producer)
    try:
        await wait_for(lambda: pipeline.mode == "direct", timeout=5)
        for n in range(1, HIGH_WATER + 2):
            pipeline.accept(record(n), 0.0)
        assert not pipeline.room.is_set(), "subscriptions should pause above the high-water mark"
        await wait_for(lambda: len(producer.sent) == HIGH_WATER + 1, timeout=10)
        producer.release()
        await wait_for(pipeline.room.is_set, timeout=5, message="reading to resume")
        await wait_for(lambda: stats.produced == HIGH_WATER + 1, timeout=10)
        assert pipeline.mode == "direct"
        assert stats.spooled == 0
    finally:
        producer.release()
        await pipeline.close()
