"""Claims that carry their record's first attempt: the slots taken for it always come back."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust

from tests.helpers import wait_for
from tests.unit.actions.test_requests import record
from worker.actions import ledger
from worker.actions.executor import Executor, _Attempt
from worker.actions.ledger import LedgerEntry
from worker.actions.record import ActionRecord
from worker.actions.settings import ExecutorSettings


def log_record(key: str) -> ActionRecord:
    return record("log", {"level": "info", "message": "hello"}, idempotency_key=key)


def executor(concurrency: int) -> Executor:
    app = faust.App("test-claim", broker="kafka://127.0.0.1:1", store="memory://")
    return Executor(app, ExecutorSettings(concurrency=concurrency))


async def test_slots_of_claims_cut_off_before_their_tasks_start_are_given_back() -> None:
    ex = executor(concurrency=2)
    records = {key: log_record(key) for key in ("a", "b", "c")}

    async def accept(
        raw: str, partition: int, claimed_now: set[str]
    ) -> tuple[str, LedgerEntry, ActionRecord]:
        return raw, ledger.claimed(records[raw].to_dict(), partition, 0.0), records[raw]

    sent: list[LedgerEntry] = []
    kafka_never_answers: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def send_entry(key: str, entry: LedgerEntry) -> asyncio.Future[Any]:
        sent.append(entry)
        return kafka_never_answers

    ex._accept = accept  # type: ignore[method-assign,assignment]
    ex._send_entry = send_entry  # type: ignore[method-assign]
    events = [SimpleNamespace(value=key, message=SimpleNamespace(partition=0)) for key in records]
    claiming = asyncio.create_task(ex._accept_batch(events))
    await wait_for(lambda: len(sent) == 3, timeout=5, message="three claims sent")
    # two slots: the first two claims count their attempt, the third waits for a slot
    assert [entry.attempts for entry in sent] == [1, 1, 0]
    assert not ex._slots.free(None)

    claiming.cancel()  # the worker stops while the claims are on their way
    await asyncio.gather(claiming, return_exceptions=True)
    assert ex._tasks == {}
    both = [await asyncio.wait_for(ex._slots.hold(None), 5) for _ in range(2)]
    for held in both:
        held.release()


async def test_a_task_cancelled_before_it_ran_gives_its_slots_back() -> None:
    ex = executor(concurrency=1)
    entry = ledger.attempt_started(ledger.claimed(log_record("a").to_dict(), 0, 0.0), 0.0)
    ex._start("a", entry, _Attempt(None, await ex._slots.hold(None)))
    task = ex._tasks["a"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ex._slots.free(None)
