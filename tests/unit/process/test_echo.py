from __future__ import annotations

from typing import Any

import pytest

from tests.unit.process.standin import envelope
from worker.process.echo import dedupe_key, is_own_echo

OUR_ID = "ZF" + "0123456789ABCDEF0123456789ABCD"
CONTACT_TEXT = {
    "keyId": "3A6B1C2D3E4F5A6B7C8D",
    "keyFromMe": False,
    "keyRemoteJid": "5511987654321@s.whatsapp.net",
    "messageType": "conversation",
    "content": {"text": "Oi"},
    "info": {"type": "notify"},
}
SENT = {
    "keyId": OUR_ID,
    "keyFromMe": True,
    "keyRemoteJid": "5511987654321@s.whatsapp.net",
    "messageType": "extendedTextMessage",
    "content": {"text": "Olá!"},
    "externalAttributes": {"zapflow": {"rule": "r", "key": "k"}},
}
APPEND_ECHO = {
    "keyId": OUR_ID,
    "keyFromMe": True,
    "keyRemoteJid": "5511987654321@s.whatsapp.net",
    "messageType": "extendedTextMessage",
    "content": {"text": "Olá!"},
    "info": {"type": "append"},
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (CONTACT_TEXT, False),
        (SENT, True),
        (APPEND_ECHO, True),
        ({**APPEND_ECHO, "keyId": "3EB0A1B2C3D4E5F6A7B8C9"}, False),  # sent by a person
        ({**SENT, "keyId": "01JV6Z8K3QW5T7Y9B2N4M6P8R0"}, True),  # tagged, any id
        ({**SENT, "externalAttributes": {"rule": "x"}, "keyId": "01JV6Z8K3Q"}, False),
        ({**APPEND_ECHO, "keyFromMe": False}, False),  # a contact cannot send our ids
        ({**APPEND_ECHO, "keyId": OUR_ID.lower()}, False),
        ({**APPEND_ECHO, "keyId": OUR_ID + "0"}, False),
        ({"remoteJid": "x@s.whatsapp.net", "fromMe": True, "id": OUR_ID, "status": "READ"}, True),
        ({"remoteJid": "x@s.whatsapp.net", "fromMe": True, "id": "ABC", "status": "READ"}, False),
        ([{"remoteJid": "x", "instanceId": 1}], False),
        ({"instance": "shop-bot", "state": "close", "statusReason": 401}, False),
        (None, False),
    ],
)
def test_own_echo_is_a_from_me_message_with_our_id_or_tag(data: Any, expected: bool) -> None:
    assert is_own_echo(data) is expected


@pytest.mark.parametrize(
    ("event", "data", "expected"),
    [
        ("messages.upsert", CONTACT_TEXT, "shop-bot|messages.upsert|3A6B1C2D3E4F5A6B7C8D"),
        ("send.message", SENT, f"shop-bot|send.message|{OUR_ID}"),
        ("messages.update", {"id": "3A6B", "status": "READ"}, None),
        ("connection.update", {"state": "open"}, None),
        ("messages.upsert", {"keyFromMe": False}, None),
        ("messages.upsert", {"keyId": ""}, None),
        ("messages.upsert", [1, 2], None),
    ],
)
def test_dedupe_key_is_instance_event_and_key_id_of_message_events(
    event: str, data: Any, expected: str | None
) -> None:
    assert dedupe_key(envelope(event, data)) == expected
