"""Pure rule-evaluation throughput: 50 rules over a realistic event mix, on one core.

Run: ``.venv/bin/python bench/bench_rules.py [--events N] [--rounds R]``. Prints a markdown
table. It measures ``evaluate()`` (normalisation, conditions, state primitives, rendering of the
actions that fire) plus what a caller does with the result (applying the state changes to
a dict, counting every rule's outcome as per-rule metrics would), with no Kafka: the ceiling the processing stage works
under. Timing is CPU time of this process, so a busy machine does not count against it.
Target: 20,000 events/s.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from worker.rules import RuleBundle, evaluate, load_bundle

SHIPPED = Path(__file__).resolve().parents[1] / "rules"
TARGET = 20_000

WORDS = [
    "pedido",
    "entrega",
    "boleto",
    "pix",
    "troca",
    "garantia",
    "frete",
    "cupom",
    "nota",
    "prazo",
]
TEXTS = [
    "Oi, qual o horário de funcionamento?",
    "Bom dia! Meu pedido ainda não chegou",
    "Quero trocar o tamanho da camiseta",
    "Vocês aceitam pix?",
    "obrigada!!",
    "Qual o prazo de entrega para Curitiba?",
    "É URGENTE, preciso cancelar a compra",
    "👍",
    "Segue o comprovante do boleto",
    "Tem cupom de desconto?",
]


def extra_rules() -> str:
    """44 rules in the styles ops write; with the 6 shipped ones, 50."""
    rules: list[str] = []
    for i, word in enumerate(WORDS):  # keyword routing with RE2 (10)
        rules.append(
            f"""  - id: route-{word}
    on: messages.upsert
    when:
      - not msg.is_group
      - msg.kind == "text"
      - msg.text is search("\\\\b{word}s?\\\\b", ignorecase=true)
    throttle: {{once_within: 1h, key: [instance, msg.chat]}}
    actions:
      - kafka.produce: {{topic: crm.{word}, key: "{{{{ msg.chat }}}}", value: {{text: "{{{{ msg.text }}}}", n: "{i}"}}}}
"""
        )
    for kind in [
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contact",
        "reaction",
    ]:
        rules.append(
            f"""  - id: media-{kind}
    on: messages.upsert
    when: msg.kind == "{kind}" and not msg.is_group
    actions:
      - log: {{message: "{kind} from {{{{ msg.sender | phone }}}}"}}
"""
        )
    for i in range(6):  # group moderation
        rules.append(
            f"""  - id: group-mod-{i}
    on: messages.upsert
    when: msg.is_group and msg.text | length > {200 + i * 50}
    throttle: {{once_within: 10m, key: [instance, msg.chat, msg.sender]}}
    actions:
      - log: {{level: warning, message: "long message in {{{{ msg.chat }}}}"}}
"""
        )
    for i in range(4):
        rules.append(
            f"""  - id: vip-{i}
    on: messages.upsert
    when: msg.sender_phone in vars.vips and msg.push_name != ""
    mode: shadow
    throttle: {{once_within: {i + 1}h}}
    actions:
      - notify: {{channel: bench, text: "VIP {{{{ msg.push_name }}}}"}}
"""
        )
    for status in ["READ", "DELIVERY_ACK", "ERROR", "PLAYED"]:
        rules.append(
            f"""  - id: receipt-{status.lower().replace("_", "-")}
    on: messages.update
    when: msg.status == "{status}" and msg.from_me
    window: {{count: 50, within: 1m}}
    actions:
      - log: {{message: "{status} x{{{{ window.count }}}}"}}
"""
        )
    for i in range(3):
        rules.append(
            f"""  - id: call-{i}
    on: call.upsert
    when: call.status == "offer" and not call.is_group
    throttle: {{once_within: 5m, key: [instance, call.caller]}}
    actions:
      - log: {{message: "call from {{{{ call.caller_phone }}}}"}}
"""
        )
    for i in range(3):
        rules.append(
            f"""  - id: group-watch-{i}
    on: group-participants.update
    when: group.action in ["remove", "demote"]
    for_each: group.participants
    actions:
      - log: {{message: "{{{{ group.action }}}} {{{{ item.jid }}}}"}}
