"""Subscription scale: 1,000 and 5,000 live subscriptions (instances × 10 events) in one
``zapflow ingest`` process: resident memory, CPU at idle, and the time until every one of
them is live again after the simulator drops every socket at once.

Ingest runs with its default settings: 20 s pings and a first reconnect delay drawn from
[0, 5 s] (full jitter, so that thousands of subscriptions do not all knock at once); the
reconnect time therefore has a ~5 s floor by design.
"""

from __future__ import annotations

import asyncio

from bench.harness import (
    BenchError,
    Child,
    Report,
    Workspace,
    cpu_share,
    fmt,
    fmt_int,
    raise_open_files_limit,
)
from bench.parts import SimProcess, ingest_config, start_ingest, unique_prefix

TARGET_RSS = 1024**3
EVENTS = (
    "connection.update",
    "messages.upsert",
    "messages.update",
    "send.message",
    "contacts.upsert",
    "presence.update",
    "chats.update",
    "chats.upsert",
    "groups.update",
    "group-participants.update",
)


async def measure(ws: Workspace, count: int, idle: float) -> dict[str, float]:
    workdir = ws.dir(f"subscriptions-{count}")
    instances = count // len(EVENTS)
    sim = await SimProcess.start(workdir, instances, EVENTS)
    ingest: Child | None = None
    try:
        config = ingest_config(workdir, sim, ws.bootstrap, unique_prefix("subs"), events=EVENTS)
        ingest = await start_ingest(workdir, config)
        connect = await sim.wait_live(count, 300.0, watch=ingest)
        await asyncio.sleep(2.0)
        before = ingest.usage()
        sim_before = sim.child.usage()
        await asyncio.sleep(idle)
        after = ingest.usage()
        sim_after = sim.child.usage()
        dropped = await sim.command(op="drop", expect=count, within=300.0, timeout=400.0)
        if dropped["seconds"] is None:
            raise BenchError(
                f"only {dropped['live']} of {count} subscriptions were live again after 300 s"
            )
        await asyncio.sleep(1.0)
        if not ingest.alive():
            raise BenchError(f"ingest exited\n{ingest.log_tail()}")
        end = ingest.usage()
        return {
            "subscriptions": count,
            "instances": instances,
            "connect_s": connect,
            "rss": after.rss,
            "peak_rss": end.peak_rss,
            "idle_cores": cpu_share(before, after),
            "sim_idle_cores": cpu_share(sim_before, sim_after),
            "closed": dropped["closed"],
            "reconnect_s": dropped["seconds"],
        }
    finally:
        if ingest is not None:
            await ingest.stop(30.0)
        await sim.stop()


async def run(ws: Workspace, report: Report, quick: bool = False) -> None:
    limit = raise_open_files_limit()
    idle = 5.0 if quick else 20.0
    rows = []
    for count in (1000, 5000):
        if count * 2 + 200 > limit:
            report.note(f"Skipped {count:,}: the open-files limit is {limit:,}.")
            continue
        rows.append(await measure(ws, count, idle))
    big = next((r for r in rows if r["subscriptions"] == 5000), None)
    if big is not None:
        report.verdict(
            "5,000 subscriptions in one process",
            "< 1 GiB resident",
            f"{big['peak_rss'] / 2**20:,.0f} MiB peak",
            big["peak_rss"] < TARGET_RSS,
        )
    report.table(
        "Subscription scale (one ingest process, instances × 10 events)",
        (
            "subscriptions",
            "instances",
            "all live after start (s)",
            "RSS idle (MiB)",
            "peak RSS (MiB)",
            "idle CPU (cores)",
            "sockets dropped",
            "all live again after (s)",
        ),
        [
            (
                fmt_int(r["subscriptions"]),
                fmt_int(r["instances"]),
                fmt(r["connect_s"]),
                fmt_int(r["rss"] / 2**20),
                fmt_int(r["peak_rss"] / 2**20),
                fmt(r["idle_cores"], 3),
                fmt_int(r["closed"]),
                fmt(r["reconnect_s"]),
            )
            for r in rows
        ],
    )
    report.note(
        f"Idle CPU over {idle:g} s with no events (pings every 20 s per socket). 'All live "
        "again' runs from the simulator closing every socket (close frame 1001) until each "
        "(instance, event) has a live subscriber again, as the simulator sees it. The peak "
        "RSS includes the reconnect storm. The open-files limit was raised to "
        f"{limit:,} for the run."
    )
