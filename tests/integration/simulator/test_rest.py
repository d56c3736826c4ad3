"""The gateway REST API of the simulator: auth, error bodies, the send-text echo triple."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import websockets

from worker.simulator import Simulator

APIKEY = {"apikey": "sim-apikey"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(sim: Simulator, name: str = "shop-bot") -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.instance(name).token}"}


async def call(
    http: aiohttp.ClientSession,
    sim: Simulator,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    async with http.request(
        method, sim.http_url + path, headers=headers or {}, json=body
    ) as response:
        return response.status, orjson.loads(await response.read())


SEND = {"number": "5511987654321", "textMessage": {"text": "Olá! Funcionamos de 9h às 18h."}}


async def test_instance_create_needs_the_global_apikey(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    body = {"instanceName": "support", "description": "Suporte"}
    assert await call(http, sim, "POST", "/instance/create", {}, body) == (
        403,
        {"status": 403, "error": "Forbidden", "message": ["Missing global api key"]},
    )
    assert (await call(http, sim, "POST", "/instance/create", {"apikey": "nope"}, body))[0] == 403
    status, row = await call(http, sim, "POST", "/instance/create", APIKEY, body)
    assert status == 201
    assert (row["id"], row["name"], row["description"]) == (2, "support", "Suporte")
    assert row["Auth"]["token"] == sim.instance("support").token
    assert await call(http, sim, "POST", "/instance/create", APIKEY, body) == (
        400,
        {"status": 400, "error": "Bad Request", "message": ["Instance already exists"]},
    )
    # The token handed out works on the socket.
    async with websockets.connect(
        sim.subscription_url("support", "messages.upsert", row["Auth"]["token"])
    ) as ws:
        await sim.wait_subscribed("support", "messages.upsert")
        await sim.emit("support", "messages.upsert", {"keyId": "S"})
        assert await ws.recv() == '{"keyId":"S"}'


async def test_fetch_instances_lists_rows_with_tokens(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    assert (await call(http, sim, "GET", "/instance/fetchInstances"))[0] == 403
    status, rows = await call(http, sim, "GET", "/instance/fetchInstances", APIKEY)
    assert status == 200
    assert [(r["name"], r["Auth"]["token"]) for r in rows] == [
        ("shop-bot", sim.instance("shop-bot").token)
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer {other}"},
        {"Authorization": "Bearer {forged}"},
        {"Authorization": "{token}"},
        {"apikey": "wrong"},
    ],
    ids=["none", "garbage", "other instance", "forged", "no Bearer word", "wrong apikey"],
)
async def test_send_text_refuses_bad_auth_with_upstreams_401(
    sim: Simulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    sim.create_instance("other")
    values = {
        "other": sim.instance("other").token,
        "forged": sim.token_for("shop-bot", secret="x"),
        "token": sim.instance("shop-bot").token,
    }
    filled = {k: v.format(**values) for k, v in headers.items()}
    assert await call(http, sim, "POST", "/message/sendText/shop-bot", filled, SEND) == (
        401,
        {"status": 401, "error": "Unauthorized"},
    )
    assert sim.counters().emitted == 0


async def test_expired_bearer_is_refused_when_expiry_is_on(http: aiohttp.ClientSession) -> None:
    async with Simulator(port=0, jwt_expires_in="3600") as sim:
        sim.create_instance("shop-bot")
        old = sim.token_for("shop-bot", issued_at=sim.clock() - 7200)
        headers = {"Authorization": f"Bearer {old}"}
        status, _ = await call(http, sim, "POST", "/message/sendText/shop-bot", headers, SEND)
        assert status == 401


async def test_without_a_global_key_configured_requests_without_one_pass(
    http: aiohttp.ClientSession,
) -> None:
    # Upstream compares the header with the unset variable: undefined === undefined.
    async with Simulator(port=0, apikey=None) as sim:
        sim.create_instance("shop-bot")
        status, _ = await call(http, sim, "POST", "/message/sendText/shop-bot", {}, SEND)
        assert status == 201


async def test_unknown_instance_is_a_400(sim: Simulator, http: aiohttp.ClientSession) -> None:
    assert await call(http, sim, "POST", "/message/sendText/ghost", APIKEY, SEND) == (
        400,
        {
            "status": 400,
            "error": "Bad Request",
            "message": ['The "ghost" instance does not exist or is not connected'],
        },
    )


async def test_send_text_answers_201_and_echoes_one_send_message_and_two_upserts(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with (
        websockets.connect(sim.subscription_url("shop-bot", "send.message")) as sent_ws,
        websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as upsert_ws,
    ):
        await sim.wait_subscribed("shop-bot", ["send.message", "messages.upsert"])
        body = {
            **SEND,
            "options": {
                "delay": 10,
                "messageId": "ZF0123456789ABCDEF0123456789ABCD",
                "externalAttributes": {"zapflow": {"rule": "r", "key": "k"}},
            },
        }
        status, reply = await call(
            http, sim, "POST", "/message/sendText/shop-bot", bearer(sim), body
        )
        assert status == 201
        send_message = orjson.loads(await sent_ws.recv())
        first = orjson.loads(await upsert_ws.recv())
        second = orjson.loads(await upsert_ws.recv())
    assert reply == send_message == first
    assert reply["keyId"] == second["keyId"] == "ZF0123456789ABCDEF0123456789ABCD"
    assert reply["keyFromMe"] is second["keyFromMe"] is True
    assert reply["keyRemoteJid"] == second["keyRemoteJid"] == "5511987654321@s.whatsapp.net"
    assert reply["content"] == {"text": "Olá! Funcionamos de 9h às 18h."}
    assert reply["externalAttributes"] == {"zapflow": {"rule": "r", "key": "k"}}
    assert reply["device"] == "web"
    assert "info" not in reply
    assert second["info"] == {"type": "append"}
    assert "externalAttributes" not in second
    counters = sim.counters("shop-bot")
    assert (counters.emitted, counters.delivered) == (3, 3)


async def test_send_text_without_message_id_uses_a_ulid(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, reply = await call(http, sim, "POST", "/message/sendText/shop-bot", APIKEY, SEND)
    assert status == 201
    assert len(reply["keyId"]) == 26
    assert sim.counters("shop-bot", "messages.upsert").dropped == 2


async def test_send_text_quoting_a_message_sets_context_info(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    quoted = sim.factory("shop-bot").received_text(sim.clock(), "Oi")
    body = {**SEND, "options": {"quotedMessage": quoted}}
    status, reply = await call(http, sim, "POST", "/message/sendText/shop-bot", APIKEY, body)
    assert status == 201
    assert reply["content"]["contextInfo"] == {
        "stanzaId": quoted["keyId"],
        "participant": quoted["keyRemoteJid"],
        "quotedMessage": {"conversation": "Oi"},
    }


@pytest.mark.parametrize(
    ("body", "status", "reply"),
    [
        (
            {"number": "+55 11", "textMessage": {"text": "x"}},
            400,
            {
                "status": 400,
                "error": "Bad Request",
                "message": ['number must match pattern "^\\d+[\\.@\\w-]+"'],
            },
        ),
        (
            {"number": "5511987654321"},
            400,
            {"status": 400, "error": "Bad Request", "message": ["textMessage.text is required"]},
        ),
        (
            {"number": "5511000000000", "textMessage": {"text": "x"}},
            400,
            {
                "status": 400,
                "error": "Bad Request",
                "message": [{"exists": False, "jid": "5511000000000@s.whatsapp.net"}],
            },
        ),
        # Upstream dereferences a missing group and fails with a bare 500.
        ({"number": "123456789012345678@g.us", "textMessage": {"text": "x"}}, 500, {}),
    ],
    ids=["bad number", "no text", "not on whatsapp", "unknown group"],
)
async def test_send_text_failures_have_upstreams_bodies(
    sim: Simulator, http: aiohttp.ClientSession, body: Any, status: int, reply: Any
) -> None:
    sim.unknown_numbers.add("5511000000000")
    assert await call(http, sim, "POST", "/message/sendText/shop-bot", APIKEY, body) == (
        status,
        reply,
    )
    assert sim.counters().emitted == 0


async def test_group_send_goes_to_a_known_group(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    group = sim.factory("shop-bot").groups[0].jid
    body = {"number": group, "textMessage": {"text": "Bom dia, grupo"}}
    status, reply = await call(http, sim, "POST", "/message/sendText/shop-bot", APIKEY, body)
    assert status == 201
    assert (reply["keyRemoteJid"], reply["isGroup"]) == (group, True)


async def test_update_participant_changes_the_group_and_notifies_it(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    group = sim.factory("shop-bot").groups[0].jid
    path = f"/group/updateParticipant/shop-bot?groupJid={group}"
    body = {"action": "add", "participants": ["5511912345678"]}
    _, before = await call(
        http, sim, "GET", f"/group/participants/shop-bot?groupJid={group}", bearer(sim)
    )
    async with websockets.connect(
        sim.subscription_url("shop-bot", "group-participants.update")
    ) as ws:
        await sim.wait_subscribed("shop-bot", "group-participants.update")
        status, reply = await call(http, sim, "PUT", path, bearer(sim), body)
        event = orjson.loads(await ws.recv())
    assert status == 201
    assert reply == {
        "updateParticipants": [
            {
                "status": "200",
                "jid": "5511912345678@s.whatsapp.net",
                "content": {"tag": "participant", "attrs": {"jid": "5511912345678@s.whatsapp.net"}},
            }
        ]
    }
    assert event["id"] == group
    assert event["action"] == "add"
    assert event["participants"][0]["phoneNumber"] == "5511912345678@s.whatsapp.net"
    assert event["participants"][0]["id"].endswith("@lid")
    # Adding again: WhatsApp answers 409 for that participant.
    status, reply = await call(http, sim, "PUT", path, bearer(sim), body)
    assert (status, reply["updateParticipants"][0]["status"]) == (201, "409")
    status, info = await call(
        http, sim, "GET", f"/group/findGroupInfos/shop-bot?groupJid={group}", bearer(sim)
    )
    assert status == 200
    assert info["id"] == group
    assert info["size"] == len(info["participants"]) == len(before["participants"]) + 1
    status, listed = await call(
        http, sim, "GET", f"/group/participants/shop-bot?groupJid={group}", bearer(sim)
    )
    assert status == 200
    assert listed == {"participants": info["participants"]}


@pytest.mark.parametrize(
    ("query", "body", "message"),
    [
        ("groupJid=nope", {"action": "add", "participants": ["5511912345678"]},
         'groupJid must match pattern "^[\\d-]+@g.us$"'),
        ("", {"action": "add", "participants": ["5511912345678"]},
         'groupJid must match pattern "^[\\d-]+@g.us$"'),
        ("groupJid={group}", {"action": "kick", "participants": ["5511912345678"]},
         "action must be one of add, remove, promote, demote"),
        ("groupJid={group}", {"action": "add", "participants": ["123"]},
         "participants must be a list of numbers of at least 10 characters"),
    ],
    ids=["bad group jid", "no group jid", "bad action", "short number"],
)  # fmt: skip
async def test_update_participant_validation(
    sim: Simulator, http: aiohttp.ClientSession, query: str, body: Any, message: str
) -> None:
    group = sim.factory("shop-bot").groups[0].jid
    path = f"/group/updateParticipant/shop-bot?{query.format(group=group)}"
    assert await call(http, sim, "PUT", path, APIKEY, body) == (
        400,
        {"status": 400, "error": "Bad Request", "message": [message]},
    )


async def test_every_rest_call_is_recorded(sim: Simulator, http: aiohttp.ClientSession) -> None:
    before = sim.clock()
    await call(http, sim, "POST", "/message/sendText/shop-bot", bearer(sim), SEND)
    await call(http, sim, "POST", "/message/sendText/shop-bot", {}, SEND)
    await call(http, sim, "GET", "/chat/whatever/shop-bot?x=1", APIKEY)
    calls = sim.rest_calls
    assert [(c.method, c.path, c.instance, c.status) for c in calls] == [
        ("POST", "/message/sendText/shop-bot", "shop-bot", 201),
        ("POST", "/message/sendText/shop-bot", "shop-bot", 401),
        ("GET", "/chat/whatever/shop-bot", None, 404),
    ]
    assert calls[0].body == SEND
    assert calls[2].query == {"x": "1"}
    assert calls[0].headers["Authorization"] == "***"
    assert before <= calls[0].at <= sim.clock()


async def test_refresh_token_needs_no_auth_and_the_old_token_keeps_working(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    old = sim.instance("shop-bot").token
    status, auth = await call(
        http, sim, "PUT", "/instance/refreshToken/shop-bot", {}, {"oldToken": old}
    )
    assert status == 201
    assert auth["token"] == sim.instance("shop-bot").token != old
    assert (auth["id"], auth["instanceId"]) == (1, 1)
    # Upstream never compares tokenId outside refreshToken: both tokens work.
    for token in (old, auth["token"]):
        headers = {"Authorization": f"Bearer {token}"}
        assert (await call(http, sim, "POST", "/message/sendText/shop-bot", headers, SEND))[
            0
        ] == 201
        async with websockets.connect(sim.subscription_url("shop-bot", "call.upsert", token)):
            await sim.wait_subscribed("shop-bot", "call.upsert")
    # The old token can no longer be refreshed: it is not the current one.
    assert await call(
        http, sim, "PUT", "/instance/refreshToken/shop-bot", {}, {"oldToken": old}
    ) == (401, {"status": 401, "error": "Unauthorized"})