"""
        )
    rules.append(
        """  - id: typing
    on: presence.update
    when: presence.state == "composing"
    window: {count: 100, within: 1m}
    actions:
      - log: {message: "busy chat"}
"""
    )
    rules.append(
        """  - id: sends
    on: send.message
    from_me: allow
    window: {count: 1000, within: 1m}
    actions:
      - log: {message: "busy sender"}
"""
    )
    rules.append(
        """  - id: unread
    on: chats.update
    when: chat.unread is not none and chat.unread > 20
    actions:
      - log: {message: "unread pile-up"}
"""
    )
    rules.append(
        """  - id: conn-log
    on: connection.update
    actions:
      - log: {message: "{{ instance }} {{ conn.state }}"}
"""
    )
    rules.append(
        """  - id: new-contact
    on: contacts.upsert
    when: contact.phone is not none
    throttle: {once_within: 30d, key: [instance, contact.jid]}
    actions:
      - kafka.produce: {topic: crm.contacts, key: "{{ contact.jid }}", value: {name: "{{ contact.push_name }}"}}
"""
    )
    rules.append(
        """  - id: qr-storm
    on: qrcode.updated
    when: qr.count > 3
    actions:
      - log: {message: "qr {{ qr.count }}"}
"""
    )
    head = (
        "vars:\n  vips: ['5511900000001', '5511900000002', '5511900000003']\n"
        "channels:\n  bench: {type: webhook, url: '${env:BENCH_WEBHOOK}'}\nrules:\n"
    )
    return head + "".join(rules)


def make_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A mix weighted like a shop number's traffic: mostly messages and receipts."""
    rnd = random.Random(seed)
    chats = [f"55119{rnd.randrange(10**7, 10**8)}@s.whatsapp.net" for _ in range(400)]
    groups = [f"1203630{rnd.randrange(10**10, 10**11)}@g.us" for _ in range(20)]
    kinds = [
        ("conversation", 50),
        ("extendedTextMessage", 20),
        ("imageMessage", 8),
        ("audioMessage", 8),
        ("stickerMessage", 4),
        ("reactionMessage", 4),
        ("documentMessage", 3),
        ("videoMessage", 3),
    ]
    type_names = [k for k, _ in kinds]
    type_weights = [w for _, w in kinds]
    mix = [
        ("messages.upsert", 62),
        ("messages.update", 18),
        ("presence.update", 6),
        ("send.message", 5),
        ("chats.update", 4),
        ("connection.update", 2),
        ("group-participants.update", 1),
        ("call.upsert", 1),
        ("contacts.upsert", 1),
    ]
    names = [m for m, _ in mix]
    weights = [w for _, w in mix]
    out = []
    for i in range(n):
        event = rnd.choices(names, weights)[0]
        instance = f"shop-{rnd.randrange(3)}"
        data: Any
        if event in ("messages.upsert", "send.message"):
            in_group = rnd.random() < 0.25
            chat = rnd.choice(groups) if in_group else rnd.choice(chats)
            mtype = rnd.choices(type_names, type_weights)[0]
            text = rnd.choice(TEXTS)
            content = (
                {"text": text}
                if mtype in ("conversation", "extendedTextMessage")
                else {"caption": text}
            )
            from_me = event == "send.message" or rnd.random() < 0.1
            data = {
                "keyId": f"3A{i:018X}",
                "keyFromMe": from_me,
                "pushName": "Cliente",
                "keyRemoteJid": chat,
                "messageType": mtype,
                "content": content,
                "messageTimestamp": 1747321234 + i,
                "instanceId": 1,
                "device": "android",
                "isGroup": in_group,
                "info": {"type": "append" if from_me else "notify"},
            }
            if in_group:
                data["keyParticipant"] = rnd.choice(chats)
        elif event == "messages.update":
            data = {
                "remoteJid": rnd.choice(chats),
                "fromMe": True,
                "id": f"01J{i:023X}",
                "status": rnd.choice(["SERVER_ACK", "DELIVERY_ACK", "READ"]),
                "instanceId": 1,
            }
        elif event == "presence.update":
            chat = rnd.choice(chats)
            data = {
                "id": chat,
                "presences": {
                    chat: {"lastKnownPresence": rnd.choice(["composing", "paused", "available"])}
                },
            }
        elif event == "chats.update":
            data = [
                {
                    "remoteJid": rnd.choice(chats),
                    "instanceId": 1,
                    "content": {"unreadCount": rnd.randrange(30)},
                }
            ]
        elif event == "connection.update":
            data = {
                "instance": instance,
                "state": rnd.choice(["open", "close", "connecting"]),
                "statusReason": rnd.choice([200, 428, 408]),
            }
        elif event == "group-participants.update":
            data = {
                "id": rnd.choice(groups),
                "author": rnd.choice(chats),
                "action": rnd.choice(["add", "remove", "promote"]),
                "participants": [
                    {
                        "id": f"{rnd.randrange(10**14)}@lid",
                        "phoneNumber": rnd.choice(chats),
                        "admin": None,
                    }
                ],
            }
        elif event == "call.upsert":
            data = {
                "chatId": rnd.choice(chats),
                "from": rnd.choice(chats),
                "id": f"C{i}",
                "status": "offer",
                "isGroup": False,
                "offline": False,
                "date": "2026-05-15T13:25:00.000Z",
            }
        else:
            data = [
                {"id": i, "remoteJid": rnd.choice(chats), "pushName": "Cliente", "instanceId": 1}
            ]
        out.append(
            {
                "id": f"01JBENCH{i:018d}",
                "instance": instance,
                "event": event,
                "received_at": "2026-11-25T20:00:00.000Z",
                "source": {"gateway": "bench", "connection": "c", "seq": i + 1},
                "data": data,
            }
        )
    return out


