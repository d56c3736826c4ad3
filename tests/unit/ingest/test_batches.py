"""Ingest's open batches per partition, with aiokafka's own batch builder."""

from __future__ import annotations

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from worker.ingest.batches import PartitionBatches
from worker.ingest.envelope import KafkaRecord

HEADERS = (("event", b"messages.upsert"), ("content-type", b"application/json"))


def record(n: int, topic: str = "codechat.messages.upsert", size: int = 100) -> KafkaRecord:
    return KafkaRecord(topic, b"shop:55%d" % n, b"%06d" % n + b"x" * size, HEADERS, str(n))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def batches(clock: Clock, batch_size: int = 1024) -> PartitionBatches:
    return PartitionBatches(lambda: BatchBuilder(batch_size, 0), 0.010, clock)


def values(builder: BatchBuilder) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """What a consumer would read back from the batch's bytes."""
    records = MemoryRecords(bytes(builder._build()))
    out = []
    while records.has_next():
        batch = records.next_batch()
        out.extend((r.key, r.value[:6], list(r.headers)) for r in batch)
    return out


def test_records_gather_per_partition_until_handed_over_together() -> None:
    clock = Clock()
    open_ = batches(clock)
    assert open_.deadline is None
    assert open_.add(3, 1, record(1)) is None
    assert open_.deadline == 1000.010  # the first record's arrival plus the linger
    clock.now += 0.004
    assert open_.add(5, 2, record(2)) is None
    assert open_.add(3, 3, record(3)) is None
    assert open_.add(3, 4, record(4, topic="codechat.connection.update")) is None
    assert open_.deadline == 1000.010  # later batches do not push it back
    assert len(open_) == 3

    taken = open_.take_all()
    assert [(b.topic, b.partition, b.seqs) for b in taken] == [
        ("codechat.messages.upsert", 3, [1, 3]),
        ("codechat.messages.upsert", 5, [2]),
        ("codechat.connection.update", 3, [4]),
    ]
    assert all(b.builder.closed() for b in taken)
    assert open_.deadline is None and len(open_) == 0
    assert values(taken[0].builder) == [
        (b"shop:551", b"000001", list(HEADERS)),
        (b"shop:553", b"000003", list(HEADERS)),
    ]


def test_a_full_batch_is_returned_closed_and_the_record_starts_the_next() -> None:
    open_ = batches(Clock(), batch_size=1024)
    seq = 0
    full = None
    while full is None:
        seq += 1
        full = open_.add(0, seq, record(seq))
    assert full.builder.closed()
    assert full.seqs == list(range(1, seq))
    assert [v[1] for v in values(full.builder)] == [b"%06d" % n for n in range(1, seq)]
    (rest,) = open_.take_all()
    assert rest.seqs == [seq]


def test_a_record_larger_than_a_batch_goes_alone() -> None:
    open_ = batches(Clock(), batch_size=1024)
    assert open_.add(0, 1, record(1)) is None
    full = open_.add(0, 2, record(2, size=5000))
    assert full is not None and full.seqs == [1]
    big = open_.add(0, 3, record(3))  # the large record's batch is full
    assert big is not None and big.seqs == [2]
    assert len(values(big.builder)) == 1
    assert [b.seqs for b in open_.take_all()] == [[3]]


def test_a_full_batch_stays_to_be_taken_when_the_next_batch_refuses_the_record() -> None:
    class Refusing:
        def append(self, **_: object) -> None:
            raise TypeError("key must be bytes")

        def close(self) -> None:
            pass

    builders = iter([BatchBuilder(1024, 0), Refusing()])
    open_ = PartitionBatches(lambda: next(builders), 0.010, Clock())
    seq = 0
    with pytest.raises(TypeError):
        while True:
            seq += 1
            assert open_.add(0, seq, record(seq)) is None
    (full,) = open_.take_all()
    assert full.builder.closed()
    assert full.seqs == list(range(1, seq))
