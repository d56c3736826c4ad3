"""Creating the topics the processing stage reads and writes, before Faust starts.

Faust creates only its own topics (changelogs, the tick topic). A source topic left to the
broker's auto-creation gets ``num.partitions`` (1 by default) and then every table write
fails with ``PartitionsMismatch`` against the configured changelog partition count, so the
event topics and ``codechat.actions`` are created here with the configured count, and
existing ones with another count are refused with a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

#: Kafka error code for a topic created by someone else in the meantime.
TOPIC_ALREADY_EXISTS = 36


class TopicLayoutError(Exception):
    """A topic exists with a partition count the worker cannot work with."""


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the missing topics; check that existing ones have ``partitions`` partitions.

    Returns:
        The names of the topics that were created.

    Raises:
        TopicLayoutError: a topic has another partition count, or could not be created.
    """
    wanted = sorted(set(names))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication_factor) for name in missing]
            )
            for topic, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    message = rest[0] if rest and rest[0] else f"error code {code}"
                    raise TopicLayoutError(f"topic {topic}: could not be created: {message}")
        present = [name for name in wanted if name in existing]
        if present:
            for described in await admin.describe_topics(present):
                count = len(described["partitions"])
                if count != partitions:
                    raise TopicLayoutError(
                        f"topic {described['topic']} has {count} partitions but the process "
                        f"stage is configured for {partitions} (kafka.partitions); the state "
                        "tables must have as many partitions as their source topics: set "
                        f"kafka.partitions to {count}, or recreate the topic"
                    )
        return missing
    finally:
        await admin.close()
