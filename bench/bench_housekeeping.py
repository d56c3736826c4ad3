"""What walking the long-lived tables costs: ``python -m bench housekeeping``.

Two tables hold many keys for a long time: the process stage's delivery memory
(``seen-messages``, every message id of the last ``dedupe_ttl_s``, an hour by default) and the
executor's ledger (every action key of the last ``ledger_retention_s``, a week by default).
Both are walked to forget what is old. This fills one partition of a real Faust RocksDB
table of each kind (none of it old enough to forget, as in a steady state, where a pass finds
about a tenth of it due), measures the CPU time per key walked and the longest stretch the
event loop is held, and prints what that comes to:

- **before** (until 2026-11-26): each partition walked whole at once, the event loop handed
  back every 500 keys; the delivery memory every minute, all partitions in the same tick,
  the ledger every ``prune_interval_s`` (10 minutes);
- **now** (:class:`worker.tables.PacedWalks`): a pass per partition every tenth of the
  TTL or retention, each tick (a second) walking its share of it.

It runs in the benchmark's own process (no Kafka: the tables are filled directly) and
times with the thread's CPU clock.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.harness import Report, Workspace, fmt, fmt_int

PARTITIONS = 8
#: Keys remembered per second, all partitions: messages for the delivery memory, actions for
#: the ledger.
MESSAGES_PER_S = 500.0
ACTIONS_PER_S = 50.0


@dataclass
class _Message:
    topic: str
    partition: int


@dataclass
class _Event:
    message: _Message


@dataclass
class Case:
    name: str
    table: str
    rate: float  # keys remembered per second, all partitions
    keep_s: float  # how long a key is kept
    before_every_s: float  # how often a partition was walked whole (the sweep, the prune)

    @property
    def now_period_s(self) -> float:
        """How often a pass begins now."""
        from worker.tables import PacedWalks

        return PacedWalks.period(self.keep_s, self.before_every_s)


def _fill(app: Any, name: str, keys: int, value: Callable[[int], Any]) -> Any:
    import orjson

    table = app.Table(name, partitions=PARTITIONS)
    store = table.data
    database = store._db_for_partition(0)
    for n in range(keys):
        key = f"inst-{n % 5}|messages.upsert|3EB0{n:016X}"
        database.put(store._encode_key(key), orjson.dumps(value(n)))
    return table


def _partition_items(table: Mapping[str, Any], partition: int) -> Iterable[tuple[str, Any]]:
    """The items of ``table`` that may belong to ``partition``, as the walks as they were
    read them (``worker.tables.partition_items`` until 2026-11-26).

    A Faust table on the RocksDB store keeps each partition in a database of its own: only
    that one is read, lazily, through a RocksDB iterator, which sees the database as it was
    when the iteration began and stays valid while the table is written meanwhile (so a
    caller may await between items). Any other mapping (the memory store, a dict) is copied
    whole first, for the same reason. Walking every partition's keys for each partition's
    sweep cost O(keys x partitions) a minute, with the event loop held meanwhile
    (``bench/README.md``).
    """
    store: Any = getattr(table, "data", None)
    databases = getattr(store, "_dbs", None)
    if not isinstance(databases, dict) or not hasattr(store, "_visible_items"):
        return list(table.items())
    database = databases.get(partition)
    if database is None:
        return ()
    decode_key, decode_value = store._decode_key, store._decode_value
    return ((decode_key(key), decode_value(value)) for key, value in store._visible_items(database))


async def _walk_whole(table: Any, check: Callable[[Any], bool]) -> tuple[float, float]:
    """The walk as it was: the whole partition, the loop handed back every WALK_SLICE keys.

    Returns CPU seconds and the longest CPU stretch between two hand-backs."""
    from worker.tables import WALK_SLICE

    start = mark = time.thread_time()
    hold = 0.0
    for index, (_key, stored) in enumerate(_partition_items(table, 0)):
        check(stored)
        if index and index % WALK_SLICE == 0:
            hold, mark = max(hold, time.thread_time() - mark), time.thread_time()
            await asyncio.sleep(0)
    return time.thread_time() - start, hold


async def _walk_paced(
    table: Any, check: Callable[[Any], bool], period_s: float, held: float
) -> tuple[float, int]:
    """One pass as it is now, for a partition of ``held`` keys: the longest tick's CPU
    seconds and the keys a tick walks."""
    from worker.tables import PACED_MINIMUM, PacedWalks

    paced = PacedWalks(1.0)
    paced._walked[0] = int(held)  # the size of the pass before
    share = max(PACED_MINIMUM, math.ceil(held / period_s))
    longest, now = 0.0, 0.0
    while True:
        start, walked = time.thread_time(), 0
        async for items in paced.share(table, 0, now, period_s, lambda: True):
            walked += len(items)
            for _key, stored in items:
                check(stored)
        if not walked:
            return longest, share
        longest = max(longest, time.thread_time() - start)
        now += 1.0


async def _measure(case: Case, keys: int) -> dict[str, float]:
    import faust
    from faust.streams import _current_event

    from worker.actions import ledger
    from worker.process.state import is_expired

    now = time.time()
    held = case.rate * case.keep_s / PARTITIONS
    if case.table == "seen":

        def value(n: int) -> Any:
            return [0, now - n % 3600, f"01J{n:023d}"]

        def check(stored: Any) -> bool:
            return is_expired(stored, 0, now, case.keep_s)

    else:

        def value(n: int) -> Any:
            entry = ledger.claimed({"kind": "whatsapp.send_text"}, 0, now - n % 3600)
            return ledger.completed(entry, now - n % 3600).to_dict()

        def check(stored: Any) -> bool:
            entry = ledger.LedgerEntry.from_dict(stored)
            return entry.finished and entry.updated_at < now - case.keep_s and entry.partition == 0

    with tempfile.TemporaryDirectory() as datadir:
        app = faust.App(
            f"bench-housekeeping-{case.table}",
            broker="kafka://127.0.0.1:1",
            store="rocksdb://",
            datadir=datadir,
        )
        table = _fill(app, case.table, keys, value)
        token = _current_event.set(weakref.ref(_Event(_Message("t", 0))))  # type: ignore[arg-type]
        try:
            whole, hold = await _walk_whole(table, check)
            tick, share = await _walk_paced(table, check, case.now_period_s, held)
        finally:
            _current_event.reset(token)
    per_key = whole / keys
    return {
        "per_key_us": per_key * 1e6,
        "hold_ms": hold * 1000,
        "held": held,
        "before_cores": PARTITIONS * held * per_key / case.before_every_s,
        "before_burst_s": PARTITIONS * held * per_key,
        "now_cores": PARTITIONS * held * per_key / case.now_period_s,
        "tick_ms": tick * 1000,
        "share": share,
    }


async def run(ws: Workspace, report: Report, quick: bool = False) -> None:
    keys = 50_000 if quick else 200_000
    cases = [
        # Keeping times, and the sweep and prune intervals, are the stages' defaults.
        Case("delivery memory (1 h)", "seen", MESSAGES_PER_S, 3600.0, 60.0),
        Case("executor ledger (7 days)", "ledger", ACTIONS_PER_S, 7 * 86400.0, 600.0),
    ]
    rows, measured = [], []
    for case in cases:
        r = await _measure(case, keys)
        measured.append(r)
        rows.append(
            (
                case.name,
                f"{case.rate:g}/s",
                fmt_int(r["held"]),
                f"{fmt(r['per_key_us'])} µs",
                f"{fmt(r['before_burst_s'])} s every {case.before_every_s:g} s (loop held "
                f"{fmt(r['hold_ms'])} ms at a time)",
                f"{fmt(r['before_cores'], 3)} cores",
                f"{case.now_period_s:g} s",
                f"{fmt_int(r['share'])} ({fmt(r['tick_ms'])} ms)",
                f"{fmt(r['now_cores'], 3)} cores",
            )
        )
        print(f"  {case.name}: {r['per_key_us']:.1f} µs per key", flush=True)
    memory, ledger = measured
    report.verdict(
        "housekeeping walks, average CPU",
        "no target (bursts gone)",
        f"{fmt(memory['now_cores'], 3)} cores for the delivery memory, "
        f"{fmt(ledger['now_cores'], 3)} for the ledger (before: "
        f"{fmt(memory['before_cores'], 3)} and {fmt(ledger['before_cores'], 3)})",
        None,
    )
    report.table(
        f"Walking the long-lived tables ({PARTITIONS} partitions; one partition of "
        f"{keys:,} keys walked to measure, CPU time)",
        (
            "table",
            "rate",
            "keys per partition",
            "CPU per key",
            "before: all partitions walked",
            "before: average",
            "now: a pass every",
            "now: keys a tick (longest tick)",
            "now: average",
        ),
        rows,
    )
    report.note(
        "**Before** (until 2026-11-26): each partition walked whole at once, the event loop "
        "handed back every 500 keys; the delivery memory every minute, all partitions in the "
        "same tick; the ledger every `prune_interval_s` (10 minutes). **Now** "
        "(`worker.tables.PacedWalks`): a pass per partition every tenth of the TTL or "
        "retention, each tick (a second) walking its share. The averages scale the measured "
        "CPU per key to the keys each partition holds at the given rate; none of the keys is "
        "old enough to forget, as in a steady state, where a pass finds about a tenth of "
        "them due."
    )
