from __future__ import annotations

import pytest

from tests.unit.rules.rules_helpers import dm, envelope
from worker.events import STREAMED_EVENTS
from worker.rules.normalise import (
    FIELDS,
    NAMESPACES,
    PARTICIPANT_FIELDS,
    UnknownEvent,
    normalise,
    normalise_participant,
    phone_of,
    sample_envelope,
)


@pytest.mark.parametrize("event", STREAMED_EVENTS)
def test_every_streamed_event_has_a_view_with_exactly_its_documented_fields(event: str) -> None:
    view = normalise(sample_envelope(event))
    namespace, fields = NAMESPACES[event]
    assert set(view) == {"instance", "event", "event_id", "received_at", "data", namespace}
    assert set(view[namespace]) == set(fields)
    assert set(FIELDS[event]) == set(view)


@pytest.mark.parametrize("event", STREAMED_EVENTS)
def test_views_of_empty_payloads_still_have_every_field(event: str) -> None:
    view = normalise(envelope(event, {} if event not in ("contacts.upsert",) else []))
    namespace, fields = NAMESPACES[event]
    assert set(view[namespace]) == set(fields)


def test_received_direct_message() -> None:
    msg = normalise(sample_envelope("messages.upsert"))["msg"]
    assert msg == {
        "id": "3A6B1C2D3E4F5A6B7C8D",
        "chat": "5511987654321@s.whatsapp.net",
        "chat_lid": "204586724851231@lid",
        "sender": "5511987654321@s.whatsapp.net",
        "sender_phone": "5511987654321",
        "from_me": False,
        "is_group": False,
        "text": "Oi, qual o horário de funcionamento?",
        "kind": "text",
        "type": "conversation",
        "push_name": "Maria Souza",
        "timestamp": 1747321234,
        "info_type": "notify",
        "is_own_send": False,
        "device": "ios",
        "mentions": [],
        "quoted_id": None,
    }


def test_group_message_sender_is_the_participant() -> None:
    data = {
        "keyId": "A5F0",
        "keyFromMe": False,
        "keyRemoteJid": "120363025246125486@g.us",
        "keyParticipant": "5521998765432@s.whatsapp.net",
        "messageType": "extendedTextMessage",
        "content": {
            "text": "!regras",
            "contextInfo": {"mentionedJid": ["5511@s.whatsapp.net"], "stanzaId": "Q1"},
        },
        "isGroup": True,
        "info": {"type": "notify"},
    }
    msg = normalise(envelope("messages.upsert", data))["msg"]
    assert (msg["is_group"], msg["sender"], msg["sender_phone"], msg["text"], msg["kind"]) == (
        True,
        "5521998765432@s.whatsapp.net",
        "5521998765432",
        "!regras",
        "text",
    )
    assert msg["mentions"] == ["5511@s.whatsapp.net"]
    assert msg["quoted_id"] == "Q1"
    assert msg["push_name"] == ""


def test_image_caption_is_the_text() -> None:
    data = dm(
        messageType="imageMessage",
        content={"caption": "segue o comprovante", "mimetype": "image/jpeg"},
    )
    msg = normalise(envelope("messages.upsert", data))["msg"]
    assert (msg["text"], msg["kind"]) == ("segue o comprovante", "image")


def test_media_without_caption_has_empty_text_and_unknown_types_are_other() -> None:
    msg = normalise(envelope("messages.upsert", dm(messageType="stickerMessage", content={})))[
        "msg"
    ]
    assert (msg["text"], msg["kind"]) == ("", "sticker")
    msg = normalise(envelope("messages.upsert", dm(messageType="newFancyMessage", content={})))[
        "msg"
    ]
    assert msg["kind"] == "other"


@pytest.mark.parametrize(
    ("extra", "own"),
    [
        ({"keyId": "ZF0123456789ABCDEF0123456789AB", "keyFromMe": True}, True),
        ({"keyFromMe": True, "externalAttributes": {"zapflow": {"rule": "r", "key": "k"}}}, True),
        ({"keyFromMe": True, "externalAttributes": {"rule": "someone-else"}}, False),
        ({"keyFromMe": True}, False),
    ],
)
def test_own_sends_are_recognised_by_message_id_prefix_or_external_attributes(
    extra: dict[str, object], own: bool
) -> None:
    msg = normalise(envelope("messages.upsert", dm(**extra)))["msg"]
    assert msg["is_own_send"] is own
    assert msg["from_me"] is True


def test_rest_echo_on_send_message_has_no_info_type() -> None:
    msg = normalise(sample_envelope("send.message"))["msg"]
    assert (msg["from_me"], msg["info_type"], msg["sender"]) == (True, None, None)


def test_connection_update() -> None:
    assert normalise(envelope("connection.update", {"state": "close", "statusReason": 401}))[
        "conn"
    ] == {
        "state": "close",
        "status_reason": 401,
        "reason": "loggedOut",
        "logged_out": True,
    }
    assert (
        normalise(envelope("connection.update", {"state": "open"}))["conn"]["status_reason"] == 200
    )


