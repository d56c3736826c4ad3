from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.unit.ingest.shapes import EXPECTED_KEYS, SHAPES
from worker import schemas
from worker.ingest.envelope import (
    FrameSource,
    KafkaRecord,
    Subscriber,
    format_received_at,
    frame_to_record,
)

NOW_MS = 1_795_639_267_123  # 2026-11-25T20:41:07.123Z
ID = "01KAZ9X6KM0000000000000000"


def build(event: str, frame: str | bytes, max_bytes: int = 1024 * 1024) -> KafkaRecord:
    sub = Subscriber("shop-bot", event, "localhost:8084", "codechat.")
    return frame_to_record(
        sub,
        frame,
        source=FrameSource("01KAZ9X6KM1111111111111111", 17),
        envelope_id=ID,
        received_at_ms=NOW_MS,
        max_frame_bytes=max_bytes,
    )


def test_received_at_is_rfc3339_utc_with_milliseconds() -> None:
    assert format_received_at(NOW_MS) == "2026-11-25T20:41:07.123Z"
    assert format_received_at(0) == "1970-01-01T00:00:00.000Z"
    assert format_received_at(1_000) == "1970-01-01T00:00:01.000Z"


@pytest.mark.parametrize("event", sorted(SHAPES))
def test_envelope_of_each_event_shape(event: str) -> None:
    raw = orjson.dumps(SHAPES[event]).decode()
    record = build(event, raw)
    assert record.topic == f"codechat.{event}"
    assert record.key == EXPECTED_KEYS[event].encode()
    assert record.id == ID
    assert record.headers == (
        ("event", event.encode()),
        ("instance", b"shop-bot"),
        ("content-type", b"application/json"),
    )
    envelope = orjson.loads(record.value)
    assert envelope == {
        "id": ID,
        "instance": "shop-bot",
        "event": event,
        "received_at": "2026-11-25T20:41:07.123Z",
        "source": {
            "gateway": "localhost:8084",
            "connection": "01KAZ9X6KM1111111111111111",
            "seq": 17,
        },
        "data": SHAPES[event],
    }
    assert list(envelope) == ["id", "instance", "event", "received_at", "source", "data"]
    assert schemas.errors("envelope", envelope) == []


def test_payload_bytes_reach_kafka_untouched() -> None:
    # Number formats, key order, escapes and spacing are the gateway's own.
    raw = '{"b": 1.50, "a": "caf\\u00e9", "n": 1e3, "big": 18446744073709551615}'
    record = build("messages.upsert", raw)
    assert record.value.endswith(b',"data":' + raw.encode() + b"}")


def test_integers_beyond_64_bits_are_still_json() -> None:
    raw = '{"keyRemoteJid": "x@s.whatsapp.net", "fileLength": 123456789012345678901234567890}'
    record = build("messages.upsert", raw)
    assert record.topic == "codechat.messages.upsert"
    assert record.key == b"shop-bot:x@s.whatsapp.net"


def test_names_with_quotes_are_escaped_in_the_envelope() -> None:
    sub = Subscriber('we"ird', "connection.update", "gw:1", "p.")
    record = frame_to_record(
        sub,
        "{}",
        source=FrameSource("c", 1),
        envelope_id=ID,
        received_at_ms=NOW_MS,
        max_frame_bytes=100,
    )
    assert orjson.loads(record.value)["instance"] == 'we"ird'


def invalid(record: KafkaRecord) -> dict[str, Any]:
    assert record.topic == "codechat.invalid"
    body: dict[str, Any] = orjson.loads(record.value)
    assert schemas.errors("invalid", body) == []
    assert body["id"] == ID
    assert body["instance"] == "shop-bot"
    assert body["received_at"] == "2026-11-25T20:41:07.123Z"
    assert body["source"]["seq"] == 17
    assert record.key == b"shop-bot"
    return body


def test_text_that_is_not_json_goes_to_the_invalid_topic_with_its_bytes() -> None:
    body = invalid(build("messages.upsert", "hello {"))
    assert body["event"] == "messages.upsert"
    assert body["reason"].startswith("not valid JSON: ")
    assert base64.b64decode(body["raw_base64"]) == b"hello {"
    assert body["raw_size"] == 7
    assert "truncated" not in body


@pytest.mark.parametrize("frame", ["NaN", "[Infinity]", "", "{'a': 1}"])
def test_javascript_constants_and_empty_frames_are_not_json(frame: str) -> None:
    assert invalid(build("call.upsert", frame))["reason"].startswith("not valid JSON")


def test_binary_frames_go_to_the_invalid_topic() -> None:
    body = invalid(build("call.upsert", b"\x00\x01{}"))
    assert body["reason"] == "binary frame"
    assert base64.b64decode(body["raw_base64"]) == b"\x00\x01{}"


def test_frames_over_the_limit_go_to_the_invalid_topic_cut_at_the_limit() -> None:
    raw = '{"text": "' + "x" * 200 + '"}'
    body = invalid(build("messages.upsert", raw, max_bytes=100))
    assert body["reason"] == "frame of 212 bytes is over the limit of 100 bytes"
    assert base64.b64decode(body["raw_base64"]) == raw.encode()[:100]
    assert body["raw_size"] == 212
    assert body["truncated"] is True


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    raw = '{"t": "' + "x" * 91 + '"}'
    assert len(raw) == 100
    assert build("messages.upsert", raw, max_bytes=100).topic == "codechat.messages.upsert"
