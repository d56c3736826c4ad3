"""Creating the topics a stage uses before it starts, and checking their partition counts.

Faust creates only its own topics, and only once the worker runs. A source topic left to
the broker's auto-creation gets ``num.partitions`` (1 by default), and then every table
write fails with ``PartitionsMismatch`` against the tables' partition count. So each stage
creates the topics it reads and writes, with the configured count, before it starts, and
refuses to start on an existing topic whose count its tables cannot work with, saying which
setting to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

#: Kafka error code for a topic created by someone else in the meantime.
TOPIC_ALREADY_EXISTS = 36


class TopicLayoutError(Exception):
    """A topic cannot be used: it has another partition count, or could not be created."""


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    check: Iterable[str] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    setting: str = "kafka.partitions",
    client: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the missing topics of ``names``; return the names created.

    Args:
        check: the existing topics that must have ``partitions`` partitions (default: all of
            ``names``; ingest, which keeps no state, checks none).
        configs: topic settings (such as ``cleanup.policy``) per name, used when creating.
        setting: the configuration key that sets ``partitions``, named in the error.
        client: more keyword arguments for the admin client (security settings, client id).

    Raises:
        TopicLayoutError: a checked topic has another partition count, or a topic could not
            be created.
    """
    wanted = sorted(set(names))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
        **dict(client or {}),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await _create(admin, missing, partitions, replication_factor, configs or {})
        checked = wanted if check is None else sorted(set(check))
        present = [name for name in checked if name in existing]
        if present:
            for described in await admin.describe_topics(present):
                count = len(described["partitions"])
                if count != partitions:
                    raise TopicLayoutError(
                        f"topic {described['topic']} has {count} partitions but {setting} is "
                        f"{partitions}; state tables need as many partitions as their source "
                        f"topics: set {setting} to {count}, or recreate the topic"
                    )
        return missing
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient,
    names: list[str],
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, Mapping[str, str]],
) -> None:
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name, partitions, replication_factor, topic_configs=dict(configs.get(name, {}))
                )
                for name in names
            ]
        )
    except TopicAlreadyExistsError:
        return  # another process created them meanwhile
    for topic, code, *rest in response.topic_errors:
        if code not in (0, TOPIC_ALREADY_EXISTS):
            message = rest[0] if rest and rest[0] else f"error code {code}"
            raise TopicLayoutError(f"topic {topic}: could not be created: {message}")
