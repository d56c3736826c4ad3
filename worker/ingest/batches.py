"""Ingest's records gathered into Kafka record batches, one open batch per partition.

aiokafka's ``producer.send()`` costs a future per record, the accumulator's bookkeeping, and
a callback per record when its batch is acknowledged. Its batch API
(``producer.create_batch()``, ``BatchBuilder.append``, ``producer.send_batch()``) appends the
record straight into the batch's buffer, and the batch has one future. Ingest's pipeline
alone took 20-23 µs of CPU per record through it at 15,000 records/s, against 35-39 through
``send()`` (``bench/README.md``). Ingest sends everything through it.

:class:`PartitionBatches` keeps what ``send()`` kept for us: one open batch per partition,
handed over when it is full or once the oldest open batch has waited ``linger_s``. Then every
open batch goes, so no record waits longer than the linger for its batch to fill, and the
batches of one moment travel together (as the producer's per-broker batching does,
:mod:`worker.batching`). A batch handed over may still wait in the producer until the
partition's previous batch has left, as a record given to ``send()`` did.

Batches are closed before they are handed over: a closed batch takes no more records, so
none can join it after the producer has taken its size and sequence numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.ingest.envelope import KafkaRecord


@dataclass(eq=False, slots=True)
class OpenBatch:
    """One partition's batch, and the ingest sequence numbers of the records in it."""

    topic: str
    partition: int
    builder: Any  # aiokafka's BatchBuilder
    seqs: list[int] = field(default_factory=list)


class PartitionBatches:
    """Open batches per (topic, partition), handed over full or after ``linger_s``.

    Args:
        new_builder: makes an empty batch (``producer.create_batch``).
        linger_s: how long the oldest open batch may wait for more records.
        clock: monotonic seconds.
    """

    def __init__(
        self, new_builder: Callable[[], Any], linger_s: float, clock: Callable[[], float]
    ) -> None:
        self._new_builder = new_builder
        self._linger_s = linger_s
        self._clock = clock
        self._open: dict[tuple[str, int], OpenBatch] = {}
        #: When the oldest open batch is due (None: nothing is open).
        self.deadline: float | None = None

    def __len__(self) -> int:
        """How many batches are open."""
        return len(self._open)

    def add(self, partition: int, seq: int, record: KafkaRecord) -> OpenBatch | None:
        """Append ``record`` to its partition's batch.

        Returns the partition's previous batch, closed, when it was full: it must be handed
        over now, ahead of the batch the record starts. Otherwise None.
        """
        where = (record.topic, partition)
        batch = self._open.get(where)
        if batch is None:
            batch = self._open[where] = self._start(record.topic, partition)
        if self._append(batch, seq, record):
            return None
        # Full (the append closed it). A new batch takes any one record, however large.
        # Should that fail, the full batch stays where take_all() finds it.
        fresh = self._start(record.topic, partition)
        self._append(fresh, seq, record)
        self._open[where] = fresh
        return batch

    def take_all(self) -> list[OpenBatch]:
        """Every open batch, closed, in the order they were opened."""
        batches = list(self._open.values())
        self._open.clear()
        self.deadline = None
        for batch in batches:
            batch.builder.close()
        return batches

    def _start(self, topic: str, partition: int) -> OpenBatch:
        if self.deadline is None:
            self.deadline = self._clock() + self._linger_s
        return OpenBatch(topic, partition, self._new_builder())

    @staticmethod
    def _append(batch: OpenBatch, seq: int, record: KafkaRecord) -> bool:
        taken = batch.builder.append(
            timestamp=None, key=record.key, value=record.value, headers=list(record.headers)
        )
        if taken is None:
            return False
        batch.seqs.append(seq)
        return True
