"""Rules throughput: ``zapflow process`` alone, fed from a pre-filled topic, with 5, 50 and
200 rules loaded; events/s of one worker process.

The topic is filled once (~1 KB envelopes, 8 partitions) and each run reads it from the
start under a consumer group of its own. Progress is the group's committed offsets (Faust
commits every 2.8 s by default), sampled every 0.5 s; the rate is the slope between the
first sample with progress and the last one (start-up and rebalance excluded). Baselines in
the same run: a plain aiokafka consumer loop over the same topic, the stage itself with its
evaluation switched off (``bench/process_floor.py``: Faust's stream, acks and commits), and
the pure engine alone (no Kafka, no Faust) on the same envelopes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.bench_ingest import _result
from bench.harness import (
    REPO_ROOT,
    BenchError,
    Child,
    OffsetReader,
    Report,
    Usage,
    Workspace,
    create_topics,
    fmt,
    fmt_int,
    profile,
    profile_note,
    python_argv,
)
from bench.parts import (
    PRECREATE,
    precreate_process_topics,
    process_config,
    start_process,
    unique_prefix,
)
from bench.workload import envelopes, prefill, write_rules

TARGET_WORKER = 5_000
FLOOR_LABEL = "baseline: zapflow process, evaluation switched off (bench/process_floor.py)"
TARGET_PURE = 20_000
RULE_COUNTS = (5, 50, 200)


@dataclass
class Row:
    label: str
    rules: int | None
    events: int
    events_per_s: float
    cpu_us: float
    cores: float
    actions: int | None = None
    note: str = ""
    profile: Path | None = None


async def measure_worker(
    ws: Workspace,
    prefix: str,
    rules: int,
    total: int,
    max_window: float,
    faust: dict[str, Any] | None = None,
    label: str = "zapflow process (1 worker, rocksdb tables)",
    floor: bool = False,
) -> Row:
    workdir = ws.dir(f"process-{rules}-{uuid.uuid4().hex[:4]}")
    topic = f"{prefix}messages.upsert"
    actions = f"{prefix}actions"
    app_id = f"bench-process-{uuid.uuid4().hex[:6]}"
    rules_dir = write_rules(workdir / "rules", rules)
    config = process_config(workdir, ws.bootstrap, prefix, app_id, faust=faust)
    async with OffsetReader(ws.bootstrap) as offsets:
        actions_before = await offsets.end_total([actions])
        if PRECREATE:
            await precreate_process_topics(ws.bootstrap, app_id)
        child = await start_process(workdir, config, rules_dir, floor=floor)
        try:
            samples: list[tuple[int, Usage]] = []
            spy: asyncio.Future[Path | None] | None = None
            deadline = time.monotonic() + 60.0 + max_window
            progress_at: float | None = None
            while True:
                await asyncio.sleep(0.5)
                if not child.alive():
                    raise BenchError(
                        f"zapflow process exited with {child.proc.returncode}\n{child.log_tail()}"
                    )
                done = await offsets.committed_total(app_id, [topic])
                samples.append((done, child.usage()))
                if done > 0 and progress_at is None:
                    progress_at = time.monotonic()
                    name = f"process-{'floor' if floor else rules}-rules"
                    spy = asyncio.ensure_future(profile(child, 6.0, name))
                if done >= total:
                    break
                distinct = len({n for n, _ in samples if n > 0})
                if (
                    progress_at is not None
                    and time.monotonic() - progress_at > max_window
                    and distinct >= 3
                ):
                    break
                if time.monotonic() > deadline:
                    if distinct >= 2:
                        break
                    raise BenchError(
                        f"zapflow process made no measurable progress in "
                        f"{60 + max_window:g} s ({rules} rules)\n{child.log_tail()}"
                    )
            actions_after = await offsets.end_total([actions])
            committed = await offsets.committed_total(app_id, [topic])
            profiled = await spy if spy is not None else None
        finally:
            await child.stop()
    errors, first_error = child.log_problems()
    problems = f"; {errors:,} errors logged, first: {first_error}" if errors else ""
    first, last = busy_window(samples, total)
    if last is first:
        raise BenchError(f"only one progress sample for {rules} rules; the run was too short")
    events = last[0] - first[0]
    seconds = last[1].at - first[1].at
    cpu = last[1].cpu - first[1].cpu
    return Row(
        label,
        rules,
        events,
        events / seconds,
        cpu / events * 1e6,
        cpu / seconds,
        actions_after - actions_before,
        f"peak RSS {last[1].peak_rss / 2**20:,.0f} MiB; {committed:,} committed at the stop"
        f"{problems}",
        profiled,
    )


def busy_window(
    samples: Sequence[tuple[int, Usage]], total: int
) -> tuple[tuple[int, Usage], tuple[int, Usage]]:
    """The first and last samples of committed offsets to take the slope between.

    The group's committed count moves in steps, one per commit (every 2.8 s), so the slope
    runs from the first sample showing a commit to the first sample showing a later one.
    The commit that reaches the end of the topic is not a good end: it comes up to a commit
    interval after the worker has read the last event, and that idle time would count as
    the worker's. A 5-second run of the stage with its evaluation switched off measured
    7,749 events/s that way, while its agent had handled the 60,000 events in 4.9 s. So
    when the last count is the whole topic, the window ends at the commit before it, if
    there was one after the first.
    """
    moving = [(n, u) for n, u in samples if n > 0]
    counts = sorted({n for n, _ in moving})
    end = counts[-1]
    if end >= total and len(counts) > 2:
        end = counts[-2]
    first = moving[0]
    last = next(s for s in moving if s[0] == end)
    return first, last


async def consumer_baseline(ws: Workspace, topic: str, total: int) -> Row:
    workdir = ws.dir("baseline-consume")
    child = await Child.start(
        "consumer baseline",
        python_argv(
            "-m",
            "bench.baselines",
            "consume",
            "--bootstrap",
            ws.bootstrap,
            "--topic",
            topic,
            "--group",
            f"bench-consume-{uuid.uuid4().hex[:6]}",
            "--count",
            str(total),
        ),
        workdir / "consume.log",
        cwd=REPO_ROOT,
        pipes=True,
    )
    result = await _result(child, 300.0)
    return Row(
        "baseline: aiokafka consumer loop (getmany + json.loads)",
        None,
        result["events"],
        result["events"] / result["seconds"],
        result["cpu_seconds"] / result["events"] * 1e6,
        result["cpu_seconds"] / result["seconds"],
    )


def pure_engine(rules_dir: Path, rules: int, count: int) -> Row:
    """The engine alone on one core: evaluate + apply the state changes to a dict."""
    from worker.rules import evaluate, load_bundle

    bundle = load_bundle(rules_dir)
    parsed = [orjson.loads(value) for _, value in envelopes(count)]
    state: dict[str, object] = {}
    now = datetime.now(UTC)
    actions = 0
    start = time.process_time()
    for envelope in parsed:
        evaluation = evaluate(bundle, state, envelope, now)
        actions += len(evaluation.actions)
        for key, value in evaluation.changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    cpu = time.process_time() - start
    return Row(
        "pure engine (evaluate, no Kafka)",
        rules,
        count,
        count / cpu,
        cpu / count * 1e6,
        1.0,
        actions,
    )


async def shipped_mix(ws: Workspace, events: int, rounds: int) -> tuple[str, float | None]:
    """``bench/bench_rules.py`` (the engine's own benchmark: the shipped rules plus 44 more,
    50 in all, over a mix of event types) in a process of its own; its table and median."""
    child = await Child.start(
        "pure engine benchmark",
        python_argv("-m", "bench.bench_rules", "--events", str(events), "--rounds", str(rounds)),
        ws.dir("pure-mix") / "bench_rules.log",
        cwd=REPO_ROOT,
        pipes=True,
    )
    assert child.proc.stdout is not None
    out = (await asyncio.wait_for(child.proc.stdout.read(), 600.0)).decode()
    await child.proc.wait()
    if child.proc.returncode != 0:
        raise BenchError(f"bench/bench_rules.py failed\n{child.log_tail()}")
    median = None
    for line in out.splitlines():
        if line.startswith("| events/s (median) |"):
            median = float(line.split("|")[2].replace(",", ""))
    table = "\n".join(line for line in out.splitlines() if not line.startswith("## "))
    return table.strip(), median


async def run(ws: Workspace, report: Report, quick: bool = False) -> None:
    # Enough that the window of each worker run ends before the topic does (see busy_window).
    total = 60_000 if quick else 120_000
    max_window = 10.0 if quick else 20.0
    prefix = unique_prefix("rules")
    topic = f"{prefix}messages.upsert"
    await create_topics(ws.bootstrap, [topic, f"{prefix}actions"], 8)
    started = time.monotonic()
    await prefill(ws.bootstrap, topic, total)
    report.note(f"Pre-filled {total:,} envelopes in {time.monotonic() - started:.1f} s.")

    rows: list[Row] = [await consumer_baseline(ws, topic, total)]
    try:
        floor = await measure_worker(
            ws, prefix, 5, total, max_window, label=FLOOR_LABEL, floor=True
        )
        rows.append(replace(floor, rules=None, actions=None))
    except BenchError as exc:
        rows.append(Row(FLOOR_LABEL, None, 0, float("nan"), float("nan"), 0.0, None, "failed"))
        report.note(f"**The stage's floor failed:**\n\n```\n{exc}\n```")
    for rules in RULE_COUNTS:
        rules_dir = write_rules(ws.dir(f"pure-{rules}") / "rules", rules)
        count = 20_000 if rules <= 5 else 5_000 if rules <= 50 else 2_000
        rows.append(await asyncio.to_thread(pure_engine, rules_dir, rules, count))
    for rules in RULE_COUNTS:
        try:
            rows.append(await measure_worker(ws, prefix, rules, total, max_window))
        except BenchError as exc:
            rows.append(
                Row("zapflow process", rules, 0, float("nan"), float("nan"), 0.0, None, "failed")
            )
            report.note(f"**zapflow process with {rules} rules failed:**\n\n```\n{exc}\n```")

    mix_table, mix_median = await shipped_mix(ws, 10_000 if quick else 50_000, 2 if quick else 5)

    worker50 = next((r for r in rows if r.label.startswith("zapflow") and r.rules == 50), None)
    pure50 = next(r for r in rows if r.label.startswith("pure") and r.rules == 50)
    if worker50 is not None:
        report.verdict(
            "rules worker, 50 rules",
            f"≥ {TARGET_WORKER:,} events/s per worker",
            f"{worker50.events_per_s:,.0f} events/s",
            worker50.events_per_s >= TARGET_WORKER,
        )
    if mix_median is not None:
        report.verdict(
            "pure engine, 50 rules over an event mix (bench/bench_rules.py), one core",
            f"≥ {TARGET_PURE:,} events/s",
            f"{mix_median:,.0f} events/s (median of rounds)",
            mix_median >= TARGET_PURE,
        )
    report.verdict(
        "pure engine, 50 rules all on messages.upsert (worst case), one core",
        f"≥ {TARGET_PURE:,} events/s",
        f"{pure50.events_per_s:,.0f} events/s",
        pure50.events_per_s >= TARGET_PURE,
    )
    baseline = rows[0]
    report.table(
        "Rules throughput (~1 KB messages.upsert envelopes, 8 partitions)",
        (
            "what",
            "rules",
            "events",
            "events/s",
            "CPU µs/event",
            "cores used",
            "vs consumer baseline",
            "actions",
            "note",
        ),
        [
            (
                r.label,
                r.rules if r.rules is not None else "–",
                fmt_int(r.events),
                fmt_int(r.events_per_s),
                fmt(r.cpu_us),
                fmt(r.cores, 2),
                f"{r.events_per_s / baseline.events_per_s:.3f}×",
                fmt_int(r.actions) if r.actions is not None else "–",
                r.note,
            )
            for r in rows
        ],
    )
    report.sections.append(
        "### Pure engine over an event mix (`bench/bench_rules.py`, run as part of this "
        "benchmark)\n\n" + mix_table
    )
    for r in rows:
        what = r.label if r.label == FLOOR_LABEL else f"zapflow process, {r.rules} rules"
        profile_note(report, what, r.profile)
    report.note(
        "Rules: the first is a throttled auto-reply for direct chats (state per instance and "
        "chat), the others keyword rules (`msg.text is search('(?i)\\bpedido\\s*#?N\\b')`), "
        "each with a `whatsapp.send_text` action (see `bench/workload.py`). Events come from "
        "500 chats of 5 instances; 2 % mention an order number. The pure engine row runs in "
        "the benchmark process on one core (CPU time, not wall time). The stage's floor is "
        "the same command with 5 rules loaded and its evaluation switched off "
        "(`EventProcessor.process` only counts the event): what Faust's stream, the acks and "
        "the commits cost per event in the stage."
    )
