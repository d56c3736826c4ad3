"""DeliveryAcks: an event is acked only after its records, and every earlier event's, are in."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from tests.helpers import wait_for
from worker.process import acks as acks_module
from worker.process.acks import DeliveryAcks


class Producer:
    """Hands out one delivery future per record; the test decides when each is delivered."""

    def __init__(self) -> None:
        self.futures: dict[str, list[asyncio.Future[Any]]] = {}
        self.refuse: dict[str, BaseException] = {}

    async def send(self, record: str) -> asyncio.Future[Any]:
        if record in self.refuse:
            raise self.refuse.pop(record)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.setdefault(record, []).append(future)
        return future

    def deliver(self, record: str, exc: BaseException | None = None) -> None:
        future = self.futures[record][-1]
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)


@pytest.fixture
def producer() -> Producer:
    return Producer()


@pytest.fixture
def acked() -> list[str]:
    return []


@pytest.fixture
def refused() -> list[str]:
    return []


@pytest.fixture
def acks(producer: Producer, acked: list[str], refused: list[str]) -> DeliveryAcks:
    async def ack(events: Sequence[str]) -> None:
        acked.extend(events)

    return DeliveryAcks(producer.send, ack, lambda record, exc: refused.append(record))


@pytest.fixture(autouse=True)
def fast_resend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acks_module, "RESEND_FIRST_S", 0.01)


async def test_an_event_without_records_is_acked_at_once(
    acks: DeliveryAcks, acked: list[str]
) -> None:
    await acks.emit("tp0", "e1", [])
    assert acked == ["e1"]
    assert acks.pending() == 0


async def test_an_event_waits_for_its_records_to_be_delivered(
    acks: DeliveryAcks, producer: Producer, acked: list[str]
) -> None:
    await acks.emit("tp0", "e1", ["r1", "r2"])
    assert acked == []
    producer.deliver("r1")
    await asyncio.sleep(0)
    assert acked == []
    producer.deliver("r2")
    await wait_for(lambda: acked == ["e1"], 2)
    assert acks.pending() == 0


async def test_later_events_of_a_partition_wait_for_earlier_ones(
    acks: DeliveryAcks, producer: Producer, acked: list[str]
) -> None:
    await acks.emit("tp0", "e1", ["r1"])
    await acks.emit("tp0", "e2", [])
    await acks.emit("tp0", "e3", ["r3"])
    await acks.emit("tp1", "f1", [])
    assert acked == ["f1"]
    producer.deliver("r3")
    await asyncio.sleep(0.01)
    assert acked == ["f1"], "e3 must not be acked before e1"
    producer.deliver("r1")
    await wait_for(lambda: acked == ["f1", "e1", "e2", "e3"], 2)


async def test_a_failed_delivery_is_sent_again_until_it_is_in(
    acks: DeliveryAcks, producer: Producer, acked: list[str]
) -> None:
    await acks.emit("tp0", "e1", ["r1"])
    producer.deliver("r1", KafkaConnectionError("broker away"))
    await wait_for(lambda: len(producer.futures["r1"]) == 2, 2)
    assert acked == []
    producer.deliver("r1")
    await wait_for(lambda: acked == ["e1"], 2)


async def test_a_record_the_producer_will_not_take_yet_is_tried_again(
    acks: DeliveryAcks, producer: Producer, acked: list[str]
) -> None:
    producer.refuse["r1"] = RuntimeError("producer not started")
    await acks.emit("tp0", "e1", ["r1"])
    await wait_for(lambda: "r1" in producer.futures, 2)
    producer.deliver("r1")
    await wait_for(lambda: acked == ["e1"], 2)


async def test_a_record_kafka_never_takes_is_reported_and_does_not_stall_the_partition(
    acks: DeliveryAcks, producer: Producer, acked: list[str], refused: list[str]
) -> None:
    producer.refuse["r1"] = MessageSizeTooLargeError()
    await acks.emit("tp0", "e1", ["r1", "r2"])
    producer.deliver("r2", MessageSizeTooLargeError())
    await wait_for(lambda: acked == ["e1"], 2)
    assert refused == ["r1", "r2"]


async def test_stopping_leaves_undelivered_events_unacked(
    acks: DeliveryAcks, producer: Producer, acked: list[str]
) -> None:
    await acks.emit("tp0", "e1", ["r1"])
    producer.deliver("r1", KafkaConnectionError("broker away"))
    await asyncio.sleep(0)
    await acks.stop()
    assert acked == []
    assert acks.pending() == 1


async def test_a_revoked_partition_is_forgotten(
    acks: DeliveryAcks, producer: Producer, acked: list[str]
) -> None:
    await acks.emit("tp0", "e1", ["r1"])
    acks.revoked({"tp0"})
    assert acks.pending() == 0
    await acks.emit("tp0", "e2", [])
    assert acked == ["e2"]
    producer.deliver("r1")
    await asyncio.sleep(0.01)
    assert acked == ["e2"]


async def test_a_cancelled_emit_leaves_its_event_unacked(
    acks: DeliveryAcks, acked: list[str]
) -> None:
    gate = asyncio.Event()

    async def slow_send(record: str) -> asyncio.Future[Any]:
        await gate.wait()
        raise AssertionError("not reached")

    acks.send = slow_send
    task = asyncio.ensure_future(acks.emit("tp0", "e1", ["r1"]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert acked == []
