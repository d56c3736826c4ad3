"""Kafka keys: which events must stay in order together.

Contract (DESIGN.md "Kafka contract", contracts §1): ``instance:chat`` for messages.*,
chats.*, send.message and presence.update; ``instance:group`` for groups.* and
group-participants.update; ``instance`` for the rest. Kafka keeps order per key, and the
rule stage keeps its per-chat state on the partition its events arrive on.

When a payload lacks the field the key needs (CodeChat drops ``keyRemoteJid`` for
old-style group ids with a ``-``, see the upstream notes §2.3), the key falls back to the
instance, which still keeps that instance's events in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: Fields tried in order for the chat of each chat-keyed event.
CHAT_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "messages.upsert": ("keyRemoteJid", "remoteJid", "keyLid", "id"),
    "send.message": ("keyRemoteJid", "remoteJid", "keyLid", "id"),
    "messages.update": ("remoteJid", "keyRemoteJid", "keyLid", "id"),
    "chats.update": ("remoteJid", "id"),
    "chats.upsert": ("remoteJid", "id"),
    "presence.update": ("id", "remoteJid"),
}

GROUP_EVENTS: Final = frozenset({"groups.upsert", "groups.update", "group-participants.update"})


def _first_item(data: Any) -> Any:
    # chats.*, groups.upsert and groups.update arrive as lists (one item per frame for
    # chats.upsert; chats.update may carry several chats, the first decides).
    if isinstance(data, list):
        return data[0] if data else None
    return data


def _pick(data: Any, fields: tuple[str, ...]) -> str | None:
    item = _first_item(data)
    if not isinstance(item, Mapping):
        return None
    for name in fields:
        value = item.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def partition_key(instance: str, event: str, data: Any) -> str:
    """The Kafka key for one event of one instance.

    Args:
        instance: the instance name from the configuration.
        event: the subscription's event name.
        data: the parsed payload.
    """
    fields = CHAT_FIELDS.get(event)
    if fields is None and event in GROUP_EVENTS:
        fields = ("id",)
    if fields is None:
        return instance
    found = _pick(data, fields)
    return f"{instance}:{found}" if found else instance