def run_once(
    bundle: RuleBundle, events: list[dict[str, Any]], start: datetime
) -> tuple[float, int, Counter[str]]:
    state: dict[str, Any] = {}
    actions = 0
    outcomes: Counter[str] = Counter()
    step = timedelta(milliseconds=20)  # 50 events/s of event time: throttles and windows engage
    now = start
    # CPU time of this process: the machine may be shared, and what matters is what one
    # core can do, not how long we waited for it.
    began = time.process_time()
    for envelope in events:
        evaluation = evaluate(bundle, state, envelope, now)
        for key, value in evaluation.changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        actions += len(evaluation.actions)
        for _rule_id, outcome, _reason in evaluation.outcomes():  # what per-rule metrics read
            outcomes[outcome] += 1
        now += step
    return time.process_time() - began, actions, outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="zapflow-bench-rules-"))
    try:
        for file in SHIPPED.glob("*.yaml"):
            shutil.copy(file, folder / file.name)
        (folder / "bench.yaml").write_text(extra_rules(), encoding="utf-8")
        bundle = load_bundle(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    events = make_events(args.events)
    start = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)  # 20:00 in São Paulo: after hours
    run_once(bundle, events[:2000], start)  # warm-up
    timings = []
    actions = 0
    outcomes: Counter[str] = Counter()
    for _ in range(args.rounds):
        elapsed, actions, outcomes = run_once(bundle, events, start)
        timings.append(elapsed)
    rates = [len(events) / t for t in timings]
    mix = Counter(e["event"] for e in events)
    considered = sum(outcomes.values())
    print("## Rule evaluation throughput (pure `evaluate()`, one core)\n")
    print("| metric | value |")
    print("|---|---|")
    print(f"| rules loaded | {len(bundle.rules)} |")
    print(f"| events per round | {len(events):,} |")
    print(f"| rounds | {args.rounds} |")
    print(f"| events/s (median) | {statistics.median(rates):,.0f} |")
    print(f"| events/s (best) | {max(rates):,.0f} |")
    print(f"| µs per event (median) | {1e6 / statistics.median(rates):.1f} |")
    print(f"| rule evaluations per event | {considered / len(events):.1f} |")
    print(f"| actions per round | {actions:,} |")
    print(
        f"| target | {TARGET:,} events/s: {'met' if statistics.median(rates) >= TARGET else 'NOT met'} |"
    )
    print("\n| event | share |")
    print("|---|---|")
    for name, count in mix.most_common():
        print(f"| {name} | {count / len(events):.0%} |")
    print("\n| rule outcome | per round |")
    print("|---|---|")
    for name, count in outcomes.most_common():
        print(f"| {name} | {count:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
