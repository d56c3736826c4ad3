"""Event names of the CodeChat gateway and the Kafka topics zapflow uses for them.

Facts from CodeChat ``whatsapp-api`` 1.3.x (``src/whatsapp/dto/webhook.dto.ts`` and
``src/websocket/server.ts``): the socket accepts 22 event names on subscribe, but only
14 are ever sent over it. ``contacts.update`` is accepted and its events arrive under
``contacts.upsert``; ``messaging-history.set`` does not exist on the socket at all.
"""

from __future__ import annotations

from typing import Final

#: The 22 names the gateway accepts in ``?event=`` (anything else is a 401).
ACCEPTED_EVENTS: Final[tuple[str, ...]] = (
    "qrcode.updated",
    "messages.set",
    "messages.upsert",
    "messages.update",
    "send.message",
    "contacts.set",
    "contacts.upsert",
    "contacts.update",
    "chats.set",
    "chats.upsert",
    "chats.update",
    "chats.delete",
    "presence.update",
    "groups.upsert",
    "groups.update",
    "group-participants.update",
    "connection.update",
    "status.instance",
    "refresh.token",
    "call.upsert",
    "labels.association",
    "labels.edit",
)

#: The 14 subscriptions that can carry events. ``contacts.update`` is among them because
#: the gateway accepts it, but what it would carry arrives on ``contacts.upsert``.
STREAMED_EVENTS: Final[tuple[str, ...]] = (
    "qrcode.updated",
    "connection.update",
    "messages.upsert",
    "messages.update",
    "send.message",
    "contacts.upsert",
    "contacts.update",
    "presence.update",
    "chats.update",
    "chats.upsert",
    "groups.upsert",
    "groups.update",
    "group-participants.update",
    "call.upsert",
)

#: The 13 event names the gateway really sends frames under.
SENT_EVENTS: Final[tuple[str, ...]] = tuple(e for e in STREAMED_EVENTS if e != "contacts.update")

DEFAULT_TOPIC_PREFIX: Final = "codechat."


def event_topic(event: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """Kafka topic for one event type, e.g. ``codechat.messages.upsert``."""
    return f"{prefix}{event}"


def actions_topic(prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """Topic of action records written by the rule stage and read by the executor."""
    return f"{prefix}actions"


def dlq_topic(prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """Topic of action records that failed for good, with the error."""
    return f"{prefix}dlq"


def invalid_topic(prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """Topic of frames that were not valid JSON, were binary, or were too large."""
    return f"{prefix}invalid"
