"""What forgetting old message ids costs the process stage: ``python -m bench.forgetting``.

The delivery memory (``seen-messages``) holds every message id of the last ``dedupe_ttl_s``;
at 500 messages/s with the default hour and 8 partitions that is 225,000 ids per partition.
This fills one partition of a real Faust RocksDB table with that many ids (none old enough
to forget, as in a steady state, where a pass finds about a tenth of them due) and measures
in CPU time:

- the walk as it was until 2026-11-26: every partition whole, once a minute each, all in
  the same tick, the event loop handed back every 500 keys;
- the walk as it is (:meth:`worker.process.runtime.EventProcessor.forget_old_messages`):
  one pass every ``dedupe_ttl_s`` / 10, each tick walking its share.

Not part of ``make bench``: it measures housekeeping, not the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
import weakref
from dataclasses import dataclass
from typing import Any

PARTITIONS = 8


@dataclass
class _Message:
    topic: str
    partition: int


@dataclass
class _Event:
    message: _Message


def _table(datadir: str, ids: int) -> Any:
    import faust
    import orjson

    app = faust.App(
        "bench-forgetting", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=datadir
    )
    table = app.Table("seen-messages", partitions=PARTITIONS)
    store = table.data
    database = store._db_for_partition(0)
    now = time.time()
    for n in range(ids):
        key = f"inst-{n % 5}|messages.upsert|3EB0{n:016X}"
        database.put(store._encode_key(key), orjson.dumps([0, now - (n % 3600), f"01J{n:023d}"]))
    return table


async def _measure(ids: int, ttl_s: float, sweep_s: float, tick_s: float) -> dict[str, float]:
    from faust.streams import _current_event

    from worker import tables
    from worker.process.runtime import FORGET_PASSES_PER_TTL, FORGET_PER_TICK_MIN
    from worker.process.state import is_expired

    with tempfile.TemporaryDirectory() as datadir:
        table = _table(datadir, ids)
        token = _current_event.set(weakref.ref(_Event(_Message("t", 0))))  # type: ignore[arg-type]
        try:
            now = time.time()
            # Before: the whole partition at once, handing the loop back every WALK_SLICE.
            cpu0 = time.thread_time()
            hold, mark, walked = 0.0, time.thread_time(), 0
            async for _key, stored in tables.walk_partition(table, 0, lambda: True):
                is_expired(stored, 0, now, ttl_s)
                walked += 1
                if walked % tables.WALK_SLICE == 0:
                    hold, mark = max(hold, time.thread_time() - mark), time.thread_time()
            whole = time.thread_time() - cpu0
            # Now: one pass per period, each tick its share of the last pass's size.
            period = max(sweep_s, ttl_s / FORGET_PASSES_PER_TTL)
            share = max(FORGET_PER_TICK_MIN, math.ceil(ids / max(1.0, period / tick_s)))
            walk = tables.PartitionWalk(table, 0)
            ticks, tick_cpu = 0, 0.0
            while not walk.done:
                cpu0 = time.thread_time()
                left = share
                while left > 0 and not walk.done:
                    for _key, stored in walk.take(min(tables.WALK_SLICE, left)):
                        is_expired(stored, 0, now, ttl_s)
                        left -= 1
                    if left and not walk.done:
                        await asyncio.sleep(0)
                tick_cpu = max(tick_cpu, time.thread_time() - cpu0)
                ticks += 1
            passed = walk.visited
        finally:
            _current_event.reset(token)
    per_key_before = whole / ids
    return {
        "ids": ids,
        "walked": passed,
        "before_walk_s": whole,
        "before_hold_ms": hold * 1000,
        "before_cores": PARTITIONS * whole / sweep_s,
        "before_burst_s": PARTITIONS * whole,
        "share": share,
        "ticks": ticks,
        "after_tick_ms": tick_cpu * 1000,
        "after_cores": PARTITIONS * ids * per_key_before / period,
        "period_s": period,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="messages/s remembered")
    parser.add_argument("--ttl", type=float, default=3600.0, help="dedupe_ttl_s")
    args = parser.parse_args()
    ids = int(args.rate * args.ttl / PARTITIONS)
    r = asyncio.run(_measure(ids, args.ttl, 60.0, 1.0))
    print(
        f"{r['ids']:,} ids in one partition ({args.rate:g} messages/s, TTL {args.ttl:g} s, "
        f"{PARTITIONS} partitions)"
    )
    print(
        f"before: one partition walked in {r['before_walk_s']:.2f} s of CPU "
        f"({r['before_walk_s'] / r['ids'] * 1e6:.1f} µs/id), the loop held up to "
        f"{r['before_hold_ms']:.1f} ms at a time; all {PARTITIONS} partitions in the same "
        f"tick every 60 s: {r['before_burst_s']:.1f} s of walking, {r['before_cores']:.3f} "
        "cores on average"
    )
    print(
        f"now: a pass every {r['period_s']:g} s, {r['share']:,} ids a tick over "
        f"{r['ticks']} ticks, each tick up to {r['after_tick_ms']:.1f} ms of CPU; "
        f"{r['after_cores']:.3f} cores on average"
    )


if __name__ == "__main__":
    main()
