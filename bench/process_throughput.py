"""How many events a second one ``zapflow process`` worker sustains with 50 rules loaded.

Pre-fills the event topics with a realistic mix (contacts writing to shop numbers, some with
escalation words, connection flaps, group adds), starts the worker as a subprocess, and
measures the rate at which the worker's consumer group commits offsets once it is running,
and the worker's CPU time per event.

    python bench/process_throughput.py [--events 100000] [--partitions 8]

Uses ``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts the embedded broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_process import busy_window  # noqa: E402
from bench.harness import OffsetReader, Usage, read_usage  # noqa: E402
from worker.events import event_topic  # noqa: E402
from worker.topics import ensure_topics  # noqa: E402

WORDS = [
    "urgente",
    "cancelar",
    "procon",
    "advogado",
    "reembolso",
    "boleto",
    "entrega",
    "troca",
    "garantia",
    "pix",
    "nota",
    "fiscal",
    "desconto",
    "cupom",
]


def extra_rules() -> str:
    """44 rules shaped like the shipped ones, so 50 are loaded in all."""
    rules: list[dict[str, Any]] = []
    for i, word in enumerate(WORDS):
        rules.append(
            {
                "id": f"keyword-{i}",
                "on": "messages.upsert",
                "when": [
                    'msg.kind == "text"',
                    f'msg.text is search("\\\\b{word}\\\\b", ignorecase=true)',
                ],
                "throttle": {"once_within": "30m", "key": ["instance", "msg.chat"]},
                "actions": [
                    {
                        "notify": {
                            "channel": "ops",
                            "text": f"{word}: {{{{ msg.text | truncate(80) }}}}",
                        }
                    }
                ],
            }
        )
    for i in range(12):
        rules.append(
            {
                "id": f"shop-{i}-reply",
                "on": "messages.upsert",
                "when": f'instance == "shop-{i}" and not msg.is_group and msg.info_type == "notify"',
                "throttle": {"once_within": "12h", "key": ["instance", "msg.chat"]},
                "actions": [
                    {
                        "whatsapp.send_text": {
                            "to": "{{ msg.chat }}",
                            "text": "Olá {{ msg.push_name | default('') }}!",
                        }
                    }
                ],
            }
        )
    for i in range(8):
        rules.append(
            {
                "id": f"media-{i}",
                "on": "messages.upsert",
                "when": f'msg.kind == "image" and instance == "shop-{i}"',
                "actions": [{"log": {"message": "image from {{ msg.sender }}"}}],
            }
        )
    for reason in (408, 428, 440, 500, 503, 515):
        rules.append(
            {
                "id": f"close-{reason}",
                "on": "connection.update",
                "when": f'conn.state == "close" and conn.status_reason == {reason}',
                "window": {"count": 3, "within": "10m"},
                "throttle": {"once_within": "30m"},
                "actions": [
                    {"notify": {"channel": "ops", "text": "{{ instance }} closed " + str(reason)}}
                ],
            }
        )
    for action in ("remove", "promote", "demote", "modify"):
        rules.append(
            {
                "id": f"group-{action}",
                "on": "group-participants.update",
                "when": f'group.action == "{action}"',
                "for_each": "group.participants",
                "actions": [{"log": {"message": "{{ group.id }} " + action + " {{ item.id }}"}}],
            }
        )
    return yaml.safe_dump({"rules": rules}, allow_unicode=True, sort_keys=False)


def events(count: int, seed: int = 7, chats: int = 5000) -> list[tuple[str, bytes, bytes]]:
    """(topic event, key, value) in a mix of 85 % messages, 10 % connection, 5 % groups."""
    rng = random.Random(seed)
    out = []
    texts = [
        "Oi, tudo bem?",
        "Qual o horário?",
        "Quero cancelar meu pedido urgente",
        "Cadê minha entrega?",
        "Obrigado!",
        "Vocês aceitam pix?",
        "Bom dia",
    ]
    for n in range(count):
        instance = f"shop-{rng.randrange(16)}"
        roll = rng.random()
        if roll < 0.85:
            number = rng.randrange(chats)
            instance = f"shop-{number % 16}"  # each contact writes to one shop number
            chat = f"55119{number:07d}@s.whatsapp.net"
            image = rng.random() < 0.1
            data = {
                "keyId": f"3A{n:018X}",
                "keyFromMe": False,
                "pushName": "Maria",
                "keyRemoteJid": chat,
                "messageType": "imageMessage" if image else "conversation",
                "content": {"caption": "foto"} if image else {"text": rng.choice(texts)},
                "messageTimestamp": 1747321234,
                "instanceId": 1,
                "isGroup": False,
                "info": {"type": "notify"},
            }
            event, key = "messages.upsert", f"{instance}:{chat}"
        elif roll < 0.95:
            data = {
                "instance": instance,
                "state": rng.choice(["close", "connecting", "open"]),
                "statusReason": rng.choice([200, 408, 428, 515]),
            }
            event, key = "connection.update", instance
        else:
            group = f"1203630{rng.randrange(1000):04d}@g.us"
            data = {
                "id": group,
                "author": "1@lid",
                "action": rng.choice(["add", "remove"]),
                "participants": [
                    {
                        "id": f"{rng.randrange(10**9)}@lid",
                        "phoneNumber": f"55{rng.randrange(10**10)}@s.whatsapp.net",
                        "admin": None,
                    }
                ],
            }
            event, key = "group-participants.update", f"{instance}:{group}"
        envelope = {
            "id": f"01JB{n:022d}",
            "instance": instance,
            "event": event,
            "received_at": "2026-11-25T20:41:07.123Z",
            "source": {"gateway": "bench", "connection": "c", "seq": n + 1},
            "data": data,
        }
        out.append((event, key.encode(), orjson.dumps(envelope)))
    return out


async def prefill(
    bootstrap: str, prefix: str, batch: list[tuple[str, bytes, bytes]], partitions: int
) -> None:
    topics = {event_topic(e, prefix) for e, _, _ in batch} | {f"{prefix}actions"}
    await ensure_topics(bootstrap, topics, partitions=partitions, replication_factor=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=262144)
    await producer.start()
    try:
        pending = []
        for event, key, value in batch:
            pending.append(await producer.send(event_topic(event, prefix), value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


ONE_RULE = """\
rules:
  - id: one-log
    on: [messages.upsert, connection.update, group-participants.update]
    when: instance == "nobody"
    actions:
      - log: {message: never}
