from __future__ import annotations

import asyncio
import logging

import pytest

from worker.stopping import StopBudget, stop_budget


async def test_work_done_in_time_is_not_given_up() -> None:
    budget = StopBudget(timeout=5.0)
    done: list[str] = []

    async def commit() -> None:
        await asyncio.sleep(0)
        done.append("commit")

    assert await budget.wait("the last commit", commit()) is True
    assert done == ["commit"] and budget.abandoned == []


async def test_the_waits_share_one_deadline_and_the_rest_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = StopBudget(timeout=0.3)
    loop = asyncio.get_running_loop()
    never = loop.create_future()  # Kafka away: the commit never completes
    started = loop.time()
    assert await budget.wait("the last commit", _wait(never)) is False
    assert 0.25 <= loop.time() - started < 2.0

    ran: list[str] = []

    async def flush() -> None:
        ran.append("flush")

    assert "within 0.3 s of the stop" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, "zapflow.kafka"):
        assert await budget.wait("the producer's last records", flush()) is False
        assert await budget.wait("the last commit", _wait(never)) is False
    assert ran == [], "a wait after the budget was spent must not run"
    assert budget.abandoned == ["the last commit", "the producer's last records"]
    assert [r.getMessage() for r in caplog.records] == [
        "stopping without the producer's last records too"
    ]


async def test_a_later_wait_gets_only_what_is_left() -> None:
    budget = StopBudget(timeout=0.4)
    loop = asyncio.get_running_loop()
    assert await budget.wait("first", asyncio.sleep(0.25)) is True
    started = loop.time()
    assert await budget.wait("second", asyncio.sleep(5)) is False
    assert loop.time() - started < 0.3


async def test_what_is_left_starts_with_its_first_use_and_ends_when_given_up() -> None:
    budget = StopBudget(timeout=5.0)
    first = budget.remaining()
    assert 4.9 < first <= 5.0
    await asyncio.sleep(0.05)
    assert budget.remaining() < first
    never_ran: list[str] = []

    async def commit() -> None:
        never_ran.append("commit")

    # Ingest's flush found Kafka away: later waits do not wait again.
    budget.give_up("ingest's events in flight")
    assert budget.remaining() == 0.0
    assert await budget.wait("the last commit", commit()) is False
    assert never_ran == []
    assert budget.abandoned == ["ingest's events in flight", "the last commit"]


def test_one_budget_per_app() -> None:
    class App:
        pass

    app, other = App(), App()
    assert stop_budget(app) is stop_budget(app)
    assert stop_budget(app) is not stop_budget(other)


async def _wait(future: asyncio.Future[None]) -> None:
    await future
