"""The executor's prune forgets finished keys past the retention, a share of each partition
per run, and lets the event loop run between slices of the table."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from aiokafka.structs import TopicPartition

from worker import tables as tables_module
from worker.actions import ledger
from worker.actions.executor import Executor
from worker.actions.settings import ExecutorSettings

NOW = 1_000_000.0
RETENTION_S = 3600.0


class Producer:
    """What the prune asks of the executor's producer: tombstones, then a flush."""

    def __init__(self) -> None:
        self.tombstones: list[tuple[bytes, int]] = []

    async def send(self, topic: str, value: Any, *, key: bytes, partition: int) -> None:
        assert value is None
        self.tombstones.append((key, partition))

    async def flush(self) -> None:
        return None


def executor(ours: set[int], clock: list[float] | None = None) -> tuple[Executor, Producer]:
    app = faust.App("test-prune", broker="kafka://127.0.0.1:1", store="memory://")
    settings = ExecutorSettings(ledger_retention_s=RETENTION_S, partitions=2)
    now = clock if clock is not None else [NOW]
    ex = Executor(app, settings, wall_clock=lambda: now[0])
    producer = Producer()

    async def kafka() -> Producer:
        return producer

    ex._kafka = kafka  # type: ignore[assignment,method-assign]
    ex._our_partitions = lambda: set(ours)  # type: ignore[method-assign]
    return ex, producer


def store(ex: Executor, key: str, entry: ledger.LedgerEntry) -> None:
    ex.table.data[key] = entry.to_dict()


def old_done(partition: int) -> ledger.LedgerEntry:
    claimed = ledger.claimed({"kind": "log"}, partition, NOW - 2 * RETENTION_S)
    return ledger.completed(claimed, NOW - 2 * RETENTION_S)


async def test_old_finished_keys_of_our_partitions_are_forgotten() -> None:
    ex, producer = executor(ours={0})
    store(ex, "old", old_done(0))
    store(ex, "recent", ledger.completed(ledger.claimed({}, 0, NOW), NOW - 10))
    store(ex, "pending", ledger.claimed({}, 0, NOW - 2 * RETENTION_S))
    store(ex, "theirs", old_done(1))
    await ex._prune()
    assert producer.tombstones == [(b'"old"', 0)]
    assert set(ex.table.data.keys()) == {"recent", "pending", "theirs"}


async def test_the_event_loop_runs_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables_module, "WALK_SLICE", 10)
    ex, producer = executor(ours={0})
    for n in range(100):
        store(ex, f"k{n}", old_done(0))
    ran_during: list[int] = []

    async def other_work() -> None:
        while True:
            ran_during.append(len(producer.tombstones))
            await asyncio.sleep(0)

    other = asyncio.ensure_future(other_work())
    await asyncio.sleep(0)
    before = len(ran_during)
    await ex._prune()
    other.cancel()
    # The loop ran after each slice of 10 keys was forgotten.
    assert {10, 20, 30, 40, 50, 60, 70, 80, 90} <= set(ran_during[before:])
    assert len(producer.tombstones) == 100


async def test_a_partition_taken_away_mid_walk_is_left_to_its_next_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tables_module, "WALK_SLICE", 10)
    ours = {0}
    ex, producer = executor(ours)
    for n in range(100):
        store(ex, f"k{n}", old_done(0))

    async def revoke() -> None:
        ours.clear()

    # The revocation comes in the first turn the prune hands back: after its first slice.
    revoking = asyncio.ensure_future(revoke())
    await ex._prune()
    await revoking
    assert len(producer.tombstones) == 10
    assert len(ex.table.data) == 90


async def test_a_pass_is_spread_over_runs_and_the_next_waits_for_its_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tables_module, "PACED_MINIMUM", 10)
    clock = [NOW]
    ex, producer = executor(ours={0}, clock=clock)
    for n in range(35):
        store(ex, f"k{n:02d}", old_done(0))
    counts = []
    for _ in range(5):
        await ex._prune()
        counts.append(len(producer.tombstones))
        clock[0] += 1
    assert counts == [10, 20, 30, 35, 35]
    # A pass begins every prune_interval_s (600 s; a tenth of the retention is 360 s).
    store(ex, "late", old_done(0))
    clock[0] = NOW + 599
    await ex._prune()
    assert len(producer.tombstones) == 35
    clock[0] = NOW + 600
    await ex._prune()
    assert producer.tombstones[-1] == (b'"late"', 0)


def test_our_partitions_are_those_of_the_actions_topic() -> None:
    app = faust.App("test-prune-ours", broker="kafka://127.0.0.1:1", store="memory://")
    ex = Executor(app, ExecutorSettings(partitions=4))
    assigned = {TopicPartition(ex.topic_name, 2), TopicPartition("other", 3)}
    app.assignor.assigned_actives = lambda: assigned  # type: ignore[method-assign]
    assert ex._our_partitions() == {2}
