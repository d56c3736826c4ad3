from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.unit.process.standin import StandInEngine, write_rules
from worker.process.app import build_app
from worker.process.reload import RulesWatcher
from worker.process.settings import ProcessSettings
from worker.streaming import DrainingConsumer, QuietMonitor


class Flow:
    """What ``_hand_over`` needs of a consumer: ``wait_first`` and ``suspend_flow``."""

    def __init__(self) -> None:
        self.suspend_flow = asyncio.Event()
        self.waited = 0

    async def wait_first(self, *coros: Any) -> list[Any]:
        self.waited += 1
        tasks = [asyncio.ensure_future(c) for c in coros]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [task.result() for task in done]


async def hand_over(flow: Flow, delivery: Any) -> None:
    await DrainingConsumer._hand_over(flow, delivery)  # type: ignore[arg-type]


async def test_a_callback_that_does_not_suspend_is_handed_over_without_wait_first() -> None:
    flow = Flow()
    ran: list[str] = []

    async def deliver() -> None:
        ran.append("delivered")

    await hand_over(flow, deliver())
    assert ran == ["delivered"]
    assert flow.waited == 0


async def test_a_callback_that_suspends_is_finished_under_wait_first() -> None:
    flow = Flow()
    space: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    ran: list[str] = []

    async def deliver() -> None:
        ran.append("started")
        ran.append(await space)

    handing = asyncio.ensure_future(hand_over(flow, deliver()))
    await asyncio.sleep(0)
    assert ran == ["started"]
    space.set_result("queued")
    await handing
    assert ran == ["started", "queued"]
    assert flow.waited == 1


async def test_a_suspended_callback_is_abandoned_when_the_flow_is_suspended() -> None:
    flow = Flow()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    outcome: list[str] = []

    async def deliver() -> None:
        try:
            await never
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    handing = asyncio.ensure_future(hand_over(flow, deliver()))
    await asyncio.sleep(0)
    flow.suspend_flow.set()
    await handing
    assert outcome == ["cancelled"]


async def test_an_error_of_the_callback_reaches_the_fetcher() -> None:
    flow = Flow()
    later: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fails_at_once() -> None:
        raise ValueError("bad record")

    async def fails_later() -> None:
        await later
        raise ValueError("bad record, later")

    with pytest.raises(ValueError, match=r"^bad record$"):
        await hand_over(flow, fails_at_once())
    handing = asyncio.ensure_future(hand_over(flow, fails_later()))
    await asyncio.sleep(0)
    later.set_result(None)
    with pytest.raises(ValueError, match=r"^bad record, later$"):
        await handing


async def test_the_stage_consumes_with_the_draining_consumer_and_the_quiet_monitor(
    tmp_path: Path,
) -> None:
    write_rules(tmp_path, {"id": "auto-reply", "on": "messages.upsert"})
    engine = StandInEngine()
    settings = ProcessSettings(app_id="test-process", store="memory://", partitions=2)
    built = build_app(settings, RulesWatcher.start(tmp_path, engine), engine)
    built.app.loop = asyncio.get_running_loop()
    assert isinstance(built.app.consumer, DrainingConsumer)
    assert isinstance(built.app.monitor, QuietMonitor)


async def test_a_fetcher_held_back_by_full_stream_buffers_wakes_when_there_is_room(
    tmp_path: Path,
) -> None:
    from faust.types import TP

    write_rules(tmp_path, {"id": "auto-reply", "on": "messages.upsert"})
    engine = StandInEngine()
    settings = ProcessSettings(app_id="test-process", store="memory://", partitions=2)
    built = build_app(settings, RulesWatcher.start(tmp_path, engine), engine)
    built.app.loop = asyncio.get_running_loop()
    consumer = built.app.consumer
    assert isinstance(consumer, DrainingConsumer)
    consumer.resume_flow()
    events = TP("codechat.messages.upsert", 0)
    consumer._active_partitions = {events}
    assert not consumer._held_back()
    consumer.on_buffer_full(events)
    assert consumer._held_back()

    room = consumer._room = asyncio.Event()
    consumer.on_buffer_drop(events)
    assert room.is_set()
    assert not consumer._held_back()
    assert consumer._get_active_partitions() == {events}
