"""``zapflow process`` against the real broker: rules in, action records out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.integration.process.harness import (
    Kafka,
    WorkerProcess,
    envelope,
    new_id,
    new_worker,
    own_message_id,
)

pytestmark = pytest.mark.integration

RULES = """\
version: it-1
channels:
  ops: {type: webhook, url: "http://127.0.0.1:9/alerts"}
rules:
  - id: auto-reply
    on: messages.upsert
    when: not msg.is_group
    throttle: {key: [instance, msg.chat], once_within: 1h}
    actions:
      - whatsapp.send_text: {to: "{{ msg.chat }}", text: "Olá! Respondemos em breve."}
  - id: mirror-own
    description: any message of our own number, to prove echoes never reach the rules
    on: [messages.upsert, send.message]
    from_me: allow
    when: msg.from_me
    actions:
      - log: {message: "own message {{ msg.id }}"}
  - id: logged-out
    on: connection.update
    when: conn.state == "close" and conn.status_reason == 401
    actions:
      - notify: {channel: ops, text: "{{ instance }} was logged out"}
  - id: down-for-a-while
    on: connection.update
    when: conn.state == "close" and conn.status_reason != 401
    for: 2s
    resolve_when: conn.state == "open"
    actions:
      - notify: {channel: ops, text: "{{ instance }} is down"}
  - id: group-welcome
    on: group-participants.update
    when: group.action == "add"
    for_each: group.participants
    actions:
      - whatsapp.send_text: {to: "{{ group.id }}", text: "Bem-vindo(a), @{{ item.phone }}!"}
"""

CHAT = "5511987654321@s.whatsapp.net"


def contact_text(
    key_id: str, text: str = "Oi, qual o horário?", chat: str = CHAT
) -> dict[str, Any]:
    return envelope(
        "messages.upsert",
        {
            "keyId": key_id,
            "keyFromMe": False,
            "pushName": "Maria",
            "keyRemoteJid": chat,
            "messageType": "conversation",
            "content": {"text": text},
            "messageTimestamp": 1747321234,
            "instanceId": 1,
            "isGroup": False,
            "info": {"type": "notify"},
        },
    )


def gateway_echoes(action: dict[str, Any]) -> list[dict[str, Any]]:
    """What CodeChat sends back for the text the executor sent for ``action``."""
    key = action["idempotency_key"]
    sent = {
        "keyId": own_message_id(key),
        "keyFromMe": True,
        "keyRemoteJid": CHAT,
        "messageType": "extendedTextMessage",
        "content": {"text": action["params"]["text"]},
        "messageTimestamp": 1747321236,
        "instanceId": 1,
        "device": "web",
        "isGroup": False,
        "externalAttributes": {"zapflow": {"rule": action["rule_id"], "key": key}},
    }
    append = {k: v for k, v in sent.items() if k != "externalAttributes"}
    append["info"] = {"type": "append"}
    return [
        envelope("send.message", sent),
        envelope("messages.upsert", sent),
        envelope("messages.upsert", append),
    ]


def person_send(key_id: str) -> list[dict[str, Any]]:
    """A text typed by a person on the instance's phone: from me, but not our id."""
    data = {
        "keyId": key_id,
        "keyFromMe": True,
        "keyRemoteJid": CHAT,
        "messageType": "conversation",
        "content": {"text": "já te respondo"},
        "messageTimestamp": 1747321240,
        "instanceId": 1,
        "isGroup": False,
    }
    return [
        envelope("send.message", data),
        envelope("messages.upsert", data | {"info": {"type": "notify"}}),
    ]


