"""Recognising the gateway's echoes of our own sends, and repeated deliveries.

A text sent through CodeChat's REST comes back as one ``send.message`` and two
``messages.upsert`` frames, all with ``keyFromMe: true`` and the same ``keyId``; the second
``messages.upsert`` (Baileys ``emitOwnEvents``, ``info.type: append``) carries no
``externalAttributes``. The executor therefore sets ``options.messageId`` to ``ZF`` + 30 upper
case hex digits and tags ``externalAttributes.zapflow`` (contracts §4): either mark, on a
from-me message, identifies our own send, so an auto-reply never answers itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

#: The id the executor gives its sends: ``ZF`` + first 30 hex chars of sha256(key), upper case.
OWN_MESSAGE_ID: Final = re.compile(r"ZF[0-9A-F]{30}")

#: Events whose payload is one gateway message identified by ``keyId``; a second delivery of
#: the same ``(instance, event, keyId)`` is a duplicate, not a new message.
KEYED_MESSAGE_EVENTS: Final = frozenset({"messages.upsert", "send.message"})


def is_own_echo(data: Any) -> bool:
    """Whether a payload is the gateway's echo of a message zapflow sent.

    Looks at the CodeChat message shapes (``keyFromMe``/``keyId``) and the
    ``messages.update`` key shape (``fromMe``/``id``); anything else is not an echo.
    """
    if not isinstance(data, Mapping):
        return False
    from_me = data.get("keyFromMe")
    if from_me is None:
        from_me = data.get("fromMe")
    if from_me is not True:
        return False
    attributes = data.get("externalAttributes")
    if isinstance(attributes, Mapping) and "zapflow" in attributes:
        return True
    message_id = data.get("keyId")
    if message_id is None:
        message_id = data.get("id")
    return isinstance(message_id, str) and OWN_MESSAGE_ID.fullmatch(message_id) is not None


def dedupe_key(envelope: Mapping[str, Any]) -> str | None:
    """The key under which a delivery of this gateway message is remembered, if any.

    ``instance|event|keyId`` for the events that carry one message; the event name is part
    of it because the same ``keyId`` legitimately appears on ``send.message`` and on
    ``messages.upsert``, and rules on each must see it once. ``None`` = never deduplicated.
    """
    event = envelope.get("event")
    if event not in KEYED_MESSAGE_EVENTS:
        return None
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        return None
    key_id = data.get("keyId")
    if not isinstance(key_id, str) or not key_id:
        return None
    return f"{envelope.get('instance')}|{event}|{key_id}"
