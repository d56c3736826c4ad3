"""Every fault the simulator can inject, seen from a real websockets client."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers import wait_for
from tests.integration.simulator.wire import raw_handshake, raw_subscriber
from worker.simulator import Simulator


async def test_close_sockets_closes_every_socket_with_going_away(sim: Simulator) -> None:
    sim.create_instance("support")
    async with (
        websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as a,
        websockets.connect(sim.subscription_url("support", "call.upsert")) as b,
    ):
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        await sim.wait_subscribed("support", "call.upsert")
        assert await sim.close_sockets() == 2
        for ws in (a, b):
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001


async def test_close_sockets_of_one_key_leaves_the_others(sim: Simulator) -> None:
    async with (
        websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as closing,
        websockets.connect(sim.subscription_url("shop-bot", "messages.update")) as staying,
    ):
        await sim.wait_subscribed("shop-bot", ["messages.upsert", "messages.update"])
        assert await sim.close_sockets("shop-bot", "messages.upsert") == 1
        with pytest.raises(ConnectionClosed):
            await closing.recv()
        assert await sim.emit("shop-bot", "messages.update", {"id": "still"}) is True
        assert await staying.recv() == '{"id":"still"}'


async def test_refused_handshakes_are_401_until_the_count_is_used_up(sim: Simulator) -> None:
    url = sim.subscription_url("shop-bot", "messages.upsert")
    target = url.split(str(sim.port), 1)[1]
    sim.refuse_handshakes(2)
    assert await raw_handshake(sim.port, target) == b"HTTP/1.1 401 Unauthorized\r\n\r\n"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 401
    async with websockets.connect(url):
        await sim.wait_subscribed("shop-bot", "messages.upsert")


async def test_send_raw_text_that_is_not_json_and_binary_frames(sim: Simulator) -> None:
    async with websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        assert await sim.send_raw("shop-bot", "messages.upsert", "{not json") is True
        assert await sim.send_raw("shop-bot", "messages.upsert", b"\x00\xffbinary") is True
        assert await ws.recv() == "{not json"
        assert await ws.recv() == b"\x00\xffbinary"
    assert sim.counters("shop-bot", "messages.upsert").delivered == 2


async def test_send_large_sends_valid_json_of_exactly_the_size(sim: Simulator) -> None:
    async with websockets.connect(
        sim.subscription_url("shop-bot", "messages.upsert"), max_size=None
    ) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        assert await sim.send_large("shop-bot", "messages.upsert", 3_000_000) is True
        frame = await ws.recv()
    assert isinstance(frame, str)
    assert len(frame.encode()) == 3_000_000
    assert orjson.loads(frame)["messageType"]


async def test_frame_over_the_client_limit_makes_the_client_close_1009(sim: Simulator) -> None:
    async with websockets.connect(
        sim.subscription_url("shop-bot", "messages.upsert"), max_size=1024
    ) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        await sim.send_large("shop-bot", "messages.upsert", 2048)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.sent is not None
    assert closed.value.sent.code == 1009


async def test_pings_go_unanswered_while_the_fault_is_on(sim: Simulator) -> None:
    async with websockets.connect(
        sim.subscription_url("shop-bot", "messages.upsert"), ping_interval=None
    ) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        sim.answer_pings(False)
        unanswered = await ws.ping()
        # A pong would come back within milliseconds on loopback; none must come.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(unanswered), 0.3)
        # Events still flow: only the pongs are missing.
        await sim.emit("shop-bot", "messages.upsert", {"keyId": "P"})
        assert await ws.recv() == '{"keyId":"P"}'
        sim.answer_pings(True)
        await asyncio.wait_for(await ws.ping(), 5)


async def test_restart_drops_sockets_refuses_meanwhile_and_keeps_tokens(sim: Simulator) -> None:
    url = sim.subscription_url("shop-bot", "messages.upsert")
    async with websockets.connect(url) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        await sim.emit("shop-bot", "messages.upsert", {"keyId": "before"})
        assert await ws.recv() == '{"keyId":"before"}'
        restarting = asyncio.create_task(sim.restart(downtime=0.5))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is None  # no close frame: the process went away
        await wait_for(lambda: not sim.running, timeout=5, message="the server to go down")
        with pytest.raises(OSError):
            await websockets.connect(url, open_timeout=2)
        await restarting
    assert sim.sockets("shop-bot", "messages.upsert").live_id is None
    async with websockets.connect(url) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        await sim.emit("shop-bot", "messages.upsert", {"keyId": "after"})
        assert await ws.recv() == '{"keyId":"after"}'
    counters = sim.counters("shop-bot", "messages.upsert")
    assert (counters.emitted, counters.delivered) == (2, 2)


async def test_close_sockets_drops_a_client_that_never_answers_the_close(sim: Simulator) -> None:
    url = sim.subscription_url("shop-bot", "messages.upsert")
    reader, writer = await raw_subscriber(sim.port, url.split(str(sim.port), 1)[1])
    try:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        assert await asyncio.wait_for(sim.close_sockets(), 5) == 1
        data = await asyncio.wait_for(reader.read(), 5)  # the close frame, then EOF
        assert data[:1] == b"\x88"
        assert sim.sockets("shop-bot", "messages.upsert").open == 0
    finally:
        writer.close()
