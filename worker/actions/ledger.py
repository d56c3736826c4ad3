"""What the executor remembers per idempotency key (pure; stored in a changelog-backed table).

A key goes ``pending`` (claimed: the record is kept, with the attempts made so far and when the
next one is due) and ends ``done`` or ``failed`` (sent to the dead-letter topic). A key that has
an entry is never claimed again, so a redelivered or replayed record is not performed twice; a
``pending`` entry found after a restart or rebalance is resumed from the table.

Crash windows, in order:

1. claimed, claim not yet in Kafka: nothing has been sent (a task flushes the changelog before
   its first request) and the record's offset is not committed either (Faust flushes the
   producer before it commits offsets), so Kafka redelivers the record and it is claimed anew;
2. claimed and flushed, request not yet sent: resumed from the table, the request is sent once
   (a claim that counted the record's first attempt, as claims of records that could be sent
   at once do, leaves that attempt used);
3. request sent, ``done`` not yet in Kafka (it is sent without waiting, see below): resumed
   and sent again, with the same ``Idempotency-Key`` header and, for gateway sends, the same
   ``options.messageId``, so the far side can recognise the repeat. An endpoint that ignores
   both may act twice. The window is one request plus one changelog write long; a warm
   shutdown (SIGTERM) lets requests on the wire finish first, so only crashes, kills and lost
   partitions open it;
4. dead-lettered, ``failed`` not yet in Kafka: the dead letter may be written twice (same key).

Only the claim-and-count write before a request is waited for; ``done``, ``failed`` and retry
times are sent without waiting, since waiting would not shorten window 3, only hold the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

LedgerState = Literal["pending", "done", "failed"]
_STATES: Final = ("pending", "done", "failed")


@dataclass(frozen=True)
class LedgerEntry:
    """The table value for one idempotency key."""

    state: LedgerState
    #: Attempts started so far (an attempt counts from the moment it is about to be sent).
    attempts: int
    #: Partition of the actions topic the key lives on (the table's changelog partition).
    partition: int
    #: The action record as received, kept while ``pending`` so the work can be resumed.
    record: Mapping[str, Any] | None = None
    #: Wall-clock time (epoch seconds) the next attempt is due; ``None`` = now.
    next_at: float | None = None
    #: Last failure, for ``pending`` (retrying) and ``failed`` entries.
    error: str | None = None
    #: Wall-clock time of the last change, epoch seconds.
    updated_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state != "pending"

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "attempts": self.attempts,
            "partition": self.partition,
            "record": dict(self.record) if self.record is not None else None,
            "next_at": self.next_at,
            "error": self.error,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        state = data.get("state")
        if state not in _STATES:
            raise ValueError(f"ledger entry has unknown state {state!r}")
        record = data.get("record")
        return cls(
            state=state,
            attempts=int(data.get("attempts", 0)),
            partition=int(data.get("partition", 0)),
            record=dict(record) if isinstance(record, Mapping) else None,
            next_at=data.get("next_at"),
            error=data.get("error"),
            updated_at=float(data.get("updated_at", 0.0)),
        )


def claimed(record: Mapping[str, Any], partition: int, now: float) -> LedgerEntry:
    """Entry for a key seen for the first time: pending, no attempt yet."""
    return LedgerEntry(
        state="pending", attempts=0, partition=partition, record=dict(record), updated_at=now
    )


def attempt_started(entry: LedgerEntry, now: float) -> LedgerEntry:
    """Count one more attempt before it is made (so a crash during it still counts)."""
    return replace(entry, attempts=entry.attempts + 1, next_at=None, updated_at=now)


def retry_scheduled(entry: LedgerEntry, error: str, next_at: float, now: float) -> LedgerEntry:
    """The attempt failed and will be repeated at ``next_at``."""
    return replace(entry, next_at=next_at, error=error, updated_at=now)


def completed(entry: LedgerEntry, now: float) -> LedgerEntry:
    """Performed: keep only what dedupe needs (the record is dropped to keep the table small)."""
    return LedgerEntry(
        state="done", attempts=entry.attempts, partition=entry.partition, updated_at=now
    )


def dead_lettered(entry: LedgerEntry, error: str, now: float) -> LedgerEntry:
    """Given up and written to the dead-letter topic; never attempted again."""
    return LedgerEntry(
        state="failed",
        attempts=entry.attempts,
        partition=entry.partition,
        error=error,
        updated_at=now,
    )
