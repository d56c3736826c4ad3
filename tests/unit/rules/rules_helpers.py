"""Shared helpers for the rule engine's unit tests: envelopes, payloads, a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from worker.rules import RuleBundle, evaluate, fire_due
from worker.rules.records import Evaluation

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)


def envelope(
    event: str, data: Any, *, instance: str = "shop-bot", eid: str = "E1"
) -> dict[str, Any]:
    return {
        "id": eid,
        "instance": instance,
        "event": event,
        "received_at": "2026-11-25T20:00:00.000Z",
        "source": {"gateway": "test", "connection": "c", "seq": 1},
        "data": data,
    }


def dm(
    text: str = "oi",
    *,
    chat: str = "5511987654321@s.whatsapp.net",
    key_id: str = "K1",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "keyId": key_id,
        "keyFromMe": False,
        "pushName": "Maria",
        "keyRemoteJid": chat,
        "messageType": "conversation",
        "content": {"text": text},
        "isGroup": False,
        "info": {"type": "notify"},
        **extra,
    }


def conn(state: str, reason: int = 428) -> dict[str, Any]:
    return {"instance": "shop-bot", "state": state, "statusReason": reason}


class Runner:
    """Feeds events to a bundle on a virtual clock, applying state changes like the worker."""

    def __init__(self, bundle: RuleBundle) -> None:
        self.bundle = bundle
        self.state: dict[str, Any] = {}
        self.n = 0

    def apply(self, ev: Evaluation) -> Evaluation:
        for key, value in ev.changes.items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        return ev

    def send(self, event: str, data: Any, at: float = 0.0, **kw: Any) -> Evaluation:
        self.n += 1
        env = envelope(event, data, eid=kw.pop("eid", f"E{self.n}"), **kw)
        return self.apply(evaluate(self.bundle, self.state, env, T0 + timedelta(seconds=at)))

    def tick(self, at: float) -> Evaluation:
        return self.apply(fire_due(self.bundle, self.state, T0 + timedelta(seconds=at)))
