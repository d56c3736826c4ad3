"""Scenarios played against a live simulator and a real client."""

from __future__ import annotations

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from worker.simulator import Simulator
from worker.simulator.scenario import parse_scenario, run_scenario

SCENARIO = """
instances: [shop-bot, newcomer]
steps:
  - emit: {instance: shop-bot, event: messages.upsert, payload: {keyId: first}}
  - emit: {instance: shop-bot, event: messages.upsert, set: {keyId: second, pushName: Ana}}
  - fault: {send_raw: {instance: shop-bot, event: messages.upsert, base64: AAE=}}
  - fault: {send_large: {instance: shop-bot, event: messages.upsert, size: 5000}}
  - profile: {instances: [newcomer], count: 7}
  - fault: {answer_pings: false}
  - fault: {refuse_handshakes: 1}
  - fault: {close_sockets: {instance: shop-bot}}
"""


async def test_a_scenario_plays_events_and_faults_in_order(sim: Simulator) -> None:
    async with websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        await run_scenario(sim, parse_scenario(SCENARIO))
        assert await ws.recv() == '{"keyId":"first"}'
        second = await ws.recv()
        assert '"keyId":"second"' in second and '"pushName":"Ana"' in second
        assert await ws.recv() == b"\x00\x01"
        assert len(await ws.recv()) == 5000
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert sim.counters("newcomer").emitted == 7
    assert sim.faults.answer_pings is False
    with pytest.raises(InvalidStatus):
        await websockets.connect(sim.subscription_url("shop-bot", "messages.upsert"))


async def test_restart_step_brings_the_server_back(sim: Simulator) -> None:
    await run_scenario(sim, parse_scenario("steps:\n  - fault: {restart: {downtime: 0.1}}\n"))
    assert sim.running
    async with websockets.connect(sim.subscription_url("shop-bot", "call.upsert")):
        await sim.wait_subscribed("shop-bot", "call.upsert")
