"""Realistic, seeded payloads for the 13 events CodeChat sends over its socket.

Shapes follow CodeChat ``whatsapp-api`` 1.3.x with Baileys 7.0.0-rc10 (see
``reference/codechat-upstream.md`` §2): message rows with ``keyId``/``keyRemoteJid``,
protobuf ``Buffer`` fields as ``{"type":"Buffer","data":[...]}``, uint64 fields as protobufjs
``Long`` objects, one-element Prisma row arrays for contacts and chats, v7 participant objects
(v6 strings behind ``participants_style="v6"``), real Baileys disconnect codes.

Pure: every value comes from the seeded ``random.Random`` and the ``now`` passed in, so the
same seed gives the same run.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from worker.events import SENT_EVENTS
from worker.simulator.ids import message_id, ulid

ParticipantsStyle = Literal["v7", "v6"]

_FIRST: Final = (
    "Maria", "João", "Ana", "Pedro", "Juliana", "Lucas", "Fernanda", "Rafael", "Camila",
    "Bruno", "Larissa", "Gustavo", "Patrícia", "Diego", "Beatriz", "Thiago",
)  # fmt: skip
_LAST: Final = (
    "Souza", "Silva", "Oliveira", "Santos", "Pereira", "Lima", "Costa", "Ferreira",
    "Almeida", "Ribeiro", "Carvalho", "Gomes",
)  # fmt: skip
_TEXTS: Final = (
    "Oi, qual o horário de funcionamento?",
    "Bom dia! Vocês entregam no sábado?",
    "Quanto custa o frete para Campinas?",
    "Meu pedido ainda não chegou 😕",
    "Obrigado pelo atendimento!",
    "Pode me mandar o catálogo?",
    "Vocês aceitam pix?",
    "Preciso trocar um produto, como faço?",
    "ok",
    "Tá bom, aguardo o retorno",
    "Qual o prazo de entrega?",
    "!regras",
    "Alguém sabe se a loja abre feriado?",
    "Segue o comprovante",
)
_GROUP_SUBJECTS: Final = ("Clientes VIP", "Promoções da Semana", "Suporte Loja", "Atacado SP")
_CAPTIONS: Final = ("segue o comprovante", "foto do produto", "", "olha isso")
_REACTIONS: Final = ("👍", "❤️", "😂", "🙏", "😮")

_SENDER_IDS: Final = (("3A", 20), ("3EB0", 22), ("", 32))

#: Baileys ``DisconnectReason`` codes CodeChat reports as ``statusReason`` on close.
CLOSE_REASONS: Final = (428, 408, 440, 401, 515)
MESSAGE_STATUSES: Final = ("SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED", "ERROR", "PENDING")
CALL_STATUSES: Final = ("offer", "ringing", "timeout", "reject", "accept", "terminate")
PRESENCES: Final = ("available", "unavailable", "composing", "recording", "paused")


def iso(now: float) -> str:
    """JavaScript ``Date.prototype.toISOString``: UTC, milliseconds, ``Z``."""
    dt = datetime.fromtimestamp(now, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def buffer_json(data: bytes) -> dict[str, Any]:
    """Node ``Buffer.toJSON()``, how protobuf bytes fields look after ``JSON.stringify``."""
    return {"type": "Buffer", "data": list(data)}


def long_json(value: int) -> dict[str, Any]:
    """A protobufjs ``Long`` (uint64) as ``JSON.stringify`` renders it."""
    return {"low": value & 0xFFFFFFFF, "high": value >> 32, "unsigned": True}


def device_of(key_id: str) -> str:
    """CodeChat's ``device`` field: ``web`` for ULIDs, else Baileys ``getDevice(id)``."""
    if len(key_id) == 26 and key_id.isalnum() and key_id.isupper():
        return "web"
    if len(key_id) == 20 and key_id.startswith("3A"):
        return "ios"
    if len(key_id) == 22 and key_id.startswith("3E"):
        return "web"
    if len(key_id) in (21, 32):
        return "android"
    if key_id.startswith("3F") or len(key_id) == 18:
        return "desktop"
    return "unknown"


@dataclass(frozen=True)
class Contact:
    name: str
    phone: str  # digits only
    lid: str  # digits only

    @property
    def jid(self) -> str:
        return f"{self.phone}@s.whatsapp.net"

    @property
    def lid_jid(self) -> str:
        return f"{self.lid}@lid"


