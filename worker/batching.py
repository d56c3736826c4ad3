"""Producer batching per broker, the way Kafka's own producer does it.

aiokafka keeps one batch per partition and sends a partition's batch when *that* batch has
lingered ``linger_ms``; the batches of other partitions wait for their own linger to pass,
and then each goes out in a produce request of its own. A stage that writes a little to many
partitions (a changelog of 8 partitions, say) therefore sends about one request per partition
per linger period, each with a record or two in it, and every request costs a round trip, a
broker request and CPU on both sides.

Kafka's Java producer sends, once any batch for a broker is due, every batch it holds for
that broker in the same request. :class:`BrokerBatchingAccumulator` does the same: when one
batch of a broker has lingered, the other partitions' batches for that broker are closed and
go with it. No record waits longer than ``linger_ms``; some go sooner.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageAccumulator
from faust.transport.drivers.aiokafka import Producer as FaustProducer

from worker.stopping import stop_budget, stop_producer


class BrokerBatchingAccumulator(MessageAccumulator):  # type: ignore[misc]
    """aiokafka's accumulator, draining every batch of a broker once one of them is due."""

    def drain_by_nodes(
        self, ignore_nodes: Collection[int], muted_partitions: Collection[Any] = frozenset()
    ) -> Any:
        due: set[int] = set()
        heads = []
        for tp, batches in self._batches.items():
            if not batches or tp in muted_partitions:
                continue
            leader = self._cluster.leader_for_partition(tp)
            if leader is None or leader == -1 or (ignore_nodes and leader in ignore_nodes):
                continue
            head = batches[0]
            heads.append((leader, head))
            if not head.remaining_linger():
                due.add(leader)
        for leader, head in heads:
            if leader in due:
                # A closed batch takes no more records and counts as due; aiokafka's drain
                # below then takes it with the rest.
                head._builder.close()
        return super().drain_by_nodes(ignore_nodes, muted_partitions)


_P = TypeVar("_P", bound=AIOKafkaProducer)
_App = TypeVar("_App")


def batch_per_broker(producer: _P) -> _P:
    """Make ``producer`` (not started yet) send all its due batches per broker together."""
    accumulator = producer._message_accumulator
    if type(accumulator) is not MessageAccumulator:
        raise TypeError(f"unexpected aiokafka accumulator {type(accumulator).__name__}")
    accumulator.__class__ = BrokerBatchingAccumulator
    return producer


class BrokerBatchingProducer(FaustProducer):
    """Faust's aiokafka producer, batching per broker (:func:`batch_per_broker`), whose
    waits for Kafka are bounded when the app stops (:mod:`worker.stopping`)."""

    def _new_producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        return batch_per_broker(super()._new_producer(transactional_id))

    async def flush(self) -> None:
        if self.app.should_stop:
            await stop_budget(self.app).wait("the producer's last records", super().flush())
        else:
            await super().flush()

    async def on_stop(self) -> None:
        producer = self._producer
        if producer is not None:
            # Faust's on_stop stops it again, which then returns at once.
            await stop_producer(producer, stop_budget(self.app), "the producer's last records")
        await super().on_stop()


def use_broker_batching(app: _App) -> _App:
    """Make a Faust app (its producer not created yet) batch per broker."""
    app.transport.Producer = BrokerBatchingProducer  # type: ignore[attr-defined]
    return app
