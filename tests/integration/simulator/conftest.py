"""A real simulator on 127.0.0.1, a fresh one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from worker.simulator import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        secret="sim-secret", apikey="sim-apikey", host="127.0.0.1", port=0, seed=1
    )
    await simulator.start()
    simulator.create_instance("shop-bot")
    try:
        yield simulator
    finally:
        await simulator.stop()
