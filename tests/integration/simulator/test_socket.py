"""Socket semantics of the simulator against a real websockets client (upstream §1)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import orjson
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.helpers import wait_for
from tests.integration.simulator.wire import raw_handshake, raw_subscriber
from worker.simulator import Simulator

RAW_401 = b"HTTP/1.1 401 Unauthorized\r\n\r\n"


def _target(path: str, **query: str) -> str:
    return f"{path}?{urlencode(query)}" if query else path


@pytest.mark.parametrize(
    ("case", "path", "query"),
    [
        ("wrong path", "/ws/event", {"event": "messages.upsert", "token": "{token}"}),
        ("trailing slash", "/ws/events/", {"event": "messages.upsert", "token": "{token}"}),
        ("root path", "/", {"event": "messages.upsert", "token": "{token}"}),
        ("escaped path", "/ws/%65vents", {"event": "messages.upsert", "token": "{token}"}),
        ("double slash", "/ws//events", {"event": "messages.upsert", "token": "{token}"}),
        (
            "rest path",
            "/message/sendText/shop-bot",
            {"event": "messages.upsert", "token": "{token}"},
        ),
        ("missing event", "/ws/events", {"token": "{token}"}),
        ("empty event", "/ws/events", {"event": "", "token": "{token}"}),
        ("missing token", "/ws/events", {"event": "messages.upsert"}),
        ("empty token", "/ws/events", {"event": "messages.upsert", "token": ""}),
        ("not a jwt", "/ws/events", {"event": "messages.upsert", "token": "not-a-jwt"}),
        ("global apikey", "/ws/events", {"event": "messages.upsert", "token": "sim-apikey"}),
        ("bad signature", "/ws/events", {"event": "messages.upsert", "token": "{forged}"}),
        ("unknown event", "/ws/events", {"event": "messages.delete", "token": "{token}"}),
        ("event name case", "/ws/events", {"event": "MESSAGES_UPSERT", "token": "{token}"}),
    ],
)
async def test_handshake_refusals_are_a_bare_401_without_headers_or_body(
    sim: Simulator, case: str, path: str, query: dict[str, str]
) -> None:
    values = {
        "token": sim.instance("shop-bot").token,
        "forged": sim.token_for("shop-bot", secret="another-secret"),
    }
    filled = {k: v.format(**values) for k, v in query.items()}
    answer = await raw_handshake(sim.port, _target(path, **filled))
    assert answer == RAW_401, case


async def test_expired_token_is_refused_when_expiry_is_on() -> None:
    # Any AUTHENTICATION_JWT_EXPIRES_IN other than "0" means 3600 s upstream.
    async with Simulator(port=0, jwt_expires_in="86400") as sim:
        sim.create_instance("shop-bot")
        old = sim.token_for("shop-bot", issued_at=sim.clock() - 3601)
        fresh = sim.token_for("shop-bot", issued_at=sim.clock() - 3500)
        refused = await raw_handshake(
            sim.port, _target("/ws/events", event="call.upsert", token=old)
        )
        assert refused == RAW_401
        async with websockets.connect(sim.subscription_url("shop-bot", "call.upsert", fresh)):
            await sim.wait_subscribed("shop-bot", "call.upsert")


async def test_tokens_with_exp_equal_to_iat_are_accepted_when_expiry_is_off(sim: Simulator) -> None:
    # Upstream's default "0" signs exp == iat and verifies with ignoreExpiration.
    old = sim.token_for("shop-bot", issued_at=sim.clock() - 30 * 86400)
    async with websockets.connect(sim.subscription_url("shop-bot", "messages.upsert", old)) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        await sim.emit("shop-bot", "messages.upsert", {"keyId": "A"})
        assert await ws.recv() == '{"keyId":"A"}'


async def test_websockets_client_sees_status_401(sim: Simulator) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(sim.ws_url + "/?event=messages.upsert&token=x.y.z"):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b""


async def test_token_of_unknown_instance_is_accepted_but_never_receives(sim: Simulator) -> None:
    ghost = sim.token_for("ghost")
    async with websockets.connect(sim.subscription_url("ghost", "messages.upsert", ghost)):
        await sim.wait_subscribed("ghost", "messages.upsert")
        assert sim.sockets("ghost", "messages.upsert").open == 1


@pytest.mark.parametrize(
    "event", ["contacts.update", "messages.set", "labels.edit", "status.instance"]
)
async def test_accepted_but_unsent_events_subscribe_fine(sim: Simulator, event: str) -> None:
    async with websockets.connect(sim.subscription_url("shop-bot", event)):
        await sim.wait_subscribed("shop-bot", event)
    with pytest.raises(ValueError, match="never sends"):
        await sim.emit("shop-bot", event)


async def test_frames_are_the_raw_payload_json(sim: Simulator) -> None:
    payload = {"instance": "shop-bot", "state": "close", "statusReason": 428, "nome": "João"}
    async with websockets.connect(sim.subscription_url("shop-bot", "connection.update")) as ws:
        await sim.wait_subscribed("shop-bot", "connection.update")
        assert await sim.emit("shop-bot", "connection.update", payload) is True
        frame = await ws.recv()
    assert isinstance(frame, str)
    assert frame == orjson.dumps(payload).decode()


async def test_newest_subscriber_wins_and_the_old_socket_starves_silently(sim: Simulator) -> None:
    url = sim.subscription_url("shop-bot", "messages.upsert")
    async with websockets.connect(url) as old:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        old_id = sim.sockets("shop-bot", "messages.upsert").live_id
        async with websockets.connect(url) as new:
            await wait_for(
                lambda: sim.sockets("shop-bot", "messages.upsert").live_id not in (None, old_id),
                timeout=5,
                message="the new socket to become live",
            )
            info = sim.sockets("shop-bot", "messages.upsert")
            assert info.open == 2
            for n in range(3):
                assert await sim.emit("shop-bot", "messages.upsert", {"keyId": f"K{n}"})
            assert [orjson.loads(await new.recv())["keyId"] for _ in range(3)] == ["K0", "K1", "K2"]
            # The pong comes after anything sent before it, so once it is back the old
            # socket has everything it will ever get: nothing, and it is still open.
            await asyncio.wait_for(await old.ping(), 5)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(old.recv(), 0.05)
            assert old.state is websockets.State.OPEN
        counters = sim.counters("shop-bot", "messages.upsert")
        assert (counters.emitted, counters.delivered, counters.dropped) == (3, 3, 0)


async def test_events_without_a_subscriber_are_dropped_and_counted(sim: Simulator) -> None:
    assert await sim.emit("shop-bot", "messages.upsert") is False
    async with websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        assert await sim.emit("shop-bot", "messages.upsert") is True
        await ws.recv()
    await wait_for(
        lambda: sim.sockets("shop-bot", "messages.upsert").open == 0,
        timeout=5,
        message="the closed socket to be noticed",
    )
    # The closed socket stays in the hub (upstream never removes it); sends to it vanish.
    assert await sim.emit("shop-bot", "messages.upsert") is False
    assert await sim.emit("shop-bot", "presence.update") is False
    counters = sim.counters("shop-bot", "messages.upsert")
    assert (counters.emitted, counters.delivered, counters.dropped) == (3, 1, 2)
    assert sim.counters().dropped == 3
    assert sim.counters(event="presence.update").emitted == 1


async def test_pings_are_answered_and_client_frames_ignored(sim: Simulator) -> None:
    async with websockets.connect(
        sim.subscription_url("shop-bot", "messages.update"), ping_interval=None
    ) as ws:
        await sim.wait_subscribed("shop-bot", "messages.update")
        await ws.send('{"hello": "server"}')
        await ws.send(b"\x00\x01binary")
        await ws.send("not json at all")
        latency = await asyncio.wait_for(await ws.ping(), 5)
        assert latency >= 0
        await sim.emit("shop-bot", "messages.update", {"id": "X"})
        assert await ws.recv() == '{"id":"X"}'
        assert ws.state is websockets.State.OPEN


async def test_generated_events_arrive_for_every_sent_event(sim: Simulator) -> None:
    from worker.events import SENT_EVENTS

    async def connect(event: str) -> websockets.ClientConnection:
        return await websockets.connect(sim.subscription_url("shop-bot", event))

    sockets = dict(zip(SENT_EVENTS, await asyncio.gather(*map(connect, SENT_EVENTS)), strict=True))
    await sim.wait_subscribed("shop-bot", SENT_EVENTS)
    try:
        for event, ws in sockets.items():
            assert await sim.emit("shop-bot", event) is True
            payload = orjson.loads(await ws.recv())
            assert payload, event
    finally:
        for ws in sockets.values():
            await ws.close()


async def test_dot_segments_resolve_as_in_a_browser_url(sim: Simulator) -> None:
    # Upstream reads new URL(req.url).pathname, which resolves "/ws/./events".
    token = sim.instance("shop-bot").token
    target = _target("/ws/./events", event="chats.update", token=token)
    _, writer = await raw_subscriber(sim.port, target)  # asserts the 101
    try:
        await sim.wait_subscribed("shop-bot", "chats.update")
    finally:
        writer.close()
