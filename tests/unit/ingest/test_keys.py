from __future__ import annotations

from typing import Any

import pytest

from tests.unit.ingest.shapes import DM, EXPECTED_KEYS, GROUP, SHAPES
from worker.events import SENT_EVENTS
from worker.ingest.keys import partition_key


def test_every_sent_event_has_a_shape_and_an_expected_key() -> None:
    assert set(SHAPES) == set(SENT_EVENTS) == set(EXPECTED_KEYS)


@pytest.mark.parametrize("event", sorted(SHAPES))
def test_key_of_each_event_shape(event: str) -> None:
    assert partition_key("shop-bot", event, SHAPES[event]) == EXPECTED_KEYS[event]


@pytest.mark.parametrize(
    ("event", "data", "key"),
    [
        # Old-style group ids lose keyRemoteJid upstream: fall back to the LID.
        ("messages.upsert", {"keyLid": "2045@lid", "keyId": "X"}, "i:2045@lid"),
        ("messages.upsert", {"keyRemoteJid": GROUP, "keyLid": "2045@lid"}, f"i:{GROUP}"),
        ("messages.upsert", {"keyId": "X"}, "i"),
        ("messages.update", {"id": "ABC"}, "i:ABC"),
        ("messages.upsert", {"keyRemoteJid": ""}, "i"),
        ("messages.upsert", {"keyRemoteJid": 42}, "i"),
        ("chats.update", [], "i"),
        ("chats.upsert", ["not a mapping"], "i"),
        ("groups.update", [{"subject": "no id"}], "i"),
        ("group-participants.update", "text", "i"),
        ("presence.update", None, "i"),
        ("contacts.update", [{"remoteJid": DM}], "i"),
    ],
)
def test_key_falls_back_to_what_the_payload_has(event: str, data: Any, key: str) -> None:
    assert partition_key("i", event, data) == key
