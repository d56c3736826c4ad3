"""Reading a Faust table one partition at a time.

Both stages keep tables whose keys live on the partition they were written from, and both
walk them now and then (the process stage's sweep, the executor's prune). Faust's
``table.items()`` reads every partition the worker holds; on the RocksDB store each
partition is a database of its own, so one partition's keys can be read alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

#: A walk hands the event loop back after this many keys (a few ms of work).
WALK_SLICE = 500


def partition_items(table: Mapping[str, Any], partition: int) -> Iterable[tuple[str, Any]]:
    """The items of ``table`` that may belong to ``partition``; callers still check.

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


async def walk_partition(
    table: Mapping[str, Any], partition: int, still_ours: Callable[[], bool]
) -> AsyncIterator[tuple[str, Any]]:
    """:func:`partition_items`, handing the event loop back every :data:`WALK_SLICE` keys.

    For walks of a whole partition that may hold millions of keys (the executor's prune,
    the process stage's forgetting of old message ids): the worker's other work runs in
    between. The walk ends early once ``still_ours()`` says the partition was taken away,
    which is left to its next owner.
    """
    for index, item in enumerate(partition_items(table, partition)):
        if index and index % WALK_SLICE == 0:
            await asyncio.sleep(0)
            if not still_ours():
                return
        yield item


class PartitionWalk:
    """One pass over one partition of a table, taken a slice at a time across event turns.

    For housekeeping that must not come in bursts: the process stage forgets old message ids
    a bounded slice per tick, spread over minutes, instead of walking the whole partition at
    once (``bench/README.md``). On the RocksDB store no iterator is held between slices:
    each slice seeks past the last key it read (RocksDB keeps a database's keys in byte
    order), so a pass that lasts minutes pins no memtable or file, and keys written ahead of
    the cursor meanwhile are seen. Any other mapping is copied whole when the pass begins.
    The pass is :attr:`done` once a slice comes back short, or the partition's database is
    gone (the partition was taken away).
    """

    def __init__(self, table: Mapping[str, Any], partition: int) -> None:
        self._table = table
        self._partition = partition
        self._after: bytes | None = None
        self._copy: Iterator[tuple[str, Any]] | None = None
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
        else:
            if self._copy is None:
                self._copy = iter(list(partition_items(self._table, self._partition)))
            items = list(islice(self._copy, limit))
        self.visited += len(items)
        if len(items) < limit:
            self.done = True
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
