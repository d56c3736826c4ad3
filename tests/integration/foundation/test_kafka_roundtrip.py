"""The suite's own broker works: records produced with aiokafka come back in order."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import MakeTopic


async def test_records_produced_are_consumed_in_order(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = await make_topic("roundtrip", partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i in range(100):
            await producer.send(
                topic, key=b"k", value=f"v{i}".encode(), headers=[("n", str(i).encode())]
            )
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen: list[tuple[bytes, list[tuple[str, bytes]]]] = []
        while len(seen) < 100:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"no records within 10 s, got {len(seen)} of 100"
            for records in batches.values():
                seen.extend((r.value, list(r.headers)) for r in records)
    finally:
        await consumer.stop()
    assert [value for value, _ in seen] == [f"v{i}".encode() for i in range(100)]
    assert seen[42][1] == [("n", b"42")]
