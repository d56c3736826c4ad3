"""Rule state and delivery memory as stored in the worker's Faust tables.

Every table value is ``[partition, value]``: the partition of the event that wrote it. The
state is co-partitioned with the event topics (a key's events all arrive on one partition and
its changelog record goes to the same partition number), but a Faust table cannot write
outside the context of an event, and its RocksDB store reads and writes the partition of the
*current* event. The periodic tick therefore runs as an event on each partition in turn and
must know which keys belong to that partition: the stored partition number tells it without
re-deriving the producer's partitioner.

The engine sees the table through :class:`EngineState`, a read-only mapping of the bare
values, and returns its writes as ``changes``; :func:`apply_changes` puts them in the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

#: Separator between a state key's rule id and its key parts (contracts §3).
RULE_SEPARATOR = "|"


class EngineState(Mapping[str, Any]):
    """The state table as the engine reads it: values without their partition tag."""

    __slots__ = ("_table",)

    def __init__(self, table: Mapping[str, Any]) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Any:
        return self._table[key][1]

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


class PartitionView(Mapping[str, Any]):
    """What ``fire_due`` sees of one partition: the keys of ``local`` to walk, and any other
    key of the partition looked up in the table.

    The engine walks only ``local`` (the keys of the rules with deadlines between sweeps, a
    slice of the partition in a sweep), but a deadline that fires consults other rules'
    state: ``inhibited_by`` a rule without ``for`` reads that rule's throttle. Those keys
    are not in ``local``, so they are read from the table, bare and only if they are the
    partition's.
    """

    __slots__ = ("_local", "_partition", "_table")

    def __init__(self, local: Mapping[str, Any], table: Mapping[str, Any], partition: int):
        self._local = local
        self._table = table
        self._partition = partition

    def __getitem__(self, key: str) -> Any:
        if key in self._local:
            return self._local[key]
        stored = self._table.get(key)
        if stored is None or stored[0] != self._partition:
            raise KeyError(key)
        return stored[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._local)

    def __len__(self) -> int:
        return len(self._local)


def apply_changes(
    table: MutableMapping[str, Any], changes: Mapping[str, Any | None], partition: int
) -> None:
    """Write the engine's state changes for an event of ``partition``; ``None`` deletes."""
    for key, value in changes.items():
        if value is None:
            if key in table:
                del table[key]
        else:
            table[key] = [partition, value]


def partition_state(items: Iterable[tuple[str, Any]], partition: int) -> dict[str, Any]:
    """The bare state of one partition, as a plain dict for ``fire_due``."""
    return {key: stored[1] for key, stored in items if stored[0] == partition}


def rule_id_of(state_key: str) -> str:
    """The rule id a state key belongs to (contracts §3: ``"<rule-id>|<key parts...>"``)."""
    return state_key.split(RULE_SEPARATOR, 1)[0]


def keys_of_rules(
    items: Iterable[tuple[str, Any]], partition: int, rule_ids: frozenset[str]
) -> list[str]:
    """Keys of ``partition`` that belong to the given rules (to drop after a reload)."""
    if not rule_ids:
        return []
    return [key for key, stored in items if stored[0] == partition and rule_id_of(key) in rule_ids]


def seen_before(
    seen: Mapping[str, Any], key: str, event_id: str, *, now_s: float, ttl_s: float
) -> bool:
    """Whether another envelope already delivered this gateway message within ``ttl_s``.

    The same envelope seen again is a Kafka redelivery (the worker restarted before
    committing), not a second delivery by the gateway, so it is evaluated again: its actions
    keep their idempotency keys and the executor performs them once.
    """
    entry = seen.get(key)
    return entry is not None and now_s - entry[1] < ttl_s and entry[2] != event_id


def remember(
    seen: MutableMapping[str, Any], key: str, event_id: str, partition: int, now_s: float
) -> None:
    """Note that ``event_id`` delivered the gateway message ``key``."""
    seen[key] = [partition, now_s, event_id]


def is_expired(stored: Any, partition: int, now_s: float, ttl_s: float) -> bool:
    """Whether a delivery-memory entry is of ``partition`` and older than ``ttl_s``."""
    return bool(stored[0] == partition and now_s - stored[1] >= ttl_s)
