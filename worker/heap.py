"""Long-lived objects out of the garbage collector's way.

A full (generation 2) collection walks every object the collector tracks. A worker's
start-up leaves tens of thousands of them (modules, the app, its agents, tables and
connections: ~80,000 in a Faust stage) that live as long as the process, so every full
collection walked them all again: pauses of 50-60 ms in the process stage and the executor,
and 37 ms in ingest, at 500 events/s end to end (``bench/README.md``). Frozen, they are
skipped; a full collection of what is left took 1-2 ms.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections.

    Call it once the process has built what it keeps for its lifetime. Objects frozen are
    never freed, so nothing that comes and goes should exist yet in bulk.
    """
    gc.collect()
    gc.freeze()
