"""Readable, stable views of the 14 gateway events, built from the raw payloads.

Rules see ``msg.text`` instead of ``data.content.caption`` and the same participant shape
whether the gateway runs Baileys v6 (participants as JID strings) or v7 (objects with
``id`` / ``phoneNumber`` / ``admin``). Every field listed in :data:`FIELDS` is always
present in a view (``None`` or an empty value when the payload lacks it), so conditions
never trip on a missing key; the raw payload stays reachable as ``data``.

Shapes are from CodeChat ``whatsapp-api`` ``src/whatsapp/services/whatsapp.service.ts``
(see the upstream reference, section 2). All functions here are pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

#: Fields present in every view, whatever the event.
COMMON_FIELDS: Final[dict[str, str]] = {
    "instance": "instance name (from the subscription, not the payload)",
    "event": "event name, e.g. messages.upsert",
    "event_id": "envelope id (time-ordered ULID)",
    "received_at": "when ingest received the frame, RFC 3339 UTC",
    "data": "the raw gateway payload, untouched",
}

_MSG_FIELDS: Final[dict[str, str]] = {
    "id": "message id (keyId)",
    "chat": "chat JID: the contact's phone JID for a DM, the group JID for a group",
    "chat_lid": "the chat's @lid JID when the gateway sent one, else None",
    "sender": "who wrote it: the participant in a group, the chat in a DM, None when from_me",
    "sender_phone": "digits of the sender's phone number, or None",
    "from_me": "true when this number sent it (echoes of our own sends included)",
    "is_group": "true in a group chat",
    "text": "text of conversation / extended text, or the media caption; '' when none",
    "kind": "text, image, video, audio, document, sticker, reaction, location, contact, "
    "poll, protocol or other",
    "type": "raw Baileys messageType, e.g. extendedTextMessage",
    "push_name": "sender's display name; '' when absent",
    "timestamp": "message time, unix seconds, or None",
    "info_type": "'notify' (live), 'append' (offline delivery or own echo) or None",
    "is_own_send": "true for the gateway's echo of a send made by zapflow (never act on it)",
    "device": "ios, android, web, desktop or unknown",
    "mentions": "list of JIDs mentioned in the text",
    "quoted_id": "id of the message this one replies to, or None",
}

_RECEIPT_FIELDS: Final[dict[str, str]] = {
    "id": "id of the message whose status changed",
    "chat": "chat JID",
    "from_me": "true when the message was sent by this number",
    "is_group": "true in a group chat",
    "participant": "group participant the receipt is from, or None",
    "status": "ERROR, PENDING, SERVER_ACK, DELIVERY_ACK, READ, PLAYED, or None (edits)",
    "updated_at": "server time of the change, RFC 3339, or None",
}

_CONN_FIELDS: Final[dict[str, str]] = {
    "state": "open, connecting or close",
    "status_reason": "Baileys status code (200 when none; 401 = logged out)",
    "reason": "name of the status code, e.g. loggedOut, connectionClosed, restartRequired",
    "logged_out": "true when status_reason is 401: the session is gone, a human must re-pair",
}

_QR_FIELDS: Final[dict[str, str]] = {
    "count": "how many QR codes were issued in this pairing attempt",
    "code": "QR payload string, or None",
    "pairing_code": "pairing code when pairing by phone number, or None",
    "has_image": "true when a base64 PNG came with it",
}

_CONTACT_FIELDS: Final[dict[str, str]] = {
    "jid": "contact JID",
    "phone": "digits of the phone number when the JID is a phone JID, else None",
    "push_name": "display name; '' when absent",
    "picture_url": "profile picture URL or None",
}

_CHAT_FIELDS: Final[dict[str, str]] = {
    "id": "chat JID",
    "is_group": "true for a group chat",
    "name": "chat name when known, else ''",
    "unread": "unread count when the update carries one, else None",
}

_PRESENCE_FIELDS: Final[dict[str, str]] = {
    "chat": "chat JID the presence is about",
    "is_group": "true when the chat is a group",
    "jid": "JID of the first participant in the update",
    "state": "available, unavailable, composing, recording or paused (first participant)",
    "updates": "list of {jid, phone, state, last_seen} for every participant in the update",
}

_GROUP_FIELDS: Final[dict[str, str]] = {
    "id": "group JID",
    "subject": "group name, or None when the update does not carry it",
    "description": "group description, or None",
    "owner": "owner JID, or None",
    "author": "who made the change (phone JID when known, else the raw author), or None",
    "author_phone": "digits of the author's phone number, or None",
    "size": "member count when known, else None",
    "announce": "only admins may send (None when not in the update)",
    "restrict": "only admins may edit settings (None when not in the update)",
    "participants": "list of participants, each {id, jid, phone, lid, admin, is_admin}",
    "changes": "names of the fields this update carries (groups.update)",
}

_GROUP_PARTICIPANTS_FIELDS: Final[dict[str, str]] = {
    "id": "group JID",
    "action": "add, remove, promote, demote or modify",
    "author": "who made the change (phone JID when known, else the raw author), or None",
    "author_phone": "digits of the author's phone number, or None",
    "participants": "list of participants, each {id, jid, phone, lid, admin, is_admin}; "
    "the same for Baileys v6 strings and v7 objects",
    "self_leave": "true when a participant removed themselves",
}

_CALL_FIELDS: Final[dict[str, str]] = {
    "id": "call id",
    "chat": "chat JID of the call",
    "caller": "caller phone JID when known, else the raw caller JID",
    "caller_phone": "digits of the caller's phone number, or None",
    "is_group": "true for a group call",
    "group": "group JID for a group call, else None",
    "is_video": "true for a video call",
    "status": "offer, ringing, timeout, reject, accept, terminate, ...",
    "offline": "true when the call was received while offline",
    "date": "call time, RFC 3339",
}

#: Fields of each participant in ``group.participants`` (and ``item`` in for_each over them).
PARTICIPANT_FIELDS: Final[dict[str, str]] = {
    "id": "the JID the gateway gave (often @lid in Baileys v7)",
    "jid": "phone JID (…@s.whatsapp.net) when known, else the id",
    "phone": "digits of the phone number, or None when only a @lid is known",
    "lid": "the @lid JID when known, else None",
    "admin": "'admin', 'superadmin' or None",
    "is_admin": "true for admin or superadmin",
}

#: Per event: the name of its namespace and the fields in it.
NAMESPACES: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "messages.upsert": ("msg", _MSG_FIELDS),
    "send.message": ("msg", _MSG_FIELDS),
    "messages.update": ("msg", _RECEIPT_FIELDS),
    "connection.update": ("conn", _CONN_FIELDS),
    "qrcode.updated": ("qr", _QR_FIELDS),
    "contacts.upsert": ("contact", _CONTACT_FIELDS),
    "contacts.update": ("contact", _CONTACT_FIELDS),
    "chats.upsert": ("chat", _CHAT_FIELDS),
    "chats.update": ("chat", _CHAT_FIELDS),
    "presence.update": ("presence", _PRESENCE_FIELDS),
    "groups.upsert": ("group", _GROUP_FIELDS),
    "groups.update": ("group", _GROUP_FIELDS),
    "group-participants.update": ("group", _GROUP_PARTICIPANTS_FIELDS),
    "call.upsert": ("call", _CALL_FIELDS),
}

#: Per event, every top-level name a rule may use and the fields below it.
FIELDS: Final[dict[str, dict[str, dict[str, str] | str]]] = {
    event: {**COMMON_FIELDS, ns: fields} for event, (ns, fields) in NAMESPACES.items()
}

DISCONNECT_REASONS: Final[dict[int, str]] = {
    200: "ok",
    401: "loggedOut",
    403: "forbidden",
    408: "connectionLost",
    411: "multideviceMismatch",
    428: "connectionClosed",
    440: "connectionReplaced",
    500: "badSession",
    503: "unavailableService",
    515: "restartRequired",
}

_KINDS: Final[dict[str, str]] = {
    "conversation": "text",
    "extendedTextMessage": "text",
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "documentWithCaptionMessage": "document",
    "stickerMessage": "sticker",
    "reactionMessage": "reaction",
    "locationMessage": "location",
    "liveLocationMessage": "location",
    "contactMessage": "contact",
    "contactsArrayMessage": "contact",
    "pollCreationMessage": "poll",
    "pollCreationMessageV3": "poll",
    "pollUpdateMessage": "poll",
    "protocolMessage": "protocol",
}

_PHONE_SERVERS: Final = ("@s.whatsapp.net", "@c.us")


def phone_of(jid: object) -> str | None:
    """Digits of the phone number in a phone JID (device suffix dropped), else None.

    ``5511987654321:12@s.whatsapp.net`` -> ``5511987654321``; a ``@lid`` or group JID has
    no phone number and gives None.
    """
    if not isinstance(jid, str):
        return None
    user, sep, server = jid.partition("@")
    if sep and "@" + server not in _PHONE_SERVERS:
        return None
    user = user.split(":", 1)[0]
    return user if user.isdigit() else None


def _is_group_jid(jid: object) -> bool:
    return isinstance(jid, str) and jid.endswith("@g.us")


def _dict(value: object) -> Mapping[str, Any]:
    if type(value) is dict:  # the common case, without the slower ABC check
        return value
    return value if isinstance(value, Mapping) else {}


def _first(data: object) -> Mapping[str, Any]:
    """The first element of a list payload (chats/contacts/groups come as lists)."""
    if isinstance(data, list) and data:
        return _dict(data[0])
    return _dict(data)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def normalise_participant(raw: object) -> dict[str, Any]:
    """One participant, the same shape for a v6 JID string and a v7 object."""
    if isinstance(raw, str):
        pid: str | None = raw
        phone_number = None if raw.endswith("@lid") else raw
        lid = raw if raw.endswith("@lid") else None
        admin = None
    else:
        obj = _dict(raw)
        pid = _str_or_none(obj.get("id"))
        phone_number = _str_or_none(obj.get("phoneNumber"))
        lid = _str_or_none(obj.get("lid"))
        if pid is not None and pid.endswith("@lid"):
            lid = lid or pid
        elif phone_number is None and pid is not None:
            phone_number = pid
        admin = obj.get("admin") if obj.get("admin") in ("admin", "superadmin") else None
    jid = phone_number or pid
    return {
        "id": pid,
        "jid": jid,
        "phone": phone_of(phone_number),
        "lid": lid,
        "admin": admin,
        "is_admin": admin is not None,
    }


def _text_of(message_type: str, content: Mapping[str, Any]) -> str:
    for name in ("text", "caption", "conversation"):
        value = content.get(name)
        if isinstance(value, str):
            return value
    if message_type == "documentWithCaptionMessage":
        inner = _dict(_dict(content.get("message")).get("documentMessage"))
        caption = inner.get("caption")
        if isinstance(caption, str):
            return caption
    return ""


def _msg(data: Any) -> dict[str, Any]:
    d = _dict(data)
    chat = _str_or_none(d.get("keyRemoteJid")) or _str_or_none(d.get("keyLid"))
    from_me = d.get("keyFromMe") is True
    is_group = d.get("isGroup") is True or _is_group_jid(chat)
    if is_group:
        sender = _str_or_none(d.get("keyParticipant")) or _str_or_none(d.get("keyParticipantLid"))
    else:
        sender = None if from_me else chat
    raw_type = d.get("messageType")
    message_type = raw_type if isinstance(raw_type, str) else ""
    content = _dict(d.get("content"))
    context = _dict(content.get("contextInfo"))
    mentions = context.get("mentionedJid")
    info_type = _dict(d.get("info")).get("type")
    key_id = _str_or_none(d.get("keyId"))
    external = _dict(d.get("externalAttributes"))
    timestamp = d.get("messageTimestamp")
    return {
        "id": key_id,
        "chat": chat,
        "chat_lid": _str_or_none(d.get("keyLid")),
        "sender": sender,
        "sender_phone": phone_of(sender),
        "from_me": from_me,
        "is_group": is_group,
        "text": _text_of(message_type, content),
        "kind": _KINDS.get(message_type, "other"),
        "type": message_type,
        "push_name": d.get("pushName") if isinstance(d.get("pushName"), str) else "",
        "timestamp": timestamp if isinstance(timestamp, int) else None,
        "info_type": info_type if info_type in ("notify", "append") else None,
        # Contract §4: the executor tags every gateway send with a ZF-prefixed messageId
        # and externalAttributes.zapflow, so its echoes can be recognised here.
        "is_own_send": "zapflow" in external or (key_id is not None and key_id.startswith("ZF")),
        "device": d.get("device") if isinstance(d.get("device"), str) else "unknown",
        "mentions": [m for m in mentions if isinstance(m, str)]
        if isinstance(mentions, list)
        else [],
        "quoted_id": _str_or_none(context.get("stanzaId")),
    }


def _receipt(data: Any) -> dict[str, Any]:
    d = _dict(data)
    chat = _str_or_none(d.get("remoteJid"))
    status = d.get("status")
    return {
        "id": _str_or_none(d.get("id")),
        "chat": chat,
        "from_me": d.get("fromMe") is True,
        "is_group": _is_group_jid(chat),
        "participant": _str_or_none(d.get("participant")),
        "status": status if isinstance(status, str) else None,
        "updated_at": _str_or_none(d.get("dateTime")),
    }


def _conn(data: Any) -> dict[str, Any]:
    d = _dict(data)
    reason = d.get("statusReason")
    code = reason if isinstance(reason, int) and not isinstance(reason, bool) else 200
    state = d.get("state")
    return {
        "state": state if isinstance(state, str) else None,
        "status_reason": code,
        "reason": DISCONNECT_REASONS.get(code, "unknown"),
        "logged_out": code == 401,
    }


def _qr(data: Any) -> dict[str, Any]:
    d = _dict(data)
    count = d.get("count")
    return {
        "count": count if isinstance(count, int) else 0,
        "code": _str_or_none(d.get("code")),
        # The gateway spells it ``paringCode`` (sic).
        "pairing_code": _str_or_none(d.get("paringCode")) or _str_or_none(d.get("pairingCode")),
        "has_image": isinstance(d.get("base64"), str) and bool(d.get("base64")),
    }


def _contact(data: Any) -> dict[str, Any]:
    d = _first(data)
    jid = _str_or_none(d.get("remoteJid")) or _str_or_none(d.get("id"))
    name = d.get("pushName")
    return {
        "jid": jid,
        "phone": phone_of(jid),
        "push_name": name if isinstance(name, str) else "",
        "picture_url": _str_or_none(d.get("profilePicUrl")),
    }


def _chat(data: Any) -> dict[str, Any]:
    d = _first(data)
    chat = _str_or_none(d.get("remoteJid")) or _str_or_none(d.get("id"))
    content = _dict(d.get("content"))
    name = content.get("name")
    unread = content.get("unreadCount")
    return {
        "id": chat,
        "is_group": _is_group_jid(chat),
        "name": name if isinstance(name, str) else "",
        "unread": unread if isinstance(unread, int) else None,
    }


def _presence(data: Any) -> dict[str, Any]:
    d = _dict(data)
    chat = _str_or_none(d.get("id"))
    updates = []
    for jid, value in _dict(d.get("presences")).items():
        info = _dict(value)
        last_seen = info.get("lastSeen")
        updates.append(
            {
                "jid": jid,
                "phone": phone_of(jid),
                "state": _str_or_none(info.get("lastKnownPresence")),
                "last_seen": last_seen if isinstance(last_seen, int) else None,
            }
        )
    first = updates[0] if updates else {"jid": None, "state": None}
    return {
        "chat": chat,
        "is_group": _is_group_jid(chat),
        "jid": first["jid"],
        "state": first["state"],
        "updates": updates,
    }


def _author(d: Mapping[str, Any]) -> tuple[str | None, str | None]:
    author = _str_or_none(d.get("authorPn")) or _str_or_none(d.get("author"))
    return author, phone_of(author)


def _participants(raw: object) -> list[dict[str, Any]]:
    return [normalise_participant(p) for p in raw] if isinstance(raw, list) else []


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _group(data: Any) -> dict[str, Any]:
    d = _first(data)
    author, author_phone = _author(d)
    size = d.get("size")
    return {
        "id": _str_or_none(d.get("id")),
        "subject": _str_or_none(d.get("subject")),
        "description": _str_or_none(d.get("desc")),
        "owner": _str_or_none(d.get("ownerPn")) or _str_or_none(d.get("owner")),
        "author": author,
        "author_phone": author_phone,
        "size": size if isinstance(size, int) else None,
        "announce": _bool_or_none(d.get("announce")),
        "restrict": _bool_or_none(d.get("restrict")),
        "participants": _participants(d.get("participants")),
        "changes": sorted(k for k in d if k not in ("id", "author", "authorPn", "authorUsername")),
    }


def _group_participants(data: Any) -> dict[str, Any]:
    d = _dict(data)
    author, author_phone = _author(d)
    participants = _participants(d.get("participants"))
    action = d.get("action")
    raw_author = _str_or_none(d.get("author"))
    self_leave = action == "remove" and any(
        raw_author is not None and raw_author in (p["id"], p["jid"], p["lid"]) for p in participants
    )
    return {
        "id": _str_or_none(d.get("id")),
        "action": action if isinstance(action, str) else None,
        "author": author,
        "author_phone": author_phone,
        "participants": participants,
        "self_leave": self_leave,
    }


def _call(data: Any) -> dict[str, Any]:
    d = _dict(data)
    caller = _str_or_none(d.get("callerPn")) or _str_or_none(d.get("from"))
    group = _str_or_none(d.get("groupJid"))
    return {
        "id": _str_or_none(d.get("id")),
        "chat": _str_or_none(d.get("chatId")),
        "caller": caller,
        "caller_phone": phone_of(caller),
        "is_group": d.get("isGroup") is True or group is not None,
        "group": group,
        "is_video": d.get("isVideo") is True,
        "status": _str_or_none(d.get("status")),
        "offline": d.get("offline") is True,
        "date": _str_or_none(d.get("date")),
    }


_BUILDERS: Final[dict[str, Callable[[Any], dict[str, Any]]]] = {
    "messages.upsert": _msg,
    "send.message": _msg,
    "messages.update": _receipt,
    "connection.update": _conn,
    "qrcode.updated": _qr,
    "contacts.upsert": _contact,
    "contacts.update": _contact,
    "chats.upsert": _chat,
    "chats.update": _chat,
    "presence.update": _presence,
    "groups.upsert": _group,
    "groups.update": _group,
    "group-participants.update": _group_participants,
    "call.upsert": _call,
}


class UnknownEvent(ValueError):
    """An envelope whose event is not one of the 14 streamed events."""

    def __init__(self, event: object) -> None:
        super().__init__(event)
        self.event = event

    def __str__(self) -> str:
        return f"unknown event {self.event!r}; expected one of {', '.join(sorted(_BUILDERS))}"


def normalise(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The view rules see for one envelope (contract §1).

    Returns:
        ``{"instance", "event", "event_id", "received_at", "data", <namespace>: {...}}``.

    Raises:
        UnknownEvent: when ``envelope["event"]`` is not a streamed event.
    """
    event = envelope.get("event")
    builder = _BUILDERS.get(event) if isinstance(event, str) else None
    if builder is None or not isinstance(event, str):
        raise UnknownEvent(event)
    data = envelope.get("data")
    return {
        "instance": envelope.get("instance"),
        "event": event,
        "event_id": envelope.get("id"),
        "received_at": envelope.get("received_at"),
        "data": data,
        NAMESPACES[event][0]: builder(data),
    }


