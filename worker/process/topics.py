"""Creating the topics the processing stage reads and writes, before Faust starts.

Faust creates only its own topics (changelogs, the tick topic). A source topic left to the
broker's auto-creation gets ``num.partitions`` (1 by default) and then every table write
fails with ``PartitionsMismatch`` against the configured changelog partition count, so the
event topics and ``codechat.actions`` are created here with the configured count, and
existing ones with another count are refused with a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the missing topics; check that existing ones have ``partitions`` partitions.

    ``configs`` gives topic settings (such as ``cleanup.policy``) for the topics it names,
    applied when they are created.

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
                [
                    NewTopic(
                        name,
                        partitions,
                        replication_factor,
                        topic_configs=dict((configs or {}).get(name, {})),
                    )
                    for name in missing
                ]
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


def internal_topics(app: Any, *extra: str) -> dict[str, dict[str, str]]:
    """The topics a Faust app would create for itself: each table's compacted changelog, and
    ``extra`` ones (the tick and repartition topics), with their settings.

    Created before the worker starts, with the tables' partition count. Left to Faust, they
    appear while the worker is already taking events, and an event that arrives before a
    changelog is in the client's metadata fails every table write with ``PartitionsMismatch``
    ("changelog topic ... has 0 partitions").
    """
    topics = {
        table.changelog_topic.get_topic_name(): {"cleanup.policy": "compact"}
        for table in app.tables.values()
    }
    topics.update({name: {} for name in extra})
    return topics
