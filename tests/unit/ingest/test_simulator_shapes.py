"""Envelope and key over every payload shape the simulator generates."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from worker import schemas
from worker.events import SENT_EVENTS
from worker.ingest.envelope import FrameSource, Subscriber, frame_to_record
from worker.simulator.payloads import PayloadFactory

NOW = 1_795_639_267.123


def expected_key(event: str, data: Any) -> str:
    """The contract's key rule, written out per event."""
    first = data[0] if isinstance(data, list) else data
    if event in ("messages.upsert", "send.message"):
        chat = first.get("keyRemoteJid") or first.get("keyLid")
    elif event == "messages.update" or event in ("chats.update", "chats.upsert"):
        chat = first.get("remoteJid")
    elif event in (
        "presence.update",
        "groups.upsert",
        "groups.update",
        "group-participants.update",
    ):
        chat = first.get("id")
    else:
        chat = None
    return f"shop-bot:{chat}" if chat else "shop-bot"


def payloads() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for style in ("v7", "v6"):
        factory = PayloadFactory("shop-bot", 1, seed=7, participants_style=style)  # type: ignore[arg-type]
        for event in SENT_EVENTS:
            cases.extend((event, factory.generate(event, NOW + i)) for i in range(10))
        for maker in ("received_text", "group_text", "received_image", "reaction", "revoke"):
            cases.append(("messages.upsert", getattr(factory, maker)(NOW)))
        sent = factory.send_message(NOW)
        cases.append(("send.message", sent))
        cases.append(("messages.upsert", factory.own_append_echo(sent)))
    return cases


@pytest.mark.parametrize(("event", "data"), payloads())
def test_envelope_and_key_of_simulator_payloads(event: str, data: Any) -> None:
    raw = orjson.dumps(data).decode()
    record = frame_to_record(
        Subscriber("shop-bot", event, "127.0.0.1:8084", "codechat."),
        raw,
        source=FrameSource("C", 3),
        envelope_id="01KAZ9X6KM0000000000000000",
        received_at_ms=int(NOW * 1000),
        max_frame_bytes=512 * 1024,
    )
    assert record.topic == f"codechat.{event}"
    envelope = orjson.loads(record.value)
    assert envelope["data"] == data
    assert envelope["event"] == event
    assert record.key.decode() == expected_key(event, data)
    assert schemas.errors("envelope", envelope) == []