@pytest.fixture(scope="module")
def worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    root = tmp_path_factory.mktemp("process")
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    process = new_worker(kafka_bootstrap, root, prefix, RULES)
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def test_contact_text_gets_one_reply_and_our_echoes_none(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    async with Kafka(kafka_bootstrap, worker.prefix) as kafka:
        await kafka.produce(contact_text("3A6B1C2D3E4F5A6B7C8D"))
        [reply] = await kafka.wait_for(lambda a: len(a) >= 1)
        assert (reply["rule_id"], reply["kind"], reply["instance"]) == (
            "auto-reply",
            "whatsapp.send_text",
            "shop-bot",
        )
        assert reply["params"]["to"] == CHAT
        assert reply["bundle_version"].startswith("it-1@")

        # The three echoes, then a person's own send (its messages.upsert delivered twice),
        # then another one as a marker, all on the same chat and so in order per topic: the
        # mirror rule fires for each person's message once per event, never for an echo.
        first, second = person_send("3EB0PERSON00000001"), person_send("3EB0PERSON00000002")
        duplicate = first[1] | {"id": new_id()}
        await kafka.produce(*gateway_echoes(reply), *first, duplicate, second[1])

        def mirrored(actions: list[dict[str, Any]]) -> list[str]:
            return sorted(a["params"]["message"] for a in actions if a["rule_id"] == "mirror-own")

        await kafka.wait_for(lambda a: len(mirrored(a)) >= 3)
        assert mirrored(kafka.actions) == [
            "own message 3EB0PERSON00000001",
            "own message 3EB0PERSON00000001",
            "own message 3EB0PERSON00000002",
        ]
        assert len(kafka.by_rule("auto-reply")) == 1
        assert "not evaluated" not in worker.output()


async def test_logged_out_close_alerts_and_a_long_close_alerts_with_no_further_event(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    async with Kafka(kafka_bootstrap, worker.prefix) as kafka:
        await kafka.produce(
            envelope(
                "connection.update", {"instance": "shop-bot", "state": "close", "statusReason": 401}
            ),
            envelope(
                "connection.update",
                {"instance": "other-bot", "state": "close", "statusReason": 428},
                instance="other-bot",
            ),
        )
        await kafka.wait_for(
            lambda a: {"logged-out", "down-for-a-while"} <= {x["rule_id"] for x in a}
        )
        [alert] = kafka.by_rule("logged-out")
        assert (alert["kind"], alert["instance"]) == ("notify", "shop-bot")
        assert alert["params"]["text"] == "shop-bot was logged out"
        assert alert["params"]["channel"]["name"] == "ops"
        [down] = kafka.by_rule("down-for-a-while")
        assert (down["instance"], down["phase"]) == ("other-bot", "fire")


async def test_group_add_of_two_welcomes_each(worker: WorkerProcess, kafka_bootstrap: str) -> None:
    group = "120363025246125486@g.us"
    added = {
        "id": group,
        "author": "99887766554433@lid",
        "action": "add",
        "participants": [
            {
                "id": "204586724851231@lid",
                "phoneNumber": "5511987654321@s.whatsapp.net",
                "admin": None,
            },
            "5521998765432@s.whatsapp.net",
        ],
    }
    async with Kafka(kafka_bootstrap, worker.prefix) as kafka:
        await kafka.produce(envelope("group-participants.update", added))
        await kafka.wait_for(lambda a: len([x for x in a if x["rule_id"] == "group-welcome"]) >= 2)
        welcomes = kafka.by_rule("group-welcome")
        assert sorted(w["params"]["text"] for w in welcomes) == [
            "Bem-vindo(a), @5511987654321!",
            "Bem-vindo(a), @5521998765432!",
        ]
        assert {w["params"]["to"] for w in welcomes} == {group}
        assert len({w["idempotency_key"] for w in welcomes}) == 2


async def test_metrics_and_status_show_the_bundle_and_counters(worker: WorkerProcess) -> None:
    out = worker.wait_for_log("metrics and status on ")
    url = out.split("metrics and status on ", 1)[1].split()[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics") as response:
            metrics = await response.text()
        async with session.get(f"{url}/status") as response:
            status = await response.json()
    assert 'zapflow_rules_bundle_info{version="it-1@' in metrics
    assert "zapflow_process_echoes_total" in metrics
    assert status["process"]["rules_version"].startswith("it-1@")
    assert status["ready"] is True
