"""worker.batching: once one batch for a broker is due, every batch for that broker goes."""

from __future__ import annotations

import time
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.structs import TopicPartition

from worker.batching import (
    BrokerBatchingAccumulator,
    BrokerBatchingProducer,
    batch_per_broker,
    use_broker_batching,
)

TP0, TP1, TP2 = (TopicPartition("t", p) for p in range(3))
#: Partitions 0 and 1 are led by broker 1, partition 2 by broker 2.
LEADERS = {TP0: 1, TP1: 1, TP2: 2}
LINGER_MS = 10_000


class Leaders:
    """The one thing the accumulator asks of the cluster metadata."""

    def leader_for_partition(self, tp: TopicPartition) -> int:
        return LEADERS[tp]


def accumulator(kind: type[MessageAccumulator]) -> Any:
    return kind(Leaders(), 16_384, 0, 30.0, linger_ms=LINGER_MS)


async def fill(acc: Any, *tps: TopicPartition) -> None:
    for tp in tps:
        await acc.add_message(tp, None, b"v", timeout=1.0)


def make_due(acc: Any, tp: TopicPartition) -> None:
    """Age the head batch of ``tp`` past the linger time."""
    acc._batches[tp][0]._ctime = time.monotonic() - LINGER_MS / 1000 - 1


def drained(nodes: dict[int, dict[TopicPartition, Any]]) -> dict[int, set[TopicPartition]]:
    return {node: set(batches) for node, batches in nodes.items()}


async def test_aiokafka_alone_sends_only_the_batch_that_is_due() -> None:
    # The behaviour being replaced: one request per partition per linger period.
    acc = accumulator(MessageAccumulator)
    await fill(acc, TP0, TP1, TP2)
    make_due(acc, TP0)
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())
    assert drained(nodes) == {1: {TP0}}


async def test_a_due_batch_takes_every_batch_for_its_broker_along() -> None:
    acc = accumulator(BrokerBatchingAccumulator)
    await fill(acc, TP0, TP1, TP2)
    make_due(acc, TP0)
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())
    assert drained(nodes) == {1: {TP0, TP1}}
    # Broker 2's batch is not due and still takes records.
    assert not acc._batches[TP2][0]._builder.closed()


async def test_nothing_due_sends_nothing_and_keeps_batches_open() -> None:
    acc = accumulator(BrokerBatchingAccumulator)
    await fill(acc, TP0, TP1)
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())
    assert nodes == {}
    await fill(acc, TP1)
    assert len(acc._batches[TP1]) == 1
    assert acc._batches[TP1][0].record_count == 2


async def test_a_broker_with_a_request_in_flight_is_left_alone() -> None:
    acc = accumulator(BrokerBatchingAccumulator)
    await fill(acc, TP0, TP1)
    make_due(acc, TP0)
    nodes, _ = acc.drain_by_nodes(ignore_nodes={1})
    assert nodes == {}
    assert not acc._batches[TP1][0]._builder.closed()
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())
    assert drained(nodes) == {1: {TP0, TP1}}


async def test_a_producer_is_switched_before_it_starts() -> None:
    producer = batch_per_broker(AIOKafkaProducer(bootstrap_servers="127.0.0.1:1"))
    assert type(producer._message_accumulator) is BrokerBatchingAccumulator
    with pytest.raises(TypeError, match="unexpected aiokafka accumulator"):
        batch_per_broker(producer)


async def test_a_faust_app_produces_with_broker_batching() -> None:
    app = use_broker_batching(faust.App("zf-batching-test", broker="kafka://127.0.0.1:1"))
    assert isinstance(app.producer, BrokerBatchingProducer)
    producer = app.producer._new_producer()
    assert type(producer._message_accumulator) is BrokerBatchingAccumulator
