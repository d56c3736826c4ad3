"""JSON Schemas of the normalised views (what rules see), one per event.

Built from the same field lists as the views and the rule guide, so the three cannot drift:
a test validates the views of every sample and of arbitrary payloads against them. Data
teams and the processing stage can use them to check what ``normalise`` produces.
"""

from __future__ import annotations

from typing import Any, Final

from worker.rules.normalise import COMMON_FIELDS, NAMESPACES, PARTICIPANT_FIELDS

_S: Final = {"type": "string"}
_S_NULL: Final = {"type": ["string", "null"]}
_B: Final = {"type": "boolean"}
_B_NULL: Final = {"type": ["boolean", "null"]}
_I: Final = {"type": "integer"}
_I_NULL: Final = {"type": ["integer", "null"]}
_STRINGS: Final = {"type": "array", "items": {"type": "string"}}

PARTICIPANT: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "id": _S_NULL,
        "jid": _S_NULL,
        "phone": _S_NULL,
        "lid": _S_NULL,
        "admin": {"enum": ["admin", "superadmin", None]},
        "is_admin": _B,
    },
    "required": list(PARTICIPANT_FIELDS),
    "additionalProperties": False,
}
_PARTICIPANTS: Final = {"type": "array", "items": PARTICIPANT}
_PRESENCE_UPDATES: Final = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"jid": _S, "phone": _S_NULL, "state": _S_NULL, "last_seen": _I_NULL},
        "required": ["jid", "phone", "state", "last_seen"],
        "additionalProperties": False,
    },
}

#: JSON type of every field, per namespace and field list (messages.update shares ``msg``).
_TYPES: Final[dict[str, dict[str, Any]]] = {
    "msg": {
        "id": _S_NULL,
        "chat": _S_NULL,
        "chat_lid": _S_NULL,
        "sender": _S_NULL,
        "sender_phone": _S_NULL,
        "from_me": _B,
        "is_group": _B,
        "text": _S,
        "kind": _S,
        "type": _S,
        "push_name": _S,
        "timestamp": _I_NULL,
        "info_type": {"enum": ["notify", "append", None]},
        "is_own_send": _B,
        "device": _S,
        "mentions": _STRINGS,
        "quoted_id": _S_NULL,
        # messages.update
        "participant": _S_NULL,
        "status": _S_NULL,
        "updated_at": _S_NULL,
    },
    "conn": {"state": _S_NULL, "status_reason": _I, "reason": _S, "logged_out": _B},
    "qr": {"count": _I, "code": _S_NULL, "pairing_code": _S_NULL, "has_image": _B},
    "contact": {"jid": _S_NULL, "phone": _S_NULL, "push_name": _S, "picture_url": _S_NULL},
    "chat": {"id": _S_NULL, "is_group": _B, "name": _S, "unread": _I_NULL},
    "presence": {
        "chat": _S_NULL,
        "is_group": _B,
        "jid": _S_NULL,
        "state": _S_NULL,
        "updates": _PRESENCE_UPDATES,
    },
    "group": {
        "id": _S_NULL,
        "subject": _S_NULL,
        "description": _S_NULL,
        "owner": _S_NULL,
        "author": _S_NULL,
        "author_phone": _S_NULL,
        "size": _I_NULL,
        "announce": _B_NULL,
        "restrict": _B_NULL,
        "participants": _PARTICIPANTS,
        "changes": _STRINGS,
        # group-participants.update
        "action": _S_NULL,
        "self_leave": _B,
    },
    "call": {
        "id": _S_NULL,
        "chat": _S_NULL,
        "caller": _S_NULL,
        "caller_phone": _S_NULL,
        "is_group": _B,
        "group": _S_NULL,
        "is_video": _B,
        "status": _S_NULL,
        "offline": _B,
        "date": _S_NULL,
    },
}


def view_schema(event: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of ``normalise(envelope)`` for one event.

    Raises:
        KeyError: for an event that is not streamed.
    """
    namespace, fields = NAMESPACES[event]
    types = _TYPES[namespace]
    inner = {
        "type": "object",
        "properties": {name: {**types[name], "description": fields[name]} for name in fields},
        "required": list(fields),
        "additionalProperties": False,
    }
    common: dict[str, Any] = {
        "instance": {"type": ["string", "null"]},
        "event": {"const": event},
        "event_id": {"type": ["string", "null"]},
        "received_at": {"type": ["string", "null"]},
        "data": {},
    }
    for name, value in common.items():
        value["description"] = COMMON_FIELDS[name]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://zapflow.dev/schemas/view/{event}.schema.json",
        "title": f"zapflow normalised view of {event}",
        "type": "object",
        "properties": {**common, namespace: inner},
        "required": [*common, namespace],
        "additionalProperties": False,
    }
