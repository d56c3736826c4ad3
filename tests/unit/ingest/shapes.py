"""One payload per streamed event, shaped as CodeChat 1.3 sends them (upstream notes §2)."""

from __future__ import annotations

from typing import Any

DM = "5511987654321@s.whatsapp.net"
GROUP = "120363025246125486@g.us"

SHAPES: dict[str, Any] = {
    "qrcode.updated": {"count": 1, "code": "2@Kx3vQ", "base64": "data:image/png;base64,iVBO"},
    "connection.update": {"instance": "shop-bot", "state": "open", "statusReason": 200},
    "messages.upsert": {
        "keyId": "3A6B1C2D3E4F5A6B7C8D",
        "keyFromMe": False,
        "pushName": "Maria Souza",
        "keyRemoteJid": DM,
        "keyLid": "204586724851231@lid",
        "messageType": "conversation",
        "content": {"text": "Oi, qual o horário de funcionamento?"},
        "messageTimestamp": 1747321234,
        "instanceId": 1,
        "device": "ios",
        "isGroup": False,
        "info": {"type": "notify"},
    },
    "messages.update": {
        "remoteJid": DM,
        "fromMe": True,
        "id": "01JV6Z8K3QW5T7Y9B2N4M6P8R0",
        "status": "READ",
        "dateTime": "2026-05-15T13:20:41.512Z",
        "instanceId": 1,
    },
    "send.message": {
        "keyId": "01JV6Z8K3QW5T7Y9B2N4M6P8R0",
        "keyFromMe": True,
        "keyRemoteJid": DM,
        "messageType": "extendedTextMessage",
        "content": {"text": "Olá! Funcionamos de 9h às 18h."},
        "messageTimestamp": 1747321236,
        "instanceId": 1,
        "device": "web",
        "isGroup": False,
    },
    "contacts.upsert": [
        {
            "id": 87,
            "remoteJid": DM,
            "pushName": "Maria Souza",
            "profilePicUrl": None,
            "createdAt": "2026-05-15T13:20:40.101Z",
            "updatedAt": "2026-05-15T13:20:40.101Z",
            "instanceId": 1,
        }
    ],
    "presence.update": {
        "id": GROUP,
        "presences": {"99887766554433@lid": {"lastKnownPresence": "composing"}},
    },
    "chats.update": [
        {"remoteJid": DM, "instanceId": 1, "content": {"unreadCount": 1}},
        {"remoteJid": GROUP, "instanceId": 1, "content": {"unreadCount": 3}},
    ],
    "chats.upsert": [
        {
            "id": 311,
            "remoteJid": GROUP,
            "content": {"name": "Clientes VIP"},
            "createdAt": "2026-05-15T13:16:40.000Z",
            "updatedAt": "2026-05-15T13:16:40.000Z",
            "instanceId": 1,
        }
    ],
    "groups.upsert": [
        {
            "id": GROUP,
            "subject": "Clientes VIP",
            "participants": [
                {
                    "id": "99887766554433@lid",
                    "phoneNumber": "5521998765432@s.whatsapp.net",
                    "admin": "superadmin",
                }
            ],
        }
    ],
    "groups.update": [{"id": GROUP, "subject": "Clientes VIP 2026", "author": "998@lid"}],
    "group-participants.update": {
        "id": GROUP,
        "author": "99887766554433@lid",
        "participants": [{"id": "204586724851231@lid", "phoneNumber": DM, "admin": None}],
        "action": "add",
    },
    "call.upsert": {
        "chatId": "204586724851231@lid",
        "from": "204586724851231@lid",
        "id": "8F2D6C1B0A9E7D5C3B1A",
        "date": "2026-05-15T13:25:00.000Z",
        "status": "offer",
        "offline": False,
    },
}

#: The key each shape must get for instance "shop-bot".
EXPECTED_KEYS: dict[str, str] = {
    "qrcode.updated": "shop-bot",
    "connection.update": "shop-bot",
    "messages.upsert": f"shop-bot:{DM}",
    "messages.update": f"shop-bot:{DM}",
    "send.message": f"shop-bot:{DM}",
    "contacts.upsert": "shop-bot",
    "presence.update": f"shop-bot:{GROUP}",
    "chats.update": f"shop-bot:{DM}",
    "chats.upsert": f"shop-bot:{GROUP}",
    "groups.upsert": f"shop-bot:{GROUP}",
    "groups.update": f"shop-bot:{GROUP}",
    "group-participants.update": f"shop-bot:{GROUP}",
    "call.upsert": "shop-bot",
}
