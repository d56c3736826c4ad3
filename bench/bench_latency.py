"""End-to-end latency: the simulator emits a message → ``zapflow ingest`` → Kafka →
``zapflow process`` → ``codechat.actions`` → ``zapflow actions`` → the simulator's
``POST /message/sendText``, at 100, 500 and 2,000 events/s.

Each part runs in its own process. The simulator remembers when it wrote each message to
the socket and when each sendText call arrived; the rule replies with ``probe <message id>``,
which ties each call to its message. The clock is the same machine's ``time.time()``, so no
skew. Every reply also goes back through ingest as the gateway's echo of our own send
(three frames per send, as upstream does), which the process stage must drop: at 2,000
events/s ingest therefore reads ~8,000 frames/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import uuid
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchError,
    Child,
    OffsetReader,
    Report,
    Usage,
    Workspace,
    fmt,
    fmt_int,
    jit_cpu,
    list_topics,
    machine_cpu,
    profile,
    profile_note,
    read_usage,
    summary,
    wait_for,
)
from bench.parts import (
    PRECREATE,
    SimProcess,
    actions_config,
    ingest_config,
    precreate_process_topics,
    process_config,
    start_actions,
    start_ingest,
    start_process,
    unique_prefix,
)

TARGET_P99_MS = 50.0
RATES = (100, 500, 2000)
INSTANCES = 5
SIZE = 1000

PROBE_RULE = """\
# The end-to-end latency probe: answer every message from a contact with its id.
rules:
  - id: latency-probe
    on: messages.upsert
    when: not msg.from_me
    actions:
      - whatsapp.send_text:
          to: "{{ msg.chat }}"
          text: "probe {{ msg.id }}"
