"""Ingest throughput: the simulator pushes ~1 KB messages.upsert frames as fast as
``zapflow ingest`` takes them, over 1, 10 and 100 subscriptions.

Events are counted in Kafka (end offsets of the topic), not at the socket, over a window
that starts once the flood is under way. Ingest's CPU time over the same window gives its
CPU per event. Baselines in the same run: a plain aiokafka producer loop with ``json``
(the Kafka side's floor) and the raw ``websockets`` receive rate (the socket side's).
Beside them, what each compression codec of ``producer.compression`` costs per event on
the simulator's varied messages.upsert envelopes (no Kafka), to choose the default by.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import codec

from bench.harness import (
    REPO_ROOT,
    BenchError,
    Child,
    OffsetReader,
    Report,
    Workspace,
    cpu_per_event_us,
    cpu_share,
    create_topics,
    fmt,
    fmt_int,
    profile,
    profile_note,
    python_argv,
)
from bench.parts import SimProcess, ingest_config, start_ingest, unique_prefix
from worker.ingest.config import IngestConfig
from worker.ingest.envelope import FrameSource, Subscriber, frame_to_record
from worker.simulator.payloads import PayloadFactory

TARGET = 20_000
SIZE = 1000
WARMUP = 2.0


@dataclass
class Row:
    label: str
    subscriptions: int
    events_per_s: float
    cpu_us: float
    cpu_cores: float
    sim_cores: float
    note: str = ""
    profile: Path | None = None


async def measure_ingest(
    ws: Workspace,
    subscriptions: int,
    window: float,
    producer: dict[str, Any] | None = None,
    label: str = "zapflow ingest",
) -> Row:
    workdir = ws.dir(f"ingest-{subscriptions}-{label.replace(' ', '-')}")
    prefix = unique_prefix("ingest")
    topic = f"{prefix}messages.upsert"
    sim = await SimProcess.start(workdir, subscriptions)
    ingest: Child | None = None
    totals: list[str] = []
    try:
        config = ingest_config(workdir, sim, ws.bootstrap, prefix, producer=producer)
        ingest = await start_ingest(workdir, config)
        await sim.wait_live(subscriptions, 60.0, watch=ingest)
        async with OffsetReader(ws.bootstrap) as offsets:
            await sim.command(op="flood", duration=WARMUP + window + 1.0, min_size=SIZE)
            await asyncio.sleep(WARMUP)
            count0, use0, sim0 = await offsets.end_total([topic]), ingest.usage(), sim.child.usage()
            spy = asyncio.ensure_future(profile(ingest, window, f"ingest-{subscriptions}-{label}"))
            await asyncio.sleep(window)
            count1, use1, sim1 = await offsets.end_total([topic]), ingest.usage(), sim.child.usage()
            flood = await sim.command(op="wait")
            profiled = await spy
        if not ingest.alive():
            raise BenchError(f"ingest exited during the run\n{ingest.log_tail()}")
        events = count1 - count0
        rate = events / (use1.at - use0.at)
        note = f"{flood['dropped']:,} dropped by the simulator" if flood["dropped"] else ""
        row = Row(
            label,
            subscriptions,
            rate,
            cpu_per_event_us(use0, use1, events),
            cpu_share(use0, use1),
            cpu_share(sim0, sim1),
            note,
            profiled,
        )
    finally:
        if ingest is not None:
            await ingest.stop()
            stopped = [
                line
                for line in ingest.log.read_text(errors="replace").splitlines()
                if line.startswith("ingest: stopped;")
            ]
            if stopped:
                print(f"  {subscriptions} subscriptions: {stopped[-1]}", flush=True)
                totals.append(stopped[-1].removeprefix("ingest: stopped; "))
        await sim.stop()
    if totals:
        row.note = "; ".join(filter(None, [row.note, f"whole run: {totals[0]}"]))
    return row


async def producer_baseline(
    ws: Workspace, count: int, compression: str, batches: bool = False
) -> Row:
    way = "batch" if batches else "producer"
    workdir = ws.dir(f"baseline-produce-{way}-{compression}")
    topic = f"{unique_prefix('produce')}messages.upsert"
    await create_topics(ws.bootstrap, [topic], 8)
    child = await Child.start(
        "producer baseline",
        python_argv(
            "-m",
            "bench.baselines",
            "produce",
            "--bootstrap",
            ws.bootstrap,
            "--topic",
            topic,
            "--count",
            str(count),
            "--size",
            str(SIZE),
            "--compression",
            compression,
            *(["--batches"] if batches else []),
        ),
        workdir / "produce.log",
        cwd=REPO_ROOT,
        pipes=True,
    )
    result = await _result(child, 300.0)
    async with OffsetReader(ws.bootstrap) as offsets:
        in_kafka = await offsets.end_total([topic])
    rate = result["events"] / result["seconds"]
    return Row(
        f"baseline: aiokafka {way} loop + json ({compression})",
        0,
        rate,
        result["cpu_seconds"] / result["events"] * 1e6,
        result["cpu_seconds"] / result["seconds"],
        0.0,
        f"{in_kafka:,} records in Kafka",
    )


async def receive_baseline(ws: Workspace, seconds: float) -> Row:
    workdir = ws.dir("baseline-receive")
    sim = await SimProcess.start(workdir, 1)
    child = None
    try:
        child = await Child.start(
            "websockets baseline",
            python_argv(
                "-m",
                "bench.baselines",
                "receive",
                "--url",
                sim.ws_url,
                "--token",
                str(sim.tokens / sim.names[0]),
                "--seconds",
                str(seconds),
            ),
            workdir / "receive.log",
            cwd=REPO_ROOT,
            pipes=True,
        )
        assert child.proc.stdout is not None
        await asyncio.wait_for(child.proc.stdout.readline(), 30.0)
        sim0 = sim.child.usage()
        await sim.command(op="flood", duration=seconds + 3.0, min_size=SIZE)
        result = await _result(child, seconds + 60.0)
        sim1 = sim.child.usage()
        await sim.command(op="wait")
    finally:
        if child is not None:
            await child.stop()
        await sim.stop()
    return Row(
        "baseline: raw websockets receive + orjson.loads",
        1,
        result["events"] / result["seconds"],
        result["cpu_seconds"] / result["events"] * 1e6,
        result["cpu_seconds"] / result["seconds"],
        cpu_share(sim0, sim1),
    )


async def _result(child: Child, within: float) -> dict[str, Any]:
    assert child.proc.stdout is not None
    try:
        out = await asyncio.wait_for(child.proc.stdout.read(), within)
    except TimeoutError:
        await child.stop()
        raise BenchError(f"{child.name} did not finish within {within:g}s") from None
    await child.proc.wait()
    lines = [line for line in out.splitlines() if line.startswith(b"{")]
    if child.proc.returncode != 0 or not lines:
        raise BenchError(f"{child.name} failed ({child.proc.returncode})\n{child.log_tail()}")
    result: dict[str, Any] = orjson.loads(lines[-1])
    return result


#: The codecs ingest offers, as aiokafka's producer calls them (same functions, same levels:
#: its lz4 is LZ4 HC at level 9, its zstd level 3, its gzip level 9).
CODECS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": codec.zstd_encode,
    "lz4": codec.lz4_encode,
    "snappy": codec.snappy_encode,
    "gzip": codec.gzip_encode,
}
#: Bytes of record values per compressed batch in the codec table (a batch at ~6,000
#: events/s per partition with ingest's 10 ms linger).
CODEC_BATCH = 64 * 1024


def varied_envelopes(count: int) -> list[bytes]:
    """``count`` messages.upsert envelopes, made by ingest's own ``frame_to_record`` from
    the simulator's payload generator: five instances, varied contacts, texts and message
    kinds (the load of the throughput rows repeats one template, which compresses far
    better)."""
    factories = [PayloadFactory(f"shop-{i}", i + 1, seed=7) for i in range(5)]
    subscribers = [
        Subscriber(f.instance_name, "messages.upsert", "127.0.0.1:8084", "codechat.")
        for f in factories
    ]
    now = 1_795_639_205.0
    out = []
    for n in range(count):
        factory = factories[n % len(factories)]
        frame = orjson.dumps(factory.generate("messages.upsert", now + n * 0.05)).decode()
        subscriber = subscribers[n % len(subscribers)]
        record = frame_to_record(
            subscriber,
            frame,
            source=FrameSource("c-1", n),
            envelope_id=f"01JV6Z8K3QW5T7Y9B2N{n:07d}",
            received_at_ms=int((now + n * 0.05) * 1000),
            max_frame_bytes=IngestConfig.max_frame_bytes,
        )
        if record.topic != subscriber.event_topic:
            raise BenchError(f"ingest refused a simulator payload: {record.value[:300]!r}")
        out.append(record.value)
    return out


def codec_costs(envelopes: list[bytes], rounds: int) -> list[tuple[str, float, float]]:
    """(codec, CPU µs per event, size ratio) for each codec, over ``CODEC_BATCH`` batches."""
    batches: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for value in envelopes:
        current.append(value)
        size += len(value)
        if size >= CODEC_BATCH:
            batches.append(b"".join(current))
            current, size = [], 0
    if current:
        batches.append(b"".join(current))
    raw = sum(map(len, batches))
    rows = []
    for name, encode in CODECS.items():
        compressed = sum(len(encode(batch)) for batch in batches)  # also a warm-up
        best = float("inf")
        for _ in range(rounds):
            began = time.process_time()
            for batch in batches:
                encode(batch)
            best = min(best, time.process_time() - began)
        rows.append((name, best / len(envelopes) * 1e6, raw / compressed))
    return rows


async def run(ws: Workspace, report: Report, quick: bool = False) -> None:
    window = 4.0 if quick else 8.0
    rows: list[Row] = []
    rows.append(await receive_baseline(ws, window))
    rows.append(await producer_baseline(ws, 60_000 if quick else 150_000, "gzip"))
    rows.append(await producer_baseline(ws, 60_000 if quick else 150_000, "none"))
    rows.append(await producer_baseline(ws, 60_000 if quick else 150_000, "zstd", batches=True))
    for subs in (1, 10, 100):
        rows.append(await measure_ingest(ws, subs, window))
    rows.append(
        await measure_ingest(
            ws, 10, window, producer={"compression": "none"}, label="zapflow ingest, no compression"
        )
    )
    best = max(r.events_per_s for r in rows if r.label == "zapflow ingest")
    report.verdict(
        "ingest throughput, one process",
        f"≥ {TARGET:,} events/s",
        f"{best:,.0f} events/s (best of 1/10/100 subscriptions, default settings)",
        best >= TARGET,
    )
    producer = next(r for r in rows if r.label.endswith("(gzip)"))
    report.table(
        f"Ingest throughput (~{SIZE} B messages.upsert, counted in Kafka)",
        (
            "what",
            "subscriptions",
            "events/s",
            "CPU µs/event",
            "cores used",
            "simulator cores",
            "vs producer baseline",
            "note",
        ),
        [
            (
                r.label,
                r.subscriptions or "–",
                fmt_int(r.events_per_s),
                fmt(r.cpu_us),
                fmt(r.cpu_cores, 2),
                fmt(r.sim_cores, 2) if r.sim_cores else "–",
                f"{r.events_per_s / producer.events_per_s:.2f}×",
                r.note,
            )
            for r in rows
        ],
    )
    envelopes = varied_envelopes(2_000)
    average = sum(map(len, envelopes)) / len(envelopes)
    report.table(
        f"Compression codecs on varied messages.upsert envelopes (~{average:,.0f} B, no Kafka)",
        ("codec", "CPU µs/event", "size ratio"),
        [
            (name, fmt(us, 2), f"{ratio:.2f}×")
            for name, us, ratio in codec_costs(envelopes, 3 if quick else 7)
        ],
    )
    for r in rows:
        profile_note(report, f"{r.label}, {r.subscriptions} subscriptions", r.profile)
    report.note(
        f"Window {window:g} s after a {WARMUP:g} s warm-up; events/s = growth of the topic's end "
        "offsets over the window; CPU µs/event = ingest's user+system CPU time over the same "
        "window divided by those events. The simulator runs in its own process and pauses "
        "whenever a subscriber has 4 MiB unsent, so it pushes exactly as fast as ingest reads. "
        "The producer baselines use ingest's default producer settings (acks=all, idempotent, "
        "linger 10 ms, 256 KiB batches): the producer loop calls `send()` per record, the "
        "batch loop appends records into batches (`create_batch`, `send_batch`), as ingest "
        "does. The codec table compresses "
        f"{CODEC_BATCH // 1024} KiB batches of record values with the functions aiokafka's "
        "producer calls (best of several rounds, CPU time of this process); `none` costs "
        "nothing and keeps the size. Ingest's default is `zstd`."
    )
