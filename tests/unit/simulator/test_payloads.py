from __future__ import annotations

import orjson
import pytest

from worker.events import SENT_EVENTS
from worker.simulator.payloads import (
    CLOSE_REASONS,
    PayloadFactory,
    buffer_json,
    device_of,
    iso,
    long_json,
)

NOW = 1_764_100_000.25


def test_same_seed_gives_the_same_payloads() -> None:
    a, b = PayloadFactory("shop-bot", 1, seed=7), PayloadFactory("shop-bot", 1, seed=7)
    for event in SENT_EVENTS * 3:
        assert orjson.dumps(a.generate(event, NOW)) == orjson.dumps(b.generate(event, NOW))


def test_other_seed_or_instance_gives_other_payloads() -> None:
    base = PayloadFactory("shop-bot", 1, seed=7).generate("messages.upsert", NOW)
    assert PayloadFactory("shop-bot", 1, seed=8).generate("messages.upsert", NOW) != base
    assert PayloadFactory("support", 1, seed=7).generate("messages.upsert", NOW) != base


def test_unsent_event_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        PayloadFactory("i", 1).generate("contacts.update", NOW)
    assert str(refused.value) == (
        "no payloads for event 'contacts.update': the gateway sends only " + ", ".join(SENT_EVENTS)
    )


def test_encodings_match_node() -> None:
    assert buffer_json(b"\x01\xff") == {"type": "Buffer", "data": [1, 255]}
    assert long_json(48213) == {"low": 48213, "high": 0, "unsigned": True}
    assert long_json(2**32 + 5) == {"low": 5, "high": 1, "unsigned": True}
    assert iso(NOW) == "2025-11-25T19:46:40.250Z"


@pytest.mark.parametrize(
    ("key_id", "device"),
    [
        ("01JV6Z8K3QW5T7Y9B2N4M6P8R0", "web"),
        ("3A6B1C2D3E4F5A6B7C8D", "ios"),
        ("3EB0A1B2C3D4E5F6A7B8C9", "web"),
        ("ZF" + "A" * 30, "android"),
        ("3F00", "desktop"),
        ("XYZ", "unknown"),
    ],
)
def test_device_follows_baileys_get_device(key_id: str, device: str) -> None:
    assert device_of(key_id) == device


def _all(factory: PayloadFactory, n: int = 200) -> list[dict[str, object]]:
    return [factory.messages_upsert(NOW) for _ in range(n)]


def test_received_messages_have_upstreams_row_shape() -> None:
    rows = _all(PayloadFactory("shop-bot", 3, seed=1))
    types = {r["messageType"] for r in rows}
    assert types == {
        "conversation",
        "extendedTextMessage",
        "imageMessage",
        "reactionMessage",
        "protocolMessage",
    }
    for row in rows:
        assert row["keyFromMe"] is False
        assert row["instanceId"] == 3
        assert row["info"] == {"type": "notify"}
        assert row["messageTimestamp"] == int(NOW)
        assert isinstance(row["keyId"], str)
        assert row["isGroup"] == str(row["keyRemoteJid"]).endswith("@g.us")
        if row["isGroup"]:
            assert str(row["keyParticipant"]).endswith("@s.whatsapp.net")
        else:
            assert str(row["keyLid"]).endswith("@lid")


def test_image_uses_buffer_and_long_encodings_and_a_media_path() -> None:
    image = next(r for r in _all(PayloadFactory("i", 1)) if r["messageType"] == "imageMessage")
    content = image["content"]
    assert isinstance(content, dict)
    assert content["mediaKey"]["type"] == "Buffer"
    assert len(content["mediaKey"]["data"]) == 32
    assert set(content["fileLength"]) == {"low", "high", "unsigned"}
    assert str(image["media"]["path"]).startswith("/chat/public/image/download?q=")  # type: ignore[index]


def test_revoke_carries_the_enum_name() -> None:
    revoke = next(r for r in _all(PayloadFactory("i", 1)) if r["messageType"] == "protocolMessage")
    assert revoke["content"]["type"] == "REVOKE"  # type: ignore[index]


def test_connection_updates_walk_close_connecting_open_with_real_codes() -> None:
    factory = PayloadFactory("shop-bot", 1, seed=3)
    seen = [factory.connection_update(NOW) for _ in range(30)]
    assert {s["instance"] for s in seen} == {"shop-bot"}
    assert [s["state"] for s in seen[:3]] == ["close", "connecting", "open"]
    for update in seen:
        if update["state"] == "close":
            assert update["statusReason"] in CLOSE_REASONS
        else:
            assert update["statusReason"] == 200


def test_participants_are_v7_objects_or_v6_strings() -> None:
    v7 = PayloadFactory("i", 1, seed=2).group_participants_update(NOW)
    v6 = PayloadFactory("i", 1, seed=2, participants_style="v6").group_participants_update(NOW)
    assert set(v7["participants"][0]) == {"id", "phoneNumber", "admin"}
    assert str(v7["participants"][0]["id"]).endswith("@lid")
    assert v7["author"].endswith("@lid") and v7["authorPn"].endswith("@s.whatsapp.net")
    assert v6["participants"] == [v7["participants"][0]["phoneNumber"]]
    assert "authorPn" not in v6
    assert v7["action"] in ("add", "remove", "promote", "demote")


def test_row_events_are_one_element_lists() -> None:
    factory = PayloadFactory("i", 4)
    for event in (
        "contacts.upsert",
        "chats.upsert",
        "chats.update",
        "groups.upsert",
        "groups.update",
    ):
        payload = factory.generate(event, NOW)
        assert isinstance(payload, list) and len(payload) == 1, event
    contact = factory.contacts_upsert(NOW)[0]
    assert set(contact) == {
        "id", "remoteJid", "pushName", "profilePicUrl", "createdAt", "updatedAt", "instanceId"
    }  # fmt: skip


def test_sent_message_and_its_append_echo() -> None:
    factory = PayloadFactory("i", 1)
    sent = factory.sent_message(
        NOW, "5511987654321@s.whatsapp.net", "oi", "ZF01", external_attributes={"a": 1}
    )
    echo = factory.own_append_echo(sent)
    assert sent["device"] == "web" and "info" not in sent
    assert sent["externalAttributes"] == {"a": 1}
    assert echo["info"] == {"type": "append"}
    assert (echo["keyId"], echo["keyFromMe"], echo["content"]) == ("ZF01", True, {"text": "oi"})
    assert "externalAttributes" not in echo
    assert echo["id"] != sent["id"]


def test_qrcode_keeps_upstreams_paring_code_spelling() -> None:
    factory = PayloadFactory("i", 1, seed=5)
    codes = [factory.qrcode_updated(NOW) for _ in range(40)]
    assert [c["count"] for c in codes[:3]] == [1, 2, 3]
    assert any("paringCode" in c for c in codes)
    assert all(c["base64"].startswith("data:image/png;base64,") for c in codes)
    assert all(c["code"].startswith("2@") for c in codes)


def test_received_message_ids_come_from_ios_web_and_android_senders() -> None:
    rows = _all(PayloadFactory("i", 1, seed=4))
    assert {r["device"] for r in rows} == {"ios", "web", "android"}
    for row in rows:
        assert device_of(str(row["keyId"])) == row["device"]
