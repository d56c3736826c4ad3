"""Gateway actions reach the CodeChat simulator's REST API once, tagged and authenticated."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import wait_for
from tests.integration.actions.conftest import ExecutorHarness, action
from worker.actions.ids import message_id_for
from worker.simulator import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        secret="sim-secret", apikey="sim-apikey", host="127.0.0.1", port=0, seed=1
    )
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_gateway_actions_reach_the_simulator_once(
    executor_harness: ExecutorHarness, sim: Simulator
) -> None:
    h = executor_harness
    await h.create_topics()
    shop = sim.create_instance("shop-bot")
    sim.create_instance("ops-bot")
    group = sim.factory("shop-bot").groups[0].jid
    sim.unknown_numbers.add("5511000000000")
    h.start_executor(
        {
            "gateway": {
                "url": sim.http_url,
                "auth": "bearer",
                "apikey": "${env:GW_APIKEY}",
                "tokens": {"shop-bot": "${env:SHOP_BOT_TOKEN}"},
            },
        },
        env={"GW_APIKEY": "sim-apikey", "SHOP_BOT_TOKEN": shop.token},
    )
    quote = {
        "keyId": "3EB0C767D0D1A8B3F1D2",
        "keyRemoteJid": "5511987654321@s.whatsapp.net",
        "keyFromMe": False,
    }
    reply = action(
        "whatsapp.send_text",
        {
            "instance": "shop-bot",
            "to": "5511987654321@s.whatsapp.net",
            "text": "Olá!",
            "quote": quote,
            "delay_ms": None,
        },
        rule_id="after-hours-reply",
    )
    welcome = action(
        "whatsapp.group_participants",
        {
            "instance": "shop-bot",
            "group": group,
            "action": "add",
            "participants": ["5511955554444"],
        },
    )
    alert = action(
        "notify",
        {
            "channel": {
                "name": "oncall",
                "type": "whatsapp",
                "instance": "ops-bot",
                "to": "5511912345678",
            },
            "text": "shop-bot caiu",
            "fields": {},
        },
    )
    unknown = action("whatsapp.send_text", {"to": "5511000000000", "text": "?"})
    await h.send(reply, welcome, alert, unknown, reply)

    def calls(path: str) -> list:
        return [c for c in sim.rest_calls if c.path.startswith(path)]

    await wait_for(
        lambda: len(calls("/message/sendText/")) == 3 and len(calls("/group/")) == 1,
        timeout=60,
        message="three sends and one participant update at the simulator",
    )
    (dead,) = await h.read_topic(h.dlq, 1)
    assert dead["record"]["idempotency_key"] == unknown["idempotency_key"]
    assert dead["retriable"] is False
    assert "HTTP 400" in dead["error"]

    sends = {c.body["textMessage"]["text"]: c for c in calls("/message/sendText/")}
    assert sends["Olá!"].status == 201
    assert sends["Olá!"].instance == "shop-bot"
    assert sends["Olá!"].body["options"] == {
        "messageId": message_id_for(reply["idempotency_key"]),
        "externalAttributes": {
            "zapflow": {"rule": "after-hours-reply", "key": reply["idempotency_key"]}
        },
        "quotedMessage": quote,
    }
    assert sends["Olá!"].response["keyId"] == message_id_for(reply["idempotency_key"])
    # shop-bot has a token configured (Bearer); ops-bot has none and falls back to the apikey.
    assert "authorization" in {k.lower() for k in sends["Olá!"].headers}
    assert "apikey" in {k.lower() for k in sends["shop-bot caiu"].headers}
    assert sends["shop-bot caiu"].instance == "ops-bot"
    assert sends["shop-bot caiu"].status == 201
    (update,) = calls("/group/")
    assert (update.method, update.status, update.query) == ("PUT", 201, {"groupJid": group})
    assert update.body == {"action": "add", "participants": ["5511955554444"]}
