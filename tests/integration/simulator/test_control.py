"""The /_sim/ control API over HTTP, driving the same simulator a test holds in-process."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.helpers import wait_for
from tests.integration.simulator.wire import raw_handshake
from worker.simulator import Simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def control(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    data = body if isinstance(body, str) else None
    async with http.request(
        method,
        f"{sim.http_url}/_sim{path}",
        json=None if data is not None else body,
        data=data,
    ) as response:
        raw = await response.read()
        kind = response.content_type
        return response.status, orjson.loads(raw) if kind == "application/json" else raw.decode()


async def test_instances_emit_counters_and_sockets(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, created = await control(http, sim, "POST", "/instances", {"name": "support"})
    assert status == 201
    assert created["token"] == sim.instance("support").token
    _, listed = await control(http, sim, "GET", "/instances")
    assert [i["name"] for i in listed] == ["shop-bot", "support"]
    async with websockets.connect(created["urls"]["messages.upsert"]) as ws:
        await sim.wait_subscribed("support", "messages.upsert")
        body = {"instance": "support", "event": "messages.upsert", "payload": {"keyId": "H"}}
        assert await control(http, sim, "POST", "/emit", body) == (200, {"delivered": True})
        assert await ws.recv() == '{"keyId":"H"}'
        generated = {"instance": "support", "event": "messages.upsert"}
        assert await control(http, sim, "POST", "/emit", generated) == (200, {"delivered": True})
        assert orjson.loads(await ws.recv())["messageType"]
        status, info = await control(
            http, sim, "GET", "/sockets?instance=support&event=messages.upsert"
        )
        assert info["open"] == 1
    await control(http, sim, "POST", "/emit", {"instance": "support", "event": "call.upsert"})
    status, counters = await control(http, sim, "GET", "/counters?instance=support")
    assert status == 200
    assert (counters["emitted"], counters["delivered"], counters["dropped"]) == (3, 2, 1)
    assert counters["keys"] == [
        {"instance": "support", "event": "call.upsert", "emitted": 1, "delivered": 0, "dropped": 1},
        {
            "instance": "support",
            "event": "messages.upsert",
            "emitted": 2,
            "delivered": 2,
            "dropped": 0,
        },
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"event": "messages.upsert"}, "field 'instance' is missing or of the wrong type"),
        ({"instance": "ghost", "event": "messages.upsert"}, "unknown instance 'ghost' (instances: shop-bot)"),
        ({"instance": "shop-bot", "event": "contacts.update"},
         "the gateway never sends 'contacts.update' over the socket (it arrives as contacts.upsert); "
         "sent events: qrcode.updated, connection.update, messages.upsert, messages.update, "
         "send.message, contacts.upsert, presence.update, chats.update, chats.upsert, "
         "groups.upsert, groups.update, group-participants.update, call.upsert"),
    ],
)  # fmt: skip
async def test_bad_emit_requests_are_400_with_the_reason(
    sim: Simulator, http: aiohttp.ClientSession, body: Any, error: str
) -> None:
    assert await control(http, sim, "POST", "/emit", body) == (400, {"error": error})


async def test_calls_are_listed_and_cleared(sim: Simulator, http: aiohttp.ClientSession) -> None:
    headers = {"apikey": "sim-apikey"}
    body = {"number": "5511987654321", "textMessage": {"text": "oi"}}
    async with http.post(f"{sim.http_url}/message/sendText/shop-bot", json=body, headers=headers):
        pass
    status, calls = await control(http, sim, "GET", "/calls")
    assert status == 200
    assert [(c["method"], c["path"], c["status"], c["body"]) for c in calls] == [
        ("POST", "/message/sendText/shop-bot", 201, body)
    ]
    await control(http, sim, "DELETE", "/calls")
    assert sim.rest_calls == []


async def test_fault_endpoints(sim: Simulator, http: aiohttp.ClientSession) -> None:
    url = sim.subscription_url("shop-bot", "messages.upsert")
    async with websockets.connect(url, ping_interval=None, max_size=None) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        raw = {"instance": "shop-bot", "event": "messages.upsert"}
        await control(http, sim, "POST", "/faults/send-raw", {**raw, "text": "nope"})
        encoded = base64.b64encode(b"\x01\x02").decode()
        await control(http, sim, "POST", "/faults/send-raw", {**raw, "base64": encoded})
        await control(http, sim, "POST", "/faults/send-large", {**raw, "size": 100_000})
        assert await ws.recv() == "nope"
        assert await ws.recv() == b"\x01\x02"
        assert len((await ws.recv()).encode()) == 100_000
        await control(http, sim, "POST", "/faults/pings", {"answer": False})
        assert sim.faults.answer_pings is False
        await control(http, sim, "POST", "/faults/pings", {"answer": True})
        status, closed = await control(http, sim, "POST", "/faults/close-sockets", {})
        assert (status, closed) == (200, {"closed": 1})
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    await control(http, sim, "POST", "/faults/refuse-handshakes", {"count": 1})
    target = url.split(str(sim.port), 1)[1]
    assert await raw_handshake(sim.port, target) == b"HTTP/1.1 401 Unauthorized\r\n\r\n"
    status, _ = await control(http, sim, "POST", "/faults/restart", {"downtime": 0.2})
    assert status == 202
    await wait_for(lambda: not sim.running, timeout=5, message="the restart to begin")
    await wait_for(lambda: sim.running, timeout=5, message="the restart to end")
    async with websockets.connect(url):
        await sim.wait_subscribed("shop-bot", "messages.upsert")


async def test_profile_runs_in_the_background_and_reports(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    body = {"instances": ["shop-bot"], "rate": 1000, "count": 200}
    status, started = await control(http, sim, "POST", "/profile", body)
    assert status == 202

    async def finished() -> bool:
        _, state = await control(http, sim, "GET", "/profile")
        return bool(state["finished"])

    await wait_for(finished, timeout=10, message="the profile to finish")
    _, state = await control(http, sim, "GET", "/profile")
    assert state["finished"] == [
        {
            "id": started["id"],
            "kind": "profile",
            "status": "done",
            "emitted": 200,
            "delivered": 0,
            "dropped": 200,
        }
    ]
    status, error = await control(http, sim, "POST", "/profile", {"rate": -1, "count": 1})
    assert (status, error) == (400, {"error": "profile: rate must be above 0 events/s, got -1"})


async def test_profile_can_be_stopped(sim: Simulator, http: aiohttp.ClientSession) -> None:
    await control(http, sim, "POST", "/profile", {"rate": 100})
    status, stopping = await control(http, sim, "DELETE", "/profile")
    assert (status, stopping) == (200, {"stopping": 1})
    await asyncio.sleep(0)
    _, state = await control(http, sim, "GET", "/profile")
    assert state["running"] == []


async def test_scenario_posted_as_yaml_runs(sim: Simulator, http: aiohttp.ClientSession) -> None:
    scenario = """
