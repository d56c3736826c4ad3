"""Reading a Faust table one partition at a time, a slice at a time.

Both stages keep tables whose keys live on the partition they were written from, and both
walk them now and then (the process stage's sweeps of its rule state and its forgetting of
old message ids, the executor's prune). Faust's ``table.items()`` reads every partition the
worker holds; on the RocksDB store each partition is a database of its own, so one
partition's keys can be read alone (:class:`PartitionWalk`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from itertools import islice
from typing import Any

#: A walk hands the event loop back after this many keys (a few ms of work).
WALK_SLICE = 500


class PartitionWalk:
    """One pass over one partition of a table, taken a slice at a time across event turns.

    For housekeeping that must not come in bursts (:class:`PacedWalks`): a pass spread over
    minutes, a slice at a time, instead of the whole partition at once. On the RocksDB store
    no iterator is held between slices: each slice seeks past the last key it read (RocksDB
    keeps a database's keys in byte order), so a pass that lasts minutes pins no memtable or
    file, and keys written ahead of the cursor meanwhile are seen. Of any other mapping the
    keys are copied when the pass begins, and each slice reads their values when it is taken
    (keys dropped meanwhile are left out). Either way a slice holds the values as they are
    when it is taken. The pass is :attr:`done` once a slice comes back short, or the
    partition's database is gone (the partition was taken away).
    """

    def __init__(self, table: Mapping[str, Any], partition: int) -> None:
        self._table = table
        self._partition = partition
        self._after: bytes | None = None
        self._copy: Iterator[str] | None = None
        #: Keys handed out so far.
        self.visited = 0
        self.done = False

    def take(self, limit: int) -> list[tuple[str, Any]]:
        """The next ``limit`` items (fewer at the end of the pass; none once done)."""
        if self.done:
            return []
        store: Any = getattr(self._table, "data", None)
        databases = getattr(store, "_dbs", None)
        if isinstance(databases, dict) and getattr(store, "use_rocksdict", False):
            items = self._rocksdb_slice(store, databases, limit)
            self.done = len(items) < limit
        else:
            if self._copy is None:
                # The keys only: a copy of the items makes a tuple per key, and as many new
                # objects at once set off a full collection of a large heap (50-100 ms seen
                # at 125,000 keys).
                self._copy = iter(list(self._table))
            keys = list(islice(self._copy, limit))
            self.done = len(keys) < limit
            # Read now, not when the pass began: a key written or dropped since is seen so.
            table = self._table
            items = [(key, value) for key in keys if (value := table.get(key)) is not None]
        self.visited += len(items)
        return items

    def _rocksdb_slice(
        self, store: Any, databases: dict[int, Any], limit: int
    ) -> list[tuple[str, Any]]:
        database = databases.get(self._partition)
        if database is None:
            return []
        raw: list[tuple[bytes, bytes]] = []
        for key, value in database.items(from_key=self._after):
            if key in (self._after, store.offset_key):
                continue
            raw.append((key, value))
            if len(raw) == limit:
                break
        if raw:
            self._after = raw[-1][0]
        decode_key, decode_value = store._decode_key, store._decode_value
        return [(decode_key(key), decode_value(value)) for key, value in raw]


#: The fewest keys a tick walks while a paced pass is under way: one slice.
PACED_MINIMUM = WALK_SLICE
#: A pass begins every keeping time / this (see :meth:`PacedWalks.period`).
PASSES_PER_KEEPING = 10


class PacedWalks:
    """Housekeeping passes over the partitions of a table, each spread over many ticks.

    For tables that hold hours or days of keys (the process stage's delivery memory, the
    executor's ledger), where walking a partition whole at once holds the event loop for
    seconds, and walking it every few minutes reads each key hundreds of times in its life
    (``bench/README.md``). A pass over a partition begins at most once a period (the caller
    passes it to every :meth:`share`), and each tick walks only its share: the last pass's
    size spread over the ticks of one period, at least :data:`PACED_MINIMUM` keys. A pass
    is :class:`PartitionWalk`, so a write between ticks breaks nothing.
    """

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._walks: dict[int, PartitionWalk] = {}
        self._began: dict[int, float] = {}
        self._walked: dict[int, int] = {}

    async def share(
        self,
        table: Mapping[str, Any],
        partition: int,
        now_s: float,
        period_s: float,
        still_ours: Callable[[], bool],
        *,
        on_begin: Callable[[], None] = lambda: None,
    ) -> AsyncGenerator[list[tuple[str, Any]], None]:
        """This tick's share of the partition's pass (begun now if one is due: ``on_begin``
        is called then), in slices of :data:`WALK_SLICE` keys with the event loop handed
        back in between.

        A partition taken away mid-pass is left to its next owner: its pass ends there, and
        should the partition come back, its next tick begins a new one.
        """
        walk = self._walks.get(partition)
        if walk is None:
            if now_s - self._began.get(partition, -math.inf) < period_s:
                return
            walk = self._walks[partition] = PartitionWalk(table, partition)
            self._began[partition] = now_s
            on_begin()
        ticks = max(1.0, period_s / self.tick_s)
        left = max(PACED_MINIMUM, math.ceil(self._walked.get(partition, 0) / ticks))
        while left > 0 and not walk.done:
            if not still_ours():
                self._walks.pop(partition, None)
                self._began.pop(partition, None)
                return
            items = walk.take(min(WALK_SLICE, left))
            left -= len(items)
            if items:
                yield items
            if left > 0 and not walk.done:
                await asyncio.sleep(0)
        if walk.done:
            self.abandon(partition)

    @staticmethod
    def period(keep_s: float, shortest_s: float) -> float:
        """How often a pass begins over a table that keeps keys ``keep_s`` seconds.

        A tenth of that (:data:`PASSES_PER_KEEPING`), and never more often than
        ``shortest_s``: the table holds at most a tenth more keys than it must, and each key
        is read about ten times in its life.
        """
        return max(shortest_s, keep_s / PASSES_PER_KEEPING)

    def walked_whole(self, partition: int, now_s: float, keys: int) -> None:
        """The caller has just walked the partition's ``keys`` keys whole, itself: the next
        pass begins a period from now, and its shares are sized by that walk."""
        self._walks.pop(partition, None)
        self._began[partition] = now_s
        self._walked[partition] = keys

    def abandon(self, partition: int) -> None:
        """End the partition's pass here (done, or failed); the next begins when due."""
        walk = self._walks.pop(partition, None)
        if walk is not None:
            self._walked[partition] = walk.visited

    def reset(self) -> None:
        """After a rebalance: drop the passes under way; each partition's next tick begins one."""
        self._walks.clear()
        self._began.clear()