#: One realistic raw payload per event, from the upstream reference; ``rules check``
#: renders every template against the sample of its event so a missing field is caught
#: before the rule runs.
SAMPLE_PAYLOADS: Final[dict[str, Any]] = {
    "qrcode.updated": {"count": 1, "code": "2@Kx3vQ,XyZ,abc,def", "base64": "data:image/png;"},
    "connection.update": {"instance": "shop-bot", "state": "close", "statusReason": 428},
    "messages.upsert": {
        "keyId": "3A6B1C2D3E4F5A6B7C8D",
        "keyFromMe": False,
        "pushName": "Maria Souza",
        "keyRemoteJid": "5511987654321@s.whatsapp.net",
        "keyLid": "204586724851231@lid",
        "messageType": "conversation",
        "content": {"text": "Oi, qual o horário de funcionamento?"},
        "messageTimestamp": 1747321234,
        "instanceId": 1,
        "device": "ios",
        "isGroup": False,
        "info": {"type": "notify"},
    },
    "send.message": {
        "keyId": "01JV6Z8K3QW5T7Y9B2N4M6P8R0",
        "keyFromMe": True,
        "keyRemoteJid": "5511987654321@s.whatsapp.net",
        "messageType": "extendedTextMessage",
        "content": {"text": "Olá! Funcionamos de 9h às 18h."},
        "messageTimestamp": 1747321236,
        "instanceId": 1,
        "device": "web",
        "isGroup": False,
    },
    "messages.update": {
        "remoteJid": "5511987654321@s.whatsapp.net",
        "fromMe": True,
        "id": "01JV6Z8K3QW5T7Y9B2N4M6P8R0",
        "status": "READ",
        "dateTime": "2026-05-15T13:20:41.512Z",
        "instanceId": 1,
    },
    "contacts.upsert": [
        {
            "id": 87,
            "remoteJid": "5511987654321@s.whatsapp.net",
            "pushName": "Maria Souza",
            "profilePicUrl": "https://pps.whatsapp.net/v/t61.24694-24/12345_n.jpg",
            "instanceId": 1,
        }
    ],
    "presence.update": {
        "id": "120363025246125486@g.us",
        "presences": {"99887766554433@lid": {"lastKnownPresence": "composing"}},
    },
    "chats.update": [
        {
            "remoteJid": "5511987654321@s.whatsapp.net",
            "instanceId": 1,
            "content": {"unreadCount": 1, "conversationTimestamp": 1747321234},
        }
    ],
    "chats.upsert": [
        {
            "id": 311,
            "remoteJid": "120363025246125486@g.us",
            "content": {"name": "Clientes VIP", "conversationTimestamp": 1747321000},
            "instanceId": 1,
        }
    ],
    "groups.upsert": [
        {
            "id": "120363025246125486@g.us",
            "subject": "Clientes VIP",
            "size": 2,
            "owner": "99887766554433@lid",
            "ownerPn": "5521998765432@s.whatsapp.net",
            "announce": False,
            "restrict": False,
            "participants": [
                {
                    "id": "99887766554433@lid",
                    "phoneNumber": "5521998765432@s.whatsapp.net",
                    "admin": "superadmin",
                },
                {
                    "id": "204586724851231@lid",
                    "phoneNumber": "5511987654321@s.whatsapp.net",
                    "admin": None,
                },
            ],
            "author": "99887766554433@lid",
            "authorPn": "5521998765432@s.whatsapp.net",
        }
    ],
    "groups.update": [
        {
            "id": "120363025246125486@g.us",
            "subject": "Clientes VIP 2026",
            "author": "99887766554433@lid",
            "authorPn": "5521998765432@s.whatsapp.net",
        }
    ],
    "group-participants.update": {
        "id": "120363025246125486@g.us",
        "author": "99887766554433@lid",
        "authorPn": "5521998765432@s.whatsapp.net",
        "participants": [
            {
                "id": "204586724851231@lid",
                "phoneNumber": "5511987654321@s.whatsapp.net",
                "admin": None,
            }
        ],
        "action": "add",
    },
    "call.upsert": {
        "chatId": "204586724851231@lid",
        "from": "204586724851231@lid",
        "callerPn": "5511987654321@s.whatsapp.net",
        "id": "8F2D6C1B0A9E7D5C3B1A",
        "date": "2026-05-15T13:25:00.000Z",
        "isVideo": False,
        "isGroup": False,
        "status": "offer",
        "offline": False,
    },
}
SAMPLE_PAYLOADS["contacts.update"] = SAMPLE_PAYLOADS["contacts.upsert"]


def sample_envelope(event: str, instance: str = "shop-bot") -> dict[str, Any]:
    """A realistic envelope of ``event`` (for check-time rendering and docs)."""
    return {
        "id": "01JV6Z8K3QW5T7Y9B2N4M6P8R0",
        "instance": instance,
        "event": event,
        "received_at": "2026-05-15T13:20:40.000Z",
        "source": {"gateway": "localhost:8084", "connection": "sample", "seq": 1},
        "data": SAMPLE_PAYLOADS[event],
    }
