"""Give a new consumer group a committed offset on every partition before it first consumes.

A Faust worker that has fetched records of a partition but not yet processed them drops
them at a rebalance and, once the partitions are assigned again, seeks each one to its
committed offset. A partition the group has never committed has no such offset, so the
consumer keeps its fetch position, *after* the dropped records: they are skipped for good.
It happens in the first seconds of a fleet's life, when a second worker joins while the
first is fetching its first records (a chaos test lost the very first action record of a
partition that way).

Before a stage starts its Faust worker, :func:`anchor_offsets` commits, for every partition
of the topics it consumes that the group has no offset for, the partition's log start: where
``auto_offset_reset = earliest`` would begin anyway. It only ever fills gaps, never moves an
offset the group has. Kafka accepts such a commit only while the group has no active member,
so when another worker of the fleet is already running (it anchored the group when it
started) the commit is refused and nothing is changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from worker.stopping import stop_consumer

T = TypeVar("T")

log = logging.getLogger("zapflow.kafka")

#: How long to wait for the group coordinator (a fresh broker creates its offsets topic on
#: the first request, and answers "not available" until it has).
COORDINATOR_WAIT_S = 30.0


async def anchor_offsets(
    bootstrap_servers: str,
    group_id: str,
    topics: Sequence[str],
    *,
    client: Mapping[str, Any] | None = None,
) -> int:
    """Commit the log start of each partition of ``topics`` that ``group_id`` has no offset for.

    Returns how many partitions were anchored (0 when the group already had them all, or
    when the group is active and Kafka refused the commit). ``client`` holds more keyword
    arguments of the aiokafka clients (security settings).
    """
    if not topics:
        return 0
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000, **dict(client or {})
    )
    await admin.start()
    try:
        committed = await _retrying(lambda: admin.list_consumer_group_offsets(group_id))
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic.get("partitions") or ()
    ]
    missing = [tp for tp in partitions if committed.get(tp) is None or committed[tp].offset < 0]
    if not missing:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        **dict(client or {}),
    )
    await consumer.start()
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    level = coordinator.level
    try:
        starts = await consumer.beginning_offsets(missing)
        consumer.assign(missing)
        # A refused commit is expected when the group is active; aiokafka logs it as an error.
        coordinator.setLevel(logging.CRITICAL)
        await consumer.commit({tp: OffsetAndMetadata(starts[tp], "") for tp in missing})
    except KafkaError as exc:
        log.info(
            "consumer group %s is active (%s); its running members own its offsets",
            group_id,
            type(exc).__name__,
        )
        return 0
    finally:
        coordinator.setLevel(level)
        await stop_consumer(consumer)
    log.info(
        "consumer group %s: anchored %d partition(s) at their log start", group_id, len(missing)
    )
    return len(missing)


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, again while Kafka says to retry, for up to :data:`COORDINATOR_WAIT_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + COORDINATOR_WAIT_S
    delay = 0.1
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not exc.retriable or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