V7 = {
    "id": "120363025246125486@g.us",
    "author": "99887766554433@lid",
    "authorPn": "5521998765432@s.whatsapp.net",
    "participants": [
        {"id": "204586724851231@lid", "phoneNumber": "5511987654321@s.whatsapp.net", "admin": None}
    ],
    "action": "add",
}
V6 = {
    "id": "120363025246125486@g.us",
    "author": "5521998765432@s.whatsapp.net",
    "participants": ["5511987654321@s.whatsapp.net"],
    "action": "add",
}


def test_group_participants_same_fields_for_baileys_v6_strings_and_v7_objects() -> None:
    v7 = normalise(envelope("group-participants.update", V7))["group"]
    v6 = normalise(envelope("group-participants.update", V6))["group"]
    for group in (v6, v7):
        assert (group["id"], group["action"], group["author"], group["author_phone"]) == (
            "120363025246125486@g.us",
            "add",
            "5521998765432@s.whatsapp.net",
            "5521998765432",
        )
        (participant,) = group["participants"]
        assert set(participant) == set(PARTICIPANT_FIELDS)
        assert (participant["jid"], participant["phone"], participant["admin"]) == (
            "5511987654321@s.whatsapp.net",
            "5511987654321",
            None,
        )
    assert v7["participants"][0]["lid"] == "204586724851231@lid"
    assert v6["participants"][0]["lid"] is None


def test_participant_with_only_a_lid_has_no_phone() -> None:
    assert normalise_participant({"id": "204586724851231@lid", "admin": "superadmin"}) == {
        "id": "204586724851231@lid",
        "jid": "204586724851231@lid",
        "phone": None,
        "lid": "204586724851231@lid",
        "admin": "superadmin",
        "is_admin": True,
    }


def test_self_leave_is_flagged() -> None:
    data = {
        "id": "g@g.us",
        "author": "5511@s.whatsapp.net",
        "participants": ["5511@s.whatsapp.net"],
        "action": "remove",
    }
    assert normalise(envelope("group-participants.update", data))["group"]["self_leave"] is True


def test_list_payloads_use_their_first_element() -> None:
    assert normalise(sample_envelope("chats.upsert"))["chat"] == {
        "id": "120363025246125486@g.us",
        "is_group": True,
        "name": "Clientes VIP",
        "unread": None,
    }
    assert normalise(sample_envelope("contacts.update"))["contact"]["phone"] == "5511987654321"
    group = normalise(sample_envelope("groups.update"))["group"]
    assert (group["subject"], group["changes"]) == ("Clientes VIP 2026", ["subject"])
    assert len(normalise(sample_envelope("groups.upsert"))["group"]["participants"]) == 2


def test_presence_call_receipt_and_qr() -> None:
    presence = normalise(sample_envelope("presence.update"))["presence"]
    assert (presence["state"], presence["jid"], presence["is_group"]) == (
        "composing",
        "99887766554433@lid",
        True,
    )
    call = normalise(sample_envelope("call.upsert"))["call"]
    assert (call["caller"], call["caller_phone"], call["status"]) == (
        "5511987654321@s.whatsapp.net",
        "5511987654321",
        "offer",
    )
    receipt = normalise(sample_envelope("messages.update"))["msg"]
    assert (receipt["status"], receipt["from_me"]) == ("READ", True)
    qr = normalise(envelope("qrcode.updated", {"count": 2, "paringCode": "K7QW2M9P"}))["qr"]
    assert (qr["count"], qr["pairing_code"], qr["has_image"]) == (2, "K7QW2M9P", False)


@pytest.mark.parametrize(
    ("jid", "phone"),
    [
        ("5511987654321@s.whatsapp.net", "5511987654321"),
        ("5511987654321:12@s.whatsapp.net", "5511987654321"),
        ("204586724851231@lid", None),
        ("120363025246125486@g.us", None),
        (None, None),
    ],
)
def test_phone_of(jid: str | None, phone: str | None) -> None:
    assert phone_of(jid) == phone


def test_unknown_event_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(UnknownEvent) as info:
        normalise(envelope("messages.delete", {}))
    assert str(info.value).startswith(
        "unknown event 'messages.delete'; expected one of call.upsert, "
    )


def test_every_field_is_documented_in_the_rule_guide() -> None:
    from pathlib import Path

    guide = (Path(__file__).parents[3] / "docs" / "rules.md").read_text(encoding="utf-8")
    for event, (namespace, fields) in NAMESPACES.items():
        assert f"`{event}`" in guide
        for name in fields:
            assert f"`{namespace}.{name}`" in guide
    for name in PARTICIPANT_FIELDS:
        assert f"| `{name}` |" in guide
