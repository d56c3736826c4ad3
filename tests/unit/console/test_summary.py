from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.console.summary import summarize_action, summarize_data, summarize_envelope
from worker.console.tail import TailError, parse_since, render, topics_for


def test_received_text_shows_sender_chat_and_text() -> None:
    data = {
        "keyFromMe": False,
        "pushName": "Maria Souza",
        "keyRemoteJid": "5511987654321@s.whatsapp.net",
        "messageType": "conversation",
        "content": {"text": "Oi, qual o horário?"},
    }
    assert summarize_data("messages.upsert", data) == (
        "Maria Souza @ 5511987654321@s.whatsapp.net: Oi, qual o horário?"
    )


def test_own_media_message_shows_me_and_the_caption() -> None:
    data = {
        "keyFromMe": True,
        "keyRemoteJid": "x@s.whatsapp.net",
        "messageType": "imageMessage",
        "content": {"caption": "segue"},
    }
    assert summarize_data("send.message", data) == "me @ x@s.whatsapp.net: segue"


def test_connection_update_shows_state_and_reason() -> None:
    data = {"instance": "shop-bot", "state": "close", "statusReason": 401}
    assert summarize_data("connection.update", data) == "state=close reason=401"


@pytest.mark.parametrize(
    "participants",
    [
        [{"id": "1@lid", "phoneNumber": "5511987654321@s.whatsapp.net", "admin": None}],
        ["5511987654321@s.whatsapp.net"],
    ],
)
def test_group_participants_show_phones_for_v6_and_v7(participants: list[object]) -> None:
    data = {"id": "120@g.us", "action": "add", "participants": participants}
    assert summarize_data("group-participants.update", data) == (
        "add 120@g.us: 5511987654321@s.whatsapp.net"
    )


def test_long_payloads_are_cut_with_an_ellipsis() -> None:
    text = summarize_data("chats.update", [{"remoteJid": "a" * 300}])
    assert len(text) == 110
    assert text.endswith("…")


def test_envelope_line_has_time_instance_event_and_summary() -> None:
    envelope = {
        "received_at": "2026-11-25T20:41:07.123Z",
        "instance": "shop-bot",
        "event": "connection.update",
        "data": {"state": "open", "statusReason": 200},
    }
    assert summarize_envelope(envelope) == (
        "20:41:07.123 shop-bot       connection.update          state=open reason=200"
    )


def test_action_line_names_rule_kind_target_and_text() -> None:
    record = {
        "created_at": "2026-11-25T20:41:07.130Z",
        "rule_id": "group-welcome",
        "kind": "whatsapp.send_text",
        "params": {"to": "120@g.us", "text": "Bem-vindo(a)!"},
    }
    assert summarize_action(record) == (
        "20:41:07.130 group-welcome → whatsapp.send_text 120@g.us Bem-vindo(a)!"
    )
    notify = {**record, "kind": "notify", "params": {"channel": {"name": "ops"}, "text": "caiu"}}
    assert summarize_action(notify).endswith("notify #ops caiu")


def test_render_marks_records_that_are_not_json() -> None:
    assert (
        render("codechat.x", b"\xff\x00", False, "codechat.") == "codechat.x: <not JSON, 2 bytes>"
    )


NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", datetime(2026, 11, 25, 19, 50, tzinfo=UTC)),
        ("2h", datetime(2026, 11, 25, 18, 0, tzinfo=UTC)),
        ("1d", datetime(2026, 11, 24, 20, 0, tzinfo=UTC)),
        ("2026-11-25T19:00:00Z", datetime(2026, 11, 25, 19, 0, tzinfo=UTC)),
        ("2026-11-25T19:00:00", datetime(2026, 11, 25, 19, 0, tzinfo=UTC)),
    ],
)
def test_parse_since_accepts_durations_and_times(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


def test_parse_since_explains_what_it_accepts() -> None:
    with pytest.raises(TailError) as err:
        parse_since("yesterday", NOW)
    assert str(err.value) == (
        "--since 'yesterday' is neither a duration like 10m, 2h, 1d nor an ISO 8601 time "
        "like 2026-11-25T20:00:00Z"
    )


def test_topics_for_maps_events_and_special_topics() -> None:
    assert topics_for(["messages.upsert", "actions", "dlq"], "codechat.") == [
        "codechat.messages.upsert",
        "codechat.actions",
        "codechat.dlq",
    ]
    assert len(topics_for([], "p.")) == 14


def test_topics_for_refuses_unknown_events() -> None:
    with pytest.raises(TailError) as err:
        topics_for(["messaging-history.set"], "codechat.")
    assert str(err.value).startswith("unknown event 'messaging-history.set'; choose from: ")
