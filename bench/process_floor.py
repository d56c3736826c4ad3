"""``zapflow process`` with the evaluation of events switched off: the stage's floor.

Runs the real command (the same Faust app, consumer, tables, acks and commits) with
:meth:`worker.process.runtime.EventProcessor.process` replaced by one that only counts the
event and returns no records. What the stage spends per event then is what reading,
acking and committing an event costs in it; the rules benchmark runs it beside the real
stage, so the gap between the two is evaluation, the tables and producing records.

    python -m bench.process_floor process --config ... --rules ...

Takes the arguments of ``zapflow`` itself, and runs on the event loop the ``zapflow``
command would (:mod:`worker.eventloop`), so that the floor and the stage differ only in the
evaluation. Benchmarks only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from worker.cli import main as zapflow_main
from worker.eventloop import use_event_loop
from worker.process.engine import ActionRecordLike
from worker.process.forward import Forward
from worker.process.runtime import NO_ACTIONS, EventProcessor


def count_only(
    self: EventProcessor,
    raw: bytes,
    partition: int,
    state: Any,
    seen: Any,
    now: datetime,
) -> Sequence[ActionRecordLike | Forward]:
    self.counters.events += 1
    return NO_ACTIONS


def main(argv: Sequence[str] | None = None) -> int:
    EventProcessor.process = count_only  # type: ignore[method-assign]
    use_event_loop()
    return zapflow_main(argv)


if __name__ == "__main__":
    sys.exit(main())