"""


async def run(ws: Workspace, report: Report, quick: bool = False) -> None:
    duration = 5.0 if quick else 10.0
    workdir = ws.dir("latency")
    prefix = unique_prefix("latency")
    rules = workdir / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "probe.yaml").write_text(PROBE_RULE, encoding="utf-8")
    sim = await SimProcess.start(workdir, INSTANCES)
    children: list[Child] = []
    try:
        ingest = await start_ingest(workdir, ingest_config(workdir, sim, ws.bootstrap, prefix))
        children.append(ingest)
        await sim.wait_live(INSTANCES, 60.0, watch=ingest)
        process_app = f"bench-latency-{uuid.uuid4().hex[:6]}"
        if PRECREATE:
            await precreate_process_topics(ws.bootstrap, process_app)
        process = await start_process(
            workdir, process_config(workdir, ws.bootstrap, prefix, process_app), rules
        )
        children.append(process)
        await _wait_topic_ready(ws.bootstrap, process, f"{prefix}actions")
        actions = await start_actions(
            workdir,
            actions_config(
                workdir, ws.bootstrap, prefix, f"bench-actions-{uuid.uuid4().hex[:6]}", sim.http_url
            ),
        )
        children.append(actions)
        warm = await _warm_up(sim, children)
        report.note(f"Pipeline answered its first probe after {warm:.1f} s of warm-up.")
        steady, jit = await _until_steady(ws, sim, children, limit=40.0 if quick else 90.0)
        report.note(
            f"Then {steady:.0f} s at {STEADY_RATE} events/s until the broker's JIT compiler "
            f"used under {STEADY_JIT_CORES} cores ({jit:.2f} in the last window): a broker "
            "just started spends up to half a core compiling for its first minute of load, "
            "which a long-running broker does not (the JIT column below shows what was left)."
        )
        rows = []
        cpu_rows: list[tuple[int, dict[str, float]]] = []
        profiles: list[Path] = []
        for rate in RATES:
            spies = [
                asyncio.ensure_future(profile(c, duration, f"latency-{rate}-{c.name}"))
                for c in children
                if rate == 500
            ]
            window = asyncio.ensure_future(cpu_window(ws, [sim.child, *children], duration))
            result = await sim.command(
                op="paced", rate=rate, duration=duration, min_size=SIZE, settle=15.0, within=120.0
            )
            cpu_rows.append((rate, await window))
            _all_alive(children, "while measuring")
            profiles += [p for p in await asyncio.gather(*spies) if p is not None]
            stats = summary(result["latencies_ms"])
            usage = {c.name: c.usage() for c in children}
            rows.append((rate, result, stats, usage))
            print(
                f"  {rate}/s: p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms, "
                f"{result['unanswered']} unanswered",
                flush=True,
            )
        stages = await stage_times(ws.bootstrap, prefix)
    finally:
        for child in reversed(children):
            await child.stop()
        await sim.stop()
        for child in children:
            errors, first = child.log_problems()
            if errors:
                report.note(f"`zapflow {child.name}` logged {errors:,} errors; first: `{first}`")

    at500 = next(r for r in rows if r[0] == 500)
    p99 = at500[2]["p99"]
    report.verdict(
        "end-to-end p99 at 500 events/s",
        f"≤ {TARGET_P99_MS:g} ms",
        f"{p99:,.1f} ms ({at500[1]['unanswered']:,} of {at500[1]['emitted']:,} unanswered)",
        p99 <= TARGET_P99_MS and at500[1]["unanswered"] == 0,
    )
    report.table(
        "End-to-end latency, simulator emit → simulator sendText (ms)",
        (
            "events/s",
            "emitted",
            "answered",
            "unanswered",
            "p50",
            "p95",
            "p99",
            "max",
            "emit rate reached",
            "replies/s",
            "sendText statuses",
        ),
        [
            (
                fmt_int(rate),
                fmt_int(result["emitted"]),
                fmt_int(stats["n"]),
                fmt_int(result["unanswered"]),
                fmt(stats["p50"]),
                fmt(stats["p95"]),
                fmt(stats["p99"]),
                fmt(stats["max"]),
                fmt_int(result["emitted"] / result["emit_seconds"]),
                fmt_int(result["answer_rate"]) if result["answer_rate"] else "–",
                ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items())),
            )
            for rate, result, stats, _ in rows
        ],
    )
    report.table(
        "Where the time goes, per stage (ms; p50 / p99 over the messages of each rate)",
        ("events/s", *STAGES),
        [(fmt_int(rate), *stage_cells(result["samples"], stages)) for rate, result, _, _ in rows],
    )
    names = ["simulator", "ingest", "process", "actions", "broker"]
    jit_column = "broker JIT"
    report.table(
        "CPU while the messages were emitted (cores; the machine has "
        f"{os.cpu_count()}, shared with other work)",
        (
            "events/s",
            *names,
            f"({jit_column})",
            "these together",
            "whole machine busy",
            "everything else",
        ),
        [
            (
                fmt_int(rate),
                *(fmt(cores[n], 2) if n in cores else "–" for n in names),
                fmt(cores[jit_column], 2) if jit_column in cores else "–",
                fmt(sum(cores.get(n, 0.0) for n in names), 2),
                fmt(cores["machine"], 2),
                fmt(cores["machine"] - sum(cores.get(n, 0.0) for n in names), 2),
            )
            for rate, cores in cpu_rows
        ],
    )
    for path in profiles:
        profile_note(report, f"{path.stem} (during the 500 events/s run)", path)
    report.note(
        "Stages: **socket → ingest** = simulator write to `received_at` stamped by ingest; "
        "**ingest → Kafka** = `received_at` to the event record's Kafka timestamp (set when "
        "ingest hands it to the producer); **Kafka → rule fired** = event record timestamp to "
        "the action record's `created_at` (process stage consumer lag + evaluation); "
        "**rule → action in Kafka** = `created_at` to the action record's Kafka timestamp; "
        "**executor → REST** = action record timestamp to the simulator receiving sendText "
        "(executor consumer lag + HTTP). Timestamps of different processes on one machine, "
        "millisecond resolution."
    )
    report.note(
        f"Each rate runs {duration:g} s of ~{SIZE} B messages.upsert frames from contacts in "
        f"direct chats of {INSTANCES} instances, then waits up to 15 s for the replies; a "
        "message without a reply by then counts as unanswered (not in the percentiles). One "
        "rule (`latency-probe`, below) is loaded. Processes: simulator, `zapflow ingest`, "
        "`zapflow process` (rocksdb tables), `zapflow actions` (send rate limits off), and the "
        "Kafka broker, all on this machine.\n\n```yaml\n" + PROBE_RULE + "```"
    )


async def cpu_window(ws: Workspace, children: list[Child], seconds: float) -> dict[str, float]:
    """Cores used by each part, the broker (and its JIT compiler) and the whole machine over
    the next ``seconds``."""
    pids = {c.name: c.pid for c in children}
    if ws.broker_pid is not None:
        pids["broker"] = ws.broker_pid

    def snapshot() -> tuple[dict[str, Usage], tuple[float, float], float]:
        usages = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError):
                usages[name] = read_usage(pid)
        jit = 0.0
        if ws.broker_pid is not None:
            with contextlib.suppress(OSError):
                jit = jit_cpu(ws.broker_pid)
        return usages, machine_cpu(), jit

    before, (busy0, total0), jit0 = snapshot()
    await asyncio.sleep(seconds)
    after, (busy1, total1), jit1 = snapshot()
    cores = {
        name: (after[name].cpu - before[name].cpu) / (after[name].at - before[name].at)
        for name in before
        if name in after
    }
    if "broker" in cores:
        cores["broker JIT"] = (jit1 - jit0) / (after["broker"].at - before["broker"].at)
    ncpu = os.cpu_count() or 1
    cores["machine"] = (busy1 - busy0) / (total1 - total0) * ncpu if total1 > total0 else 0.0
    return cores


#: The load that warms the pipeline up, and the JIT compiler CPU it is warm below.
STEADY_RATE = 300
STEADY_JIT_CORES = 0.05
STEADY_WINDOW_S = 5.0


def _all_alive(children: list[Child], when: str) -> None:
    """Raise, with its log tail, if a part of the pipeline has exited."""
    for child in children:
        if not child.alive():
            raise BenchError(f"{child.name} exited {when}\n{child.log_tail()}")


async def _until_steady(
    ws: Workspace, sim: SimProcess, children: list[Child], limit: float
) -> tuple[float, float]:
    """Load the pipeline until the broker's JIT compiler is done with it (or ``limit`` s).

    Returns the seconds it took and the compiler's cores in the last window.
    """
    import time

    start = time.monotonic()
    jit = math.inf
    while time.monotonic() - start < limit:
        window = asyncio.ensure_future(cpu_window(ws, children, STEADY_WINDOW_S))
        await sim.command(
            op="paced", rate=STEADY_RATE, duration=STEADY_WINDOW_S, min_size=SIZE, settle=0.0
        )
        jit = (await window).get("broker JIT", 0.0)
        _all_alive(children, "during warm-up")
        if jit < STEADY_JIT_CORES:
            break
    # Let the backlog of the warm-up drain before measuring.
    await sim.command(op="paced", rate=20, duration=0.5, min_size=SIZE, settle=15.0)
    return time.monotonic() - start, jit


async def _wait_topic_ready(bootstrap: str, process: Child, topic: str) -> None:
    """The executor checks the actions topic's partitions, so the process stage creates it."""

    async def created() -> bool:
        return topic in await list_topics(bootstrap)

    await wait_for(created, 60.0, f"the process stage to create {topic}", 0.5, process)


