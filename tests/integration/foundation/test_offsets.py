"""anchor_offsets gives a new consumer group an offset on every partition, and only fills gaps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from tests.helpers import wait_for
from worker.offsets import anchor_offsets

MakeTopic = Callable[..., Awaitable[str]]


async def group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def test_a_new_group_is_anchored_at_the_log_start_of_every_partition(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = await make_topic("anchor", partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(4):
            await producer.send_and_wait(topic, b"x", partition=n % 3)
    finally:
        await producer.stop()
    group = f"anchor-{uuid.uuid4().hex[:8]}"
    assert await anchor_offsets(kafka_bootstrap, group, [topic]) == 3
    assert await group_offsets(kafka_bootstrap, group) == {
        TopicPartition(topic, p): 0 for p in range(3)
    }
    assert await anchor_offsets(kafka_bootstrap, group, [topic]) == 0


async def test_an_offset_the_group_has_is_never_moved(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = await make_topic("anchor", partitions=2)
    group = f"anchor-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(5, "")})
    finally:
        await consumer.stop()
    assert await anchor_offsets(kafka_bootstrap, group, [topic]) == 1
    assert await group_offsets(kafka_bootstrap, group) == {
        TopicPartition(topic, 0): 5,
        TopicPartition(topic, 1): 0,
    }


async def test_an_active_group_is_left_to_its_members(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    consumed, other = await make_topic("anchor", partitions=1), await make_topic("anchor")
    group = f"anchor-{uuid.uuid4().hex[:8]}"
    member = AIOKafkaConsumer(consumed, bootstrap_servers=kafka_bootstrap, group_id=group)
    await member.start()
    try:
        await wait_for(lambda: bool(member.assignment()), 30, message="the member's assignment")
        assert await anchor_offsets(kafka_bootstrap, group, [other]) == 0
        assert TopicPartition(other, 0) not in await group_offsets(kafka_bootstrap, group)
    finally:
        await asyncio.shield(member.stop())
