"""worker.heap: the start-up heap is frozen out of the collector's full collections."""

from __future__ import annotations

import gc

from worker.heap import freeze_startup_heap


def test_objects_alive_at_start_up_are_no_longer_tracked_by_collections() -> None:
    kept = [[index] for index in range(1_000)]  # container objects the collector tracks
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        tracked = {id(obj) for generation in range(3) for obj in gc.get_objects(generation)}
        assert frozen >= len(kept)
        assert not any(id(obj) in tracked for obj in kept)
    finally:
        gc.unfreeze()