"""


async def measure(
    bootstrap: str,
    events_n: int,
    partitions: int,
    rule_set: str,
    dedupe: bool = True,
    chats: int = 1000,
) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    work = Path(tempfile.mkdtemp(prefix="zapflow-bench-"))
    rules = work / "rules"
    rules.mkdir()
    shipped = list((ROOT / "rules").glob("*.yaml")) if rule_set == "fifty" else []
    for path in shipped:
        (rules / path.name).write_text(path.read_text())
    (rules / "bench.yaml").write_text(extra_rules() if rule_set == "fifty" else ONE_RULE)
    config = work / "zapflow.yaml"
    app_id = f"{prefix}process"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "topic_prefix": prefix,
                    "partitions": partitions,
                },
                "process": {
                    "app_id": app_id,
                    "store": "memory://",
                    "data_dir": str(work / "data"),
                    "dedupe_ttl_s": 3600 if dedupe else 0,
                    "faust": {"broker_commit_interval": 0.5, "table_standby_replicas": 0},
                },
            }
        )
    )
    batch = events(events_n, chats=chats)
    topics = sorted({event_topic(e, prefix) for e, _, _ in batch})
    started = time.monotonic()
    await prefill(bootstrap, prefix, batch, partitions)
    print(f"pre-filled {events_n} events in {time.monotonic() - started:.1f}s")

    log = (work / "worker.log").open("wb")
    env = dict(
        os.environ,
        OPS="http://127.0.0.1:9",
        ZAPFLOW_OPS_WEBHOOK="http://127.0.0.1:9",
        ZAPFLOW_SUPPORT_WEBHOOK="http://127.0.0.1:9",
    )
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    profile = (
        ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
        if os.environ.get("BENCH_PROFILE")
        else []
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [
            sys.executable,
            *profile,
            "-m",
            "worker",
            "process",
            "--config",
            str(config),
            "--rules",
            str(rules),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        samples: list[tuple[int, Usage]] = []
        deadline = time.monotonic() + 600
        async with OffsetReader(bootstrap) as offsets:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                if proc.poll() is not None:
                    tail = (work / "worker.log").read_text()[-2000:]
                    raise SystemExit(f"worker exited: {tail}")
                # 0 until the group and its coordinator exist (a fresh broker).
                done = await offsets.committed_total(app_id, topics)
                samples.append((done, read_usage(proc.pid)))
                if done >= events_n:
                    break
            actions = await offsets.end_total([f"{prefix}actions"])
        assert any(done > 0 for done, _ in samples), "the worker committed nothing"
        # Not up to the commit that reaches the end of the topic: it may come a commit
        # interval after the last event (see busy_window).
        first, last = busy_window(samples, events_n)
        span = last[1].at - first[1].at
        processed = last[0] - first[0]
        cpu = last[1].cpu - first[1].cpu
        print(
            f"rules: {rule_set}, partitions: {partitions}, chats: {chats}, "
            f"duplicate detection: {dedupe}, actions produced: {actions} "
            f"({actions / events_n:.2f} per event)"
        )
        print(
            f"processed {processed} events in {span:.1f}s after the first commit: "
            f"{processed / span:,.0f} events/s; worker CPU {cpu / processed * 1e6:.0f} µs/event "
            f"({cpu / span * 100:.0f} % of a core)"
        )
    finally:
        proc.terminate()
        proc.wait(30)
        print("worker log tail:", (work / "worker.log").read_text()[-600:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--chats",
        type=int,
        default=1000,
        help="distinct chats writing (fewer: more messages throttled, fewer actions)",
    )
    parser.add_argument(
        "--no-dedupe",
        action="store_true",
        help="turn duplicate detection off (no changelog write per message event)",
    )
    parser.add_argument(
        "--rule-set",
        choices=["fifty", "one"],
        default="fifty",
        help="the 50-rule set, or one rule that never matches (Faust and stage overhead only)",
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        asyncio.run(
            measure(
                bootstrap,
                args.events,
                args.partitions,
                args.rule_set,
                not args.no_dedupe,
                args.chats,
            )
        )
        return
    from worker.devkafka.broker import KafkaBroker

    with tempfile.TemporaryDirectory() as data, KafkaBroker(Path(data)) as broker:
        asyncio.run(
            measure(
                broker.bootstrap_servers,
                args.events,
                args.partitions,
                args.rule_set,
                not args.no_dedupe,
            )
        )


if __name__ == "__main__":
    main()
