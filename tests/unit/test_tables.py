"""worker.tables: one partition of a Faust table, read alone."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.streams import _current_event

from worker import tables
from worker.tables import PacedWalks, PartitionWalk


@dataclass
class Message:
    topic: str
    partition: int


@dataclass
class Event:
    message: Message


@contextmanager
def on_partition(partition: int) -> Iterator[None]:
    """The store writes to the partition of the current event, as in a stream."""
    event = Event(Message("zf.messages.upsert", partition))
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


def rocksdb_table(tmp_path: Path) -> Any:
    app = faust.App(
        "zf-tables-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path)
    )
    table = app.Table("seen-messages", partitions=4)
    for partition in range(3):
        with on_partition(partition):
            for n in range(3):
                table[f"{partition}:{n}"] = [partition, float(n), f"e{n}"]
    return table


def test_a_walk_takes_rocksdb_slices_in_key_order_and_resumes_past_the_last_key(
    tmp_path: Path,
) -> None:
    table = rocksdb_table(tmp_path)
    walk = PartitionWalk(table, 2)
    assert walk.take(2) == [("2:0", [2, 0.0, "e0"]), ("2:1", [2, 1.0, "e1"])]
    with on_partition(2):
        del table["2:0"]  # behind the cursor
        table["2:1a"] = [2, 9.0, "new"]  # ahead of it
    assert not walk.done
    assert walk.take(2) == [("2:1a", [2, 9.0, "new"]), ("2:2", [2, 2.0, "e2"])]
    assert walk.take(2) == []
    assert walk.done
    assert walk.visited == 4


def test_a_walk_ends_on_a_short_slice_or_a_partition_not_held(tmp_path: Path) -> None:
    table = rocksdb_table(tmp_path)
    walk = PartitionWalk(table, 0)
    assert [key for key, _ in walk.take(5)] == ["0:0", "0:1", "0:2"]
    assert walk.done
    assert walk.take(5) == []
    absent = PartitionWalk(table, 3)
    assert absent.take(5) == []
    assert absent.done


def test_a_walk_of_a_plain_mapping_reads_the_keys_it_began_with_as_they_are_now() -> None:
    table = {"a": [0, 1], "b": [1, 2], "c": [0, 3]}
    walk = PartitionWalk(table, 0)
    first = walk.take(1)
    table["b"] = [1, 5]  # changed since the pass began: read as it is
    del table["c"]  # dropped: left out
    table["d"] = [0, 4]  # not in this pass
    assert first + walk.take(5) == [("a", [0, 1]), ("b", [1, 5])]
    assert walk.done


async def test_a_pass_left_when_the_partition_went_begins_again_when_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tables, "WALK_SLICE", 10)
    table = {f"k{n:02d}": [0, n] for n in range(30)}
    paced = PacedWalks(tick_s=1.0)
    ours = [True]

    async def share(now: float) -> list[str]:
        keys: list[str] = []
        async for items in paced.share(table, 0, now, 3600.0, lambda: ours[0]):
            keys += [key for key, _ in items]
            ours[0] = False  # taken away after the first slice
        return keys

    assert len(await share(0.0)) == 10
    ours[0] = True
    # Back one tick later: a new pass from the start, not an hour later.
    assert (await share(1.0))[0] == "k00"