@dataclass(frozen=True)
class Group:
    jid: str
    subject: str
    owner: Contact
    members: tuple[Contact, ...]
    created: int


def _contact(rng: random.Random) -> Contact:
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    ddd = rng.choice(("11", "21", "31", "41", "51", "61", "71", "81"))
    phone = f"55{ddd}9{rng.randrange(10_000_000, 99_999_999)}"
    lid = str(rng.randrange(10**13, 10**15))
    return Contact(name, phone, lid)


class PayloadFactory:
    """Generates one instance's events from a small seeded world of contacts and groups.

    Args:
        instance_name: the instance (``connection.update`` carries it).
        instance_id: the numeric row id message events carry as ``instanceId``.
        seed: the random seed; the same seed and call sequence give the same payloads.
        participants_style: ``"v7"`` (objects, what 1.3.x sends) or ``"v6"`` (strings).
    """

    def __init__(
        self,
        instance_name: str,
        instance_id: int,
        seed: int = 0,
        participants_style: ParticipantsStyle = "v7",
    ) -> None:
        self.instance_name = instance_name
        self.instance_id = instance_id
        self.participants_style = participants_style
        self.rng = random.Random(f"{seed}:{instance_name}")
        self.me = _contact(self.rng)
        self.contacts = tuple(_contact(self.rng) for _ in range(12))
        base_created = 1_747_000_000
        self.groups = tuple(
            Group(
                jid=f"120363{self.rng.randrange(10**11, 10**12)}@g.us",
                subject=subject,
                owner=self.contacts[i],
                members=(self.me, *self.rng.sample(self.contacts, 4)),
                created=base_created + self.rng.randrange(0, 10**6),
            )
            for i, subject in enumerate(self.rng.sample(_GROUP_SUBJECTS, 3))
        )
        self._db_id = 5000
        self._qr_count = 0
        self._connection = "open"

    # ------------------------------------------------------------------ helpers
    def _next_db_id(self) -> int:
        self._db_id += 1
        return self._db_id

    def _who(self) -> Contact:
        return self.rng.choice(self.contacts)

    def _bytes(self, n: int) -> bytes:
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    def _participant(self, c: Contact, admin: str | None) -> dict[str, Any] | str:
        if self.participants_style == "v6":
            return c.jid
        return {"id": c.lid_jid, "phoneNumber": c.jid, "admin": admin}

    # ------------------------------------------------------------------ events
    def generate(self, event: str, now: float) -> Any:
        """A fresh payload for ``event`` (one of the 13 sent events)."""
        try:
            make = _GENERATORS[event]
        except KeyError:
            raise ValueError(
                f"no payloads for event {event!r}: the gateway sends only {', '.join(SENT_EVENTS)}"
            ) from None
        return make(self, now)

    def qrcode_updated(self, now: float) -> dict[str, Any]:
        self._qr_count += 1
        refs = ",".join(base64.b64encode(self._bytes(n)).decode() for n in (48, 32, 32, 16))
        png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + self._bytes(180)).decode()
        payload: dict[str, Any] = {"count": self._qr_count}
        if self.rng.random() < 0.2:
            # "paringCode" is upstream's spelling.
            payload["paringCode"] = "".join(
                self.rng.choice("ABCDEFGHJKLMNPQRSTVWXYZ23456789") for _ in range(8)
            )
        payload["code"] = f"2@{refs}"
        payload["base64"] = f"data:image/png;base64,{png}"
        return payload

    def connection_update(self, now: float) -> dict[str, Any]:
        # Walk the states upstream goes through: open -> close(code) -> connecting -> open.
        if self._connection == "open":
            self._connection = "close"
            reason = self.rng.choice(CLOSE_REASONS)
        elif self._connection == "close":
            self._connection = "connecting"
            reason = 200
        else:
            self._connection = "open"
            reason = 200
        return {"instance": self.instance_name, "state": self._connection, "statusReason": reason}

    def connection(self, state: str, status_reason: int) -> dict[str, Any]:
        """A ``connection.update`` with the given state and Baileys status code."""
        return {"instance": self.instance_name, "state": state, "statusReason": status_reason}

    def messages_upsert(self, now: float) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.55:
            return self.received_text(now)
        if roll < 0.80:
            return self.group_text(now)
        if roll < 0.90:
            return self.received_image(now)
        if roll < 0.96:
            return self.reaction(now)
        return self.revoke(now)

    def _message_row(
        self,
        now: float,
        sender: Contact,
        message_type: str,
        content: dict[str, Any],
        *,
        group: Group | None = None,
        key_id: str | None = None,
    ) -> dict[str, Any]:
        if key_id is None:
            # The sender's device shows in the id: iOS "3A" + 18, web "3EB0" + 18,
            # Android 32 hex digits (Baileys getDevice).
            prefix, length = self.rng.choice(_SENDER_IDS)
            key_id = message_id(self.rng, prefix, length)
        row: dict[str, Any] = {"keyId": key_id, "keyFromMe": False, "pushName": sender.name}
        if group is None:
            row["keyRemoteJid"] = sender.jid
            row["keyLid"] = sender.lid_jid
        else:
            row["keyRemoteJid"] = group.jid
            row["keyParticipant"] = sender.jid
            row["keyParticipantLid"] = sender.lid_jid
        row["messageType"] = message_type
        row["content"] = content
        row["messageTimestamp"] = int(now)
        row["instanceId"] = self.instance_id
        row["device"] = device_of(key_id)
        row["isGroup"] = group is not None
        row["id"] = self._next_db_id()
        row["info"] = {"type": "notify"}
        return row

    def received_text(self, now: float, text: str | None = None) -> dict[str, Any]:
        """A direct text from a contact (``conversation``)."""
        return self._message_row(
            now, self._who(), "conversation", {"text": text or self.rng.choice(_TEXTS)}
        )

    def group_text(self, now: float, text: str | None = None) -> dict[str, Any]:
        """A text in one of the instance's groups (``extendedTextMessage``)."""
        group = self.rng.choice(self.groups)
        sender = self.rng.choice(group.members[1:])
        content = {"text": text or self.rng.choice(_TEXTS), "contextInfo": {"expiration": 0}}
        return self._message_row(now, sender, "extendedTextMessage", content, group=group)

    def received_image(self, now: float) -> dict[str, Any]:
        """An image with Buffer-encoded keys and a Long ``fileLength``."""
        sender = self._who()
        path = f"/o1/v/t62.7118-24/f2/m231/{self.rng.getrandbits(64):x}?ccb=9-4&oh=01_Q5Aa"
        media_key = self._bytes(32)
        content: dict[str, Any] = {
            "url": f"https://mmg.whatsapp.net{path}&mms3=true",
            "mimetype": "image/jpeg",
            "caption": self.rng.choice(_CAPTIONS),
            "fileSha256": buffer_json(self._bytes(32)),
            "fileLength": long_json(self.rng.randrange(20_000, 2_000_000)),
            "height": 1280,
            "width": 960,
            "mediaKey": buffer_json(media_key),
            "fileEncSha256": buffer_json(self._bytes(32)),
            "directPath": path,
            "mediaKeyTimestamp": long_json(int(now) - 2),
            "jpegThumbnail": buffer_json(b"\xff\xd8\xff\xe0" + self._bytes(60)),
        }
        row = self._message_row(now, sender, "imageMessage", content)
        props = {"mediaKey": base64.b64encode(media_key).decode(), "directPath": path}
        query = base64.b64encode(orjson.dumps(props)).decode()
        row["media"] = {"path": f"/chat/public/image/download?q={query}"}
        return row

    def reaction(self, now: float) -> dict[str, Any]:
        sender = self._who()
        content = {
            "key": {"remoteJid": sender.jid, "fromMe": True, "id": message_id(self.rng)},
            "text": self.rng.choice(_REACTIONS),
            "senderTimestampMs": long_json(int(now * 1000)),
        }
        return self._message_row(now, sender, "reactionMessage", content)

    def revoke(self, now: float) -> dict[str, Any]:
        """A deleted message: ``protocolMessage`` with ``type`` as its enum name."""
        sender = self._who()
        content = {
            "key": {"remoteJid": sender.jid, "fromMe": False, "id": message_id(self.rng, "3A")},
            "type": "REVOKE",
        }
        return self._message_row(now, sender, "protocolMessage", content)

    def messages_update(self, now: float) -> dict[str, Any]:
        who = self._who()
        payload: dict[str, Any] = {
            "remoteJid": who.jid,
            "fromMe": True,
            "id": ulid(int(now * 1000), self.rng),
        }
        if self.rng.random() < 0.9:
            payload["status"] = self.rng.choice(MESSAGE_STATUSES[:4])
        payload["dateTime"] = iso(now)
        payload["instanceId"] = self.instance_id
        return payload

    def sent_message(
        self,
        now: float,
        remote_jid: str,
        text: str,
        key_id: str,
        *,
        quoted: dict[str, Any] | None = None,
        external_attributes: Any = None,
    ) -> dict[str, Any]:
        """``messageSent``: the REST response, the ``send.message`` frame and first echo."""
        content: dict[str, Any] = {"text": text}
        if quoted is not None:
            content["contextInfo"] = quoted
        row: dict[str, Any] = {
            "keyId": key_id,
            "keyFromMe": True,
            "keyRemoteJid": remote_jid,
            "messageType": "extendedTextMessage",
            "content": content,
            "messageTimestamp": int(now),
            "instanceId": self.instance_id,
            "device": "web",
            "isGroup": remote_jid.endswith("@g.us"),
            "id": self._next_db_id(),
        }
        if external_attributes is not None:
            row["externalAttributes"] = external_attributes
        return row

    def own_append_echo(self, sent: dict[str, Any]) -> dict[str, Any]:
        """Baileys' ``emitOwnEvents`` re-upsert of a sent text, through the normal handler:
        ``info.type: "append"``, a new DB row, no ``externalAttributes``."""
        row: dict[str, Any] = {
            "keyId": sent["keyId"],
            "keyFromMe": True,
            "pushName": self.me.name,
            "keyRemoteJid": sent["keyRemoteJid"],
            "messageType": sent["messageType"],
            "content": sent["content"],
            "messageTimestamp": sent["messageTimestamp"],
            "instanceId": self.instance_id,
            "device": device_of(sent["keyId"]),
            "isGroup": sent["isGroup"],
            "id": self._next_db_id(),
            "info": {"type": "append"},
        }
        return row

    def send_message(self, now: float) -> dict[str, Any]:
        who = self._who()
        return self.sent_message(
            now, who.jid, self.rng.choice(_TEXTS), ulid(int(now * 1000), self.rng)
        )

    def _contact_row(self, c: Contact, now: float) -> dict[str, Any]:
        stamp = iso(now)
        return {
            "id": self.rng.randrange(1, 100_000),
            "remoteJid": c.jid,
            "pushName": c.name,
            "profilePicUrl": (
                f"https://pps.whatsapp.net/v/t61.24694-24/{self.rng.getrandbits(40)}_n.jpg"
            ),
            "createdAt": stamp,
            "updatedAt": stamp,
            "instanceId": self.instance_id,
        }

    def contacts_upsert(self, now: float) -> list[dict[str, Any]]:
        return [self._contact_row(self._who(), now)]

    def presence_update(self, now: float) -> dict[str, Any]:
        if self.rng.random() < 0.5:
            group = self.rng.choice(self.groups)
            chat, who = group.jid, self.rng.choice(group.members[1:])
        else:
            who = self._who()
            chat = who.jid
        presence: dict[str, Any] = {"lastKnownPresence": self.rng.choice(PRESENCES)}
        if presence["lastKnownPresence"] == "unavailable":
            presence["lastSeen"] = int(now) - self.rng.randrange(0, 3600)
        return {"id": chat, "presences": {who.lid_jid: presence}}

    def chats_update(self, now: float) -> list[dict[str, Any]]:
        who = self._who()
        content = {"unreadCount": self.rng.randrange(0, 5), "conversationTimestamp": int(now)}
        return [{"remoteJid": who.jid, "instanceId": self.instance_id, "content": content}]

    def chats_upsert(self, now: float) -> list[dict[str, Any]]:
        stamp = iso(now)
        if self.rng.random() < 0.4:
            group = self.rng.choice(self.groups)
            jid, content = group.jid, {"name": group.subject, "conversationTimestamp": int(now)}
        else:
            jid, content = self._who().jid, {"conversationTimestamp": int(now)}
        return [
            {
                "id": self.rng.randrange(1, 10_000),
                "remoteJid": jid,
                "content": content,
                "createdAt": stamp,
                "updatedAt": stamp,
                "instanceId": self.instance_id,
            }
        ]

    def group_metadata(self, group: Group) -> dict[str, Any]:
        """Baileys ``GroupMetadata`` (``findGroupInfos`` returns it; ``groups.upsert`` lists it)."""
        admins = {group.owner.phone: "superadmin", group.members[0].phone: "admin"}
        members = (group.owner, *[m for m in group.members if m != group.owner])
        return {
            "id": group.jid,
            "addressingMode": "lid",
            "subject": group.subject,
            "subjectOwner": group.owner.lid_jid,
            "subjectOwnerPn": group.owner.jid,
            "subjectTime": group.created,
            "size": len(members),
            "creation": group.created,
            "owner": group.owner.lid_jid,
            "ownerPn": group.owner.jid,
            "desc": f"Grupo {group.subject}",
            "descId": message_id(random.Random(group.jid), "", 16),
            "restrict": False,
            "announce": False,
            "isCommunity": False,
            "isCommunityAnnounce": False,
            "joinApprovalMode": False,
            "memberAddMode": False,
            "participants": [
                {"id": m.lid_jid, "phoneNumber": m.jid, "admin": admins.get(m.phone)}
                for m in members
            ],
        }

    def groups_upsert(self, now: float) -> list[dict[str, Any]]:
        group = self.rng.choice(self.groups)
        meta = self.group_metadata(group)
        meta["author"] = group.owner.lid_jid
        meta["authorPn"] = group.owner.jid
        return [meta]

    def groups_update(self, now: float) -> list[dict[str, Any]]:
        group = self.rng.choice(self.groups)
        field = self.rng.choice(("subject", "desc", "announce", "restrict", "memberAddMode"))
        value: Any = {
            "subject": f"{group.subject} {datetime.fromtimestamp(now, tz=UTC).year}",
            "desc": "Regras: sem spam, sem correntes.",
        }.get(field, self.rng.random() < 0.5)
        return [
            {
                "id": group.jid,
                field: value,
                "author": group.owner.lid_jid,
                "authorPn": group.owner.jid,
            }
        ]

    def group_participants_update(self, now: float) -> dict[str, Any]:
        group = self.rng.choice(self.groups)
        action = self.rng.choice(("add", "add", "remove", "promote", "demote"))
        joining = self.rng.choice(self.contacts)
        author = group.owner
        if action == "remove" and self.rng.random() < 0.3:
            author = joining  # a self-leave: the author is the participant
        admin = "admin" if action == "promote" else None
        return self.participants_event(group.jid, action, [joining], author, admin)

    def participants_event(
        self,
        group_jid: str,
        action: str,
        who: list[Contact],
        author: Contact,
        admin: str | None = None,
    ) -> dict[str, Any]:
        """A ``group-participants.update`` in the configured participant style."""
        v6 = self.participants_style == "v6"
        payload: dict[str, Any] = {"id": group_jid, "author": author.jid if v6 else author.lid_jid}
        if not v6:
            payload["authorPn"] = author.jid
        payload["participants"] = [self._participant(c, admin) for c in who]
        payload["action"] = action
        return payload

    def call_upsert(self, now: float) -> dict[str, Any]:
        who = self._who()
        return {
            "chatId": who.lid_jid,
            "from": who.lid_jid,
            "callerPn": who.jid,
            "id": message_id(self.rng, "", 32),
            "date": iso(now),
            "isVideo": self.rng.random() < 0.2,
            "isGroup": False,
            "status": self.rng.choice(CALL_STATUSES[:2]),
            "offline": False,
        }


_GENERATORS: Final = {
    "qrcode.updated": PayloadFactory.qrcode_updated,
    "connection.update": PayloadFactory.connection_update,
    "messages.upsert": PayloadFactory.messages_upsert,
    "messages.update": PayloadFactory.messages_update,
    "send.message": PayloadFactory.send_message,
    "contacts.upsert": PayloadFactory.contacts_upsert,
    "presence.update": PayloadFactory.presence_update,
    "chats.update": PayloadFactory.chats_update,
    "chats.upsert": PayloadFactory.chats_upsert,
    "groups.upsert": PayloadFactory.groups_upsert,
    "groups.update": PayloadFactory.groups_update,
    "group-participants.update": PayloadFactory.group_participants_update,
    "call.upsert": PayloadFactory.call_upsert,
}
