"""worker.streaming: the quiet monitor, the worker settings, and Faust's record hand-over
without a task per record, same outcome otherwise."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from mode import Service

from worker.streaming import QuietMonitor, hand_over


class Spied(Service):
    """A mode service that counts its ``wait_first`` calls (Faust's hand-over)."""

    waits = 0

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        self.waits += 1
        return await super().wait_first(*coros, timeout=timeout)


async def test_a_callback_that_never_suspends_runs_in_the_callers_task() -> None:
    service, suspend = Spied(), asyncio.Event()
    tasks: list[asyncio.Task[Any] | None] = []

    async def deliver() -> None:
        tasks.append(asyncio.current_task())

    await hand_over(service, suspend, deliver())
    assert tasks == [asyncio.current_task()]
    assert service.waits == 0


async def test_a_callback_that_suspends_is_finished_as_faust_would() -> None:
    service, suspend = Spied(), asyncio.Event()
    room: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    got: list[str] = []

    async def deliver() -> str:
        got.append(await room)
        return "delivered"

    handing = asyncio.ensure_future(hand_over(service, suspend, deliver()))
    await asyncio.sleep(0)
    assert not handing.done()
    room.set_result("record")
    await asyncio.wait_for(handing, 5.0)
    assert got == ["record"]
    assert service.waits == 1


async def test_a_suspended_callback_is_abandoned_when_the_flow_is_suspended() -> None:
    service, suspend = Spied(), asyncio.Event()
    outcome: list[str] = []

    async def deliver() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # a full buffer that stays full
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    handing = asyncio.ensure_future(hand_over(service, suspend, deliver()))
    await asyncio.sleep(0)
    suspend.set()
    await asyncio.wait_for(handing, 5.0)
    assert outcome == ["cancelled"]


async def test_while_the_flow_is_suspended_every_record_goes_through_wait_first() -> None:
    service, suspend = Spied(), asyncio.Event()
    suspend.set()

    async def deliver() -> None:
        return None

    await hand_over(service, suspend, deliver())
    assert service.waits == 1


async def test_an_error_in_the_callback_reaches_the_fetch_loop() -> None:
    service, suspend = Spied(), asyncio.Event()

    async def deliver() -> None:
        raise ValueError("undecodable record")

    with pytest.raises(ValueError, match="undecodable"):
        await hand_over(service, suspend, deliver())


def test_workers_start_without_a_spinner_with_a_short_gil_switch_and_a_frozen_heap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    from types import SimpleNamespace

    from worker.streaming import SWITCH_INTERVAL_S, prepare_worker

    intervals: list[float] = []
    monkeypatch.setattr(sys, "setswitchinterval", intervals.append)
    worker = SimpleNamespace(spinner=object())
    try:
        prepare_worker(worker)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert worker.spinner is None
    assert intervals == [SWITCH_INTERVAL_S]
    assert SWITCH_INTERVAL_S < 0.005  # below Python's default


def test_the_quiet_monitor_keeps_no_per_event_statistics() -> None:
    monitor = QuietMonitor()
    monitor.on_message_in("tp", 1, object())
    monitor.on_table_set(object(), "k", "v")
    assert monitor.messages_received_total == 0
    assert dict(monitor.tp_end_offsets) == {}