async def _warm_up(sim: SimProcess, children: list[Child]) -> float:
    """Send a few probes until one is answered: consumer groups formed, connections open."""
    import time

    start = time.monotonic()
    while time.monotonic() - start < 120.0:
        _all_alive(children, "during warm-up")
        result = await sim.command(op="paced", rate=20, duration=0.5, min_size=SIZE, settle=3.0)
        if result["latencies_ms"]:
            # Let any stragglers of the warm-up arrive before measuring.
            await asyncio.sleep(2.0)
            return time.monotonic() - start
    tails = "\n".join(f"--- {c.name} ---\n{c.log_tail(15)}" for c in children)
    raise BenchError(f"no probe was answered within 120 s of warm-up\n{tails}")


STAGES = (
    "socket → ingest",
    "ingest → Kafka",
    "Kafka → rule fired",
    "rule → action in Kafka",
    "executor → REST",
)


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic``, read from the start without a consumer group."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await OffsetReader.partitions_of(consumer, topic)
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[Any] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for batch in batches.values():
                records += batch
        return records
    finally:
        await consumer.stop()


async def stage_times(bootstrap: str, prefix: str) -> dict[str, dict[str, float]]:
    """Per message id: when ingest received it, when its event and its action reached Kafka,
    and when the rule fired, from the records in the topics."""
    import orjson

    times: dict[str, dict[str, float]] = {}
    for record in await _read_all(bootstrap, f"{prefix}messages.upsert"):
        try:
            envelope = orjson.loads(record.value)
            key = envelope["data"]["keyId"]
            entry = times.setdefault(key, {})
            entry["received"] = _epoch(envelope["received_at"])
            entry["event_kafka"] = record.timestamp / 1000
        except (ValueError, KeyError, TypeError):
            continue
    for record in await _read_all(bootstrap, f"{prefix}actions"):
        try:
            action = orjson.loads(record.value)
            text = action["params"]["text"]
        except (ValueError, KeyError, TypeError):
            continue
        if not text.startswith("probe "):
            continue
        entry = times.setdefault(text[6:], {})
        entry["fired"] = _epoch(action["created_at"])
        entry["action_kafka"] = record.timestamp / 1000
    return times


def stage_cells(samples: list[Any], stages: dict[str, dict[str, float]]) -> list[str]:
    spans: list[list[float]] = [[] for _ in STAGES]
    for key, emitted, rest_at in samples:
        t = stages.get(key, {})
        points = [
            emitted,
            t.get("received"),
            t.get("event_kafka"),
            t.get("fired"),
            t.get("action_kafka"),
            rest_at,
        ]
        for i in range(len(STAGES)):
            a, b = points[i], points[i + 1]
            if a is not None and b is not None:
                spans[i].append((b - a) * 1000)
    cells = []
    for values in spans:
        stats = summary(values)
        cells.append(f"{fmt(stats['p50'])} / {fmt(stats['p99'])}" if values else "–")
    return cells
