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
import uuid

from bench.harness import (
    BenchError,
    Child,
    Report,
    Workspace,
    fmt,
    fmt_int,
    list_topics,
    summary,
    wait_for,
)
from bench.parts import (
    SimProcess,
    actions_config,
    ingest_config,
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
        rows = []
        for rate in RATES:
            result = await sim.command(
                op="paced", rate=rate, duration=duration, min_size=SIZE, settle=15.0, within=120.0
            )
            for child in children:
                if not child.alive():
                    raise BenchError(f"{child.name} exited\n{child.log_tail()}")
            stats = summary(result["latencies_ms"])
            usage = {c.name: c.usage() for c in children}
            rows.append((rate, result, stats, usage))
            print(
                f"  {rate}/s: p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms, "
                f"{result['unanswered']} unanswered",
                flush=True,
            )
    finally:
        for child in reversed(children):
            await child.stop()
        await sim.stop()

    at500 = next(r for r in rows if r[0] == 500)
    p99 = at500[2]["p99"]
    report.verdict(
        "end-to-end p99 at 500 events/s",
        f"≤ {TARGET_P99_MS:g} ms",
        f"{p99:.1f} ms ({at500[1]['unanswered']} of {at500[1]['emitted']} unanswered)",
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
                ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items())),
            )
            for rate, result, stats, _ in rows
        ],
    )
    report.note(
        f"Each rate runs {duration:g} s of ~{SIZE} B messages.upsert frames from contacts in "
        f"direct chats of {INSTANCES} instances, then waits up to 15 s for the replies; a "
        "message without a reply by then counts as unanswered (not in the percentiles). One "
        "rule (`latency-probe`, below) is loaded. Processes: simulator, `zapflow ingest`, "
        "`zapflow process` (rocksdb tables), `zapflow actions` (send rate limits off), and the "
        "Kafka broker, all on this machine.\n\n```yaml\n" + PROBE_RULE + "```"
    )


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
        for child in children:
            if not child.alive():
                raise BenchError(f"{child.name} exited during warm-up\n{child.log_tail()}")
        result = await sim.command(op="paced", rate=20, duration=0.5, min_size=SIZE, settle=3.0)
        if result["latencies_ms"]:
            # Let any stragglers of the warm-up arrive before measuring.
            await asyncio.sleep(2.0)
            return time.monotonic() - start
    tails = "\n".join(f"--- {c.name} ---\n{c.log_tail(15)}" for c in children)
    raise BenchError(f"no probe was answered within 120 s of warm-up\n{tails}")
