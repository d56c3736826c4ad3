"""A durable, bounded, ordered spool on disk for events Kafka could not take.

SQLite in WAL mode: one file, crash-safe commits, and ordered reads by a sequence
number. Records are kept by the ingest sequence number they were received under, so
events that failed in flight and events spooled later drain in receive order.

Not thread-safe; used from the event loop only. Writes are batched by the caller (one
transaction per :meth:`append` call).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from worker.ingest.envelope import KafkaRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers BLOB NOT NULL,
    id TEXT NOT NULL,
    size INTEGER NOT NULL
)
"""


class SpoolFull(Exception):
    """The spool has reached its size bound; the records given were not stored."""

    def __init__(self, path: Path, max_bytes: int, dropped: int) -> None:
        super().__init__(path, max_bytes, dropped)
        self.path = path
        self.max_bytes = max_bytes
        self.dropped = dropped

    def __str__(self) -> str:
        return (
            f"spool {self.path} is full ({self.max_bytes} bytes); {self.dropped} events were "
            "not stored. Bring Kafka back or raise ingest.spool.max_bytes"
        )


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    seq: int
    record: KafkaRecord


def _record_size(record: KafkaRecord) -> int:
    return len(record.value) + len(record.key) + 64


class Spool:
    """Ordered records on disk, bounded by ``max_bytes`` of record data."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only an OS crash may lose the
        # last commits, which is the trade-off for not fsyncing every batch.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        depth, size, last = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(seq), 0) FROM spool"
        ).fetchone()
        self.depth: int = int(depth)
        self.bytes: int = int(size)
        #: Highest sequence number stored when the spool was opened; new sequence
        #: numbers must be above it so old records drain first.
        self.last_seq_at_open: int = int(last)

    @property
    def fill_ratio(self) -> float:
        return self.bytes / self.max_bytes if self.max_bytes else 1.0

    def append(self, records: Iterable[tuple[int, KafkaRecord]]) -> None:
        """Store ``(seq, record)`` pairs in one transaction.

        Raises:
            SpoolFull: the bound was reached; records up to it are stored, the rest not.
        """
        rows = []
        added = 0
        dropped = 0
        for seq, record in records:
            size = _record_size(record)
            if self.bytes + added + size > self.max_bytes:
                dropped += 1
                continue
            added += size
            rows.append(
                (
                    seq,
                    record.topic,
                    record.key,
                    record.value,
                    orjson.dumps([[k, v.decode("latin-1")] for k, v in record.headers]),
                    record.id,
                    size,
                )
            )
        if rows:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO spool (seq, topic, key, value, headers, id, size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            self.depth += len(rows)
            self.bytes += added
        if dropped:
            raise SpoolFull(self.path, self.max_bytes, dropped)

    def oldest(self, limit: int) -> list[SpooledRecord]:
        """Up to ``limit`` records, oldest first."""
        rows = self._db.execute(
            "SELECT seq, topic, key, value, headers, id FROM spool ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        result = []
        for seq, topic, key, value, headers, rid in rows:
            pairs = tuple((str(k), str(v).encode("latin-1")) for k, v in orjson.loads(headers))
            result.append(
                SpooledRecord(
                    seq=int(seq),
                    record=KafkaRecord(
                        topic=topic, key=bytes(key), value=bytes(value), headers=pairs, id=rid
                    ),
                )
            )
        return result

    def remove(self, seqs: Iterable[int]) -> None:
        """Delete delivered records (unknown sequence numbers are ignored)."""
        keys = list(seqs)
        if not keys:
            return
        removed = 0
        removed_bytes = 0
        with self._db:
            self._db.execute("BEGIN")
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                count, size = self._db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool WHERE seq IN ({marks})",
                    chunk,
                ).fetchone()
                self._db.execute(f"DELETE FROM spool WHERE seq IN ({marks})", chunk)
                removed += int(count)
                removed_bytes += int(size)
        self.depth -= removed
        self.bytes -= removed_bytes

    def close(self) -> None:
        self._db.close()