steps:
  - emit: {instance: shop-bot, event: connection.update, set: {state: close, statusReason: 428}}
  - after: 0.05
    emit: {instance: shop-bot, event: messages.upsert, count: 3, every: 0.01}
"""
    async with (
        websockets.connect(sim.subscription_url("shop-bot", "connection.update")) as conn,
        websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as msgs,
    ):
        await sim.wait_subscribed("shop-bot", ["connection.update", "messages.upsert"])
        status, started = await control(http, sim, "POST", "/scenario", scenario)
        assert (status, started["steps"]) == (202, 2)
        assert orjson.loads(await conn.recv()) == {
            "instance": "shop-bot",
            "state": "close",
            "statusReason": 428,
        }
        assert len([orjson.loads(await msgs.recv()) for _ in range(3)]) == 3
    status, error = await control(http, sim, "POST", "/scenario", "steps:\n  - emti: {}\n")
    assert status == 400
    assert error["problems"] == [
        "request body:2: step 1: unknown key 'emti' (did you mean 'emit'?); "
        "expected one of: at, after, emit, fault, profile",
        "request body:2: step 1: a step needs exactly one of: emit, fault, profile",
    ]


async def test_index_lists_the_endpoints(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, text = await control(http, sim, "GET", "/")
    assert status == 200
    assert "POST   /_sim/faults/restart" in text
