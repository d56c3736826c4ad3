from __future__ import annotations

import pytest

from worker.config import Secret
from worker.ingest.config import InstanceConfig
from worker.ingest.discovery import (
    fetch_instances_url,
    instances_from_rows,
    merge_instances,
)


@pytest.mark.parametrize(
    ("ws", "http"),
    [
        ("ws://gw:8084/ws/events", "http://gw:8084/instance/fetchInstances"),
        ("wss://gw.example.com/ws/events", "https://gw.example.com/instance/fetchInstances"),
    ],
)
def test_rest_url_beside_the_socket_url(ws: str, http: str) -> None:
    assert fetch_instances_url(ws) == http


def test_rows_with_tokens_become_instances() -> None:
    rows = [
        {"id": 1, "name": "shop-bot", "Auth": {"id": 1, "token": "t1"}},
        {"id": 2, "name": "no-auth"},
        {"id": 3, "name": "support", "Auth": {"id": 3, "token": "t3"}},
    ]
    found = instances_from_rows(rows, ("call.upsert",))
    assert [(i.name, i.token.reveal(), i.events) for i in found] == [
        ("shop-bot", "t1", ("call.upsert",)),
        ("support", "t3", ("call.upsert",)),
    ]


@pytest.mark.parametrize("rows", [{"error": "x"}, ["text"]])
def test_unexpected_answers_are_refused(rows: object) -> None:
    with pytest.raises(ValueError, match="expected a list of instances"):
        instances_from_rows(rows, ())


def test_configured_instances_keep_their_token_and_events() -> None:
    configured = [InstanceConfig("shop-bot", Secret("mine"), ("messages.upsert",))]
    discovered = [
        InstanceConfig("shop-bot", Secret("theirs"), ("call.upsert",)),
        InstanceConfig("support", Secret("t"), ("call.upsert",)),
    ]
    merged = merge_instances(configured, discovered)
    assert [(i.name, i.token.reveal(), i.events) for i in merged] == [
        ("shop-bot", "mine", ("messages.upsert",)),
        ("support", "t", ("call.upsert",)),
    ]
