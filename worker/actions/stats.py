"""Plain counters of the executor; ``worker.actions.metrics`` turns them into Prometheus metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ExecutorStats:
    """What the executor has done since the process started."""

    #: kind -> actions performed successfully
    performed: Counter[str] = field(default_factory=Counter)
    #: (kind, retriable) -> actions written to the dead-letter topic
    dead_lettered: Counter[tuple[str, bool]] = field(default_factory=Counter)
    #: kind -> failed attempts that were scheduled for a retry
    retries: Counter[str] = field(default_factory=Counter)
    #: records whose key was already done or failed (redeliveries, replays)
    duplicates_skipped: int = 0
    #: pending keys picked up again from the table after a restart or rebalance
    resumed: int = 0
    #: records on the actions topic that were not valid action records
    invalid_records: int = 0
    #: sends that had to wait for a send limit, and how long they waited in all
    send_limit_waits: int = 0
    send_limit_wait_seconds: float = 0.0
