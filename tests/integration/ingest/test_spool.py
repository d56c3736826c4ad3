"""The disk spool: order, bound, and surviving a reopen (real files, no Kafka)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.ingest.envelope import KafkaRecord
from worker.ingest.spool import Spool, SpoolFull


def record(n: int, size: int = 10) -> KafkaRecord:
    return KafkaRecord(
        topic="codechat.messages.upsert",
        key=f"shop-bot:{n}".encode(),
        value=b"x" * size,
        headers=(("event", b"messages.upsert"), ("instance", b"shop-bot")),
        id=f"ID{n:04d}",
    )


def test_records_come_back_in_sequence_order_whatever_the_insert_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", 10 * 1024 * 1024)
    spool.append([(5, record(5)), (6, record(6))])
    spool.append([(2, record(2)), (3, record(3))])  # failed in flight, spooled later
    assert [s.seq for s in spool.oldest(10)] == [2, 3, 5, 6]
    assert spool.oldest(10)[0].record == record(2)
    assert spool.depth == 4


def test_the_spool_survives_a_reopen_and_new_numbers_continue_above(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, 10 * 1024 * 1024)
    spool.append([(i, record(i)) for i in range(1, 101)])
    spool.remove(range(1, 51))
    spool.close()
    again = Spool(path, 10 * 1024 * 1024)
    assert again.depth == 50
    assert again.last_seq_at_open == 100
    assert [s.seq for s in again.oldest(3)] == [51, 52, 53]
    assert again.bytes == sum(10 + len(f"shop-bot:{i}") + 64 for i in range(51, 101))


def test_a_full_spool_stores_up_to_its_bound_and_says_how_many_were_not_stored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path, 1000)
    with pytest.raises(SpoolFull) as info:
        spool.append([(i, record(i, size=200)) for i in range(10)])
    assert spool.depth == 3
    assert info.value.dropped == 7
    assert str(info.value) == (
        f"spool {path} is full (1000 bytes); 7 events were not stored. "
        "Bring Kafka back or raise ingest.spool.max_bytes"
    )
    spool.remove([0, 1, 2])
    assert spool.depth == 0
    assert spool.bytes == 0
