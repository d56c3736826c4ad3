"""One-line, human-readable summaries of envelopes and action records for the terminal.

Pure: data in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_WIDTH = 110


def _short(value: Any, width: int = _WIDTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _message_text(data: Mapping[str, Any]) -> str:
    content = data.get("content")
    if isinstance(content, Mapping):
        for key in ("text", "caption", "conversation"):
            if isinstance(content.get(key), str):
                return str(content[key])
    return f"<{data.get('messageType', '?')}>"


def summarize_data(event: str, data: Any) -> str:
    """What a person wants to see of one gateway payload."""
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], Mapping) else data
    if not isinstance(first, Mapping):
        return _short(data)
    if event in ("messages.upsert", "send.message"):
        who = "me" if first.get("keyFromMe") else first.get("pushName") or "?"
        chat = first.get("keyRemoteJid") or first.get("keyLid") or "?"
        return _short(f"{who} @ {chat}: {_message_text(first)}")
    if event == "connection.update":
        return f"state={first.get('state')} reason={first.get('statusReason')}"
    if event == "group-participants.update":
        people = []
        for p in first.get("participants") or []:
            people.append(p.get("phoneNumber") or p.get("id") if isinstance(p, Mapping) else p)
        return _short(f"{first.get('action')} {first.get('id')}: {', '.join(map(str, people))}")
    if event == "messages.update":
        return _short(f"{first.get('remoteJid')} {first.get('id')} → {first.get('status')}")
    return _short(first)


def summarize_envelope(envelope: Mapping[str, Any]) -> str:
    received = str(envelope.get("received_at", ""))
    clock = received[11:23] if len(received) >= 23 else received
    event = str(envelope.get("event", "?"))
    instance = str(envelope.get("instance", "?"))
    return f"{clock} {instance:<14} {event:<26} {summarize_data(event, envelope.get('data'))}"


def summarize_action(record: Mapping[str, Any]) -> str:
    params = record.get("params") if isinstance(record.get("params"), Mapping) else {}
    assert isinstance(params, Mapping)
    kind = str(record.get("kind", "?"))
    created = str(record.get("created_at", ""))
    clock = created[11:23] if len(created) >= 23 else created
    target = params.get("to") or params.get("url") or params.get("topic") or ""
    channel = params.get("channel")
    if isinstance(channel, Mapping):
        target = f"#{channel.get('name')}"
    text = params.get("text") or params.get("message") or ""
    return _short(f"{clock} {record.get('rule_id')} → {kind} {target} {text}".rstrip(), 140)
