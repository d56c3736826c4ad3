from __future__ import annotations

import orjson
import pytest

from worker.simulator.frames import frame_header, json_frame, make_template


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_header_uses_the_shortest_length_encoding(length: int, header: bytes) -> None:
    assert frame_header(length) == header


def test_binary_header_has_opcode_two() -> None:
    assert frame_header(3, 0x2) == b"\x82\x03"


def test_json_frame_is_compact_utf8() -> None:
    assert json_frame({"a": "ã", "b": [1, 2]}) == b"\x81\x14" + '{"a":"ã","b":[1,2]}'.encode()


def test_template_renders_unique_ids_with_a_fixed_length() -> None:
    template = make_template("messages.upsert", {"keyId": "X", "content": {"text": "oi"}})
    first, second = template.render(1), template.render(2)
    assert len(first) == len(second)
    assert orjson.loads(first[2:]) == {"keyId": "3EB0000000000000000001", "content": {"text": "oi"}}
    assert orjson.loads(second[2:])["keyId"] == "3EB0000000000000000002"
    assert first[:2] == frame_header(len(first) - 2)


def test_template_without_an_id_field_is_the_plain_frame() -> None:
    payload = [{"remoteJid": "x", "instanceId": 1}]
    template = make_template("chats.update", payload)
    assert template.render(1) == template.render(2) == json_frame(payload)


def test_template_fills_in_the_message_timestamp() -> None:
    template = make_template(
        "messages.upsert", {"keyId": "X", "messageTimestamp": 1, "info": {"type": "notify"}}
    )
    frame = template.render(7, now=1764100000)
    assert orjson.loads(frame[2:]) == {
        "keyId": "3EB0000000000000000007",
        "messageTimestamp": 1764100000,
        "info": {"type": "notify"},
    }
    assert frame[:2] == frame_header(len(frame) - 2)
