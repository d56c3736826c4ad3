"""The floor each stage is compared with, each in a process of its own:

- ``produce``: a plain aiokafka producer loop, ``json.dumps`` of a ~1 KB envelope per event,
  fire-and-forget ``send()`` with the producer settings ingest uses by default; with
  ``--batches``, appended into batches (``create_batch``/``send_batch``) as ingest does;
- ``consume``: a plain aiokafka consumer loop (``getmany``, ``json.loads`` per record);
- ``receive``: the raw ``websockets`` client receive rate from one simulator subscription.

Each prints one JSON line: ``{"events", "seconds", "cpu_seconds"}`` (its own CPU time, from
``time.process_time()``, every thread included). Each runs on the event loop zapflow's
commands run on (:mod:`worker.eventloop`: uvloop unless ``ZAPFLOW_EVENT_LOOP`` says
otherwise), so that a stage and its baseline differ in their own work, not in their loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from worker.eventloop import use_event_loop


def sample_envelope(size: int, n: int) -> dict[str, Any]:
    text = ("Olá! Qual o prazo de entrega para o pedido? " * (size // 40 + 1))[
        : max(size - 600, 10)
    ]
    return {
        "id": f"01JV6Z8K3QW5T7Y9B2N{n:07d}",
        "instance": "bench-0000",
        "event": "messages.upsert",
        "received_at": "2026-11-25T20:41:07.123Z",
        "source": {"gateway": "127.0.0.1:8084", "connection": "c-1", "seq": n},
        "data": {
            "keyId": f"3EB0{n:018X}",
            "keyFromMe": False,
            "pushName": "Juliana Gomes",
            "keyRemoteJid": "5541919956161@s.whatsapp.net",
            "keyLid": "644913580894308@lid",
            "messageType": "conversation",
            "content": {"text": text},
            "messageTimestamp": 1795639205,
            "instanceId": 1,
            "device": "web",
            "isGroup": False,
            "id": n,
            "info": {"type": "notify"},
        },
    }


async def produce(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=256 * 1024,
        compression_type=None if args.compression == "none" else args.compression,
    )
    await producer.start()
    envelope = sample_envelope(args.size, 0)
    key = b"bench-0000:5541919956161@s.whatsapp.net"
    headers = [("event", b"messages.upsert"), ("content-type", b"application/json")]
    try:
        start, cpu = time.monotonic(), time.process_time()
        pending: list[Any] = []
        batch = producer.create_batch() if args.batches else None
        for n in range(args.count):
            envelope["id"] = f"01JV6Z8K3QW5T7Y9B2N{n:07d}"
            envelope["source"]["seq"] = n + 1
            value = json.dumps(envelope).encode()
            if batch is None:
                pending.append(await producer.send(args.topic, value, key=key, headers=headers))
            elif batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                # Full: send it (one key, so one partition) and start the next with this one.
                pending.append(await producer.send_batch(batch, args.topic, partition=0))
                batch = producer.create_batch()
                batch.append(timestamp=None, key=key, value=value, headers=headers)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        if batch is not None:
            batch.close()
            pending.append(await producer.send_batch(batch, args.topic, partition=0))
        await asyncio.gather(*pending)
        seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu
    finally:
        await producer.stop()
    return {"events": args.count, "seconds": seconds, "cpu_seconds": cpu_seconds}


async def consume(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    events = 0
    start = cpu = None
    try:
        while events < args.count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if start is None and batches:
                start, cpu = time.monotonic(), time.process_time()
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                    events += 1
            if batches:
                await consumer.commit()
        assert start is not None and cpu is not None
        seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu
    finally:
        await consumer.stop()
    return {"events": events, "seconds": seconds, "cpu_seconds": cpu_seconds}


async def receive(args: argparse.Namespace) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    url = f"{args.url}?event=messages.upsert&token={args.token}"
    events = 0
    async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
        print(json.dumps({"connected": True}), flush=True)
        first = await ws.recv()
        orjson.loads(first)
        start, cpu = time.monotonic(), time.process_time()
        deadline = start + args.seconds
        while time.monotonic() < deadline:
            orjson.loads(await ws.recv())
            events += 1
        seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu
    return {"events": events, "seconds": seconds, "cpu_seconds": cpu_seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--compression", default="gzip")
    p.add_argument("--batches", action="store_true", help="batch API instead of send()")
    c = sub.add_parser("consume")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--count", type=int, required=True)
    r = sub.add_parser("receive")
    r.add_argument("--url", required=True)
    r.add_argument("--token", required=True)
    r.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.mode == "receive":
        args.token = Path(args.token).read_text().strip()
    mode = {"produce": produce, "consume": consume, "receive": receive}[args.mode]
    use_event_loop()
    result = asyncio.run(mode(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
