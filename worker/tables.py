"""Reading a Faust table one partition at a time.

Both stages keep tables whose keys live on the partition they were written from, and both
walk them now and then (the process stage's sweep, the executor's prune). Faust's
``table.items()`` reads every partition the worker holds; on the RocksDB store each
partition is a database of its own, so one partition's keys can be read alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
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
