"""Create the executor's topics before the worker starts.

Faust creates only its internal topics (changelogs, repartitions); a source topic it merely
subscribes to would be auto-created by the broker with ``num.partitions`` (1 by default) and the
idempotency table's changelog would then not match it (``PartitionsMismatch``). So the actions
and dead-letter topics are created here, with the table's partition count.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

_TOPIC_ALREADY_EXISTS = 36


class TopicPartitionsMismatch(RuntimeError):
    """An existing topic has a partition count other than the one the executor needs."""

    def __init__(self, topic: str, found: int, expected: int) -> None:
        super().__init__(topic, found, expected)
        self.topic, self.found, self.expected = topic, found, expected

    def __str__(self) -> str:
        return (
            f"topic {self.topic} has {self.found} partition(s) but the executor is configured "
            f"for {self.expected}; set actions.partitions to {self.found} or recreate the topic"
        )


async def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    check: Iterable[str] = (),
) -> None:
    """Create ``names`` with ``partitions`` partitions unless they exist.

    Topics in ``check`` must have exactly ``partitions`` partitions when they already exist.

    Raises:
        TopicPartitionsMismatch: a checked topic exists with another partition count.
    """
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            try:
                response = await admin.create_topics(
                    [NewTopic(n, partitions, replication_factor) for n in missing]
                )
            except TopicAlreadyExistsError:
                response = None  # another process created it meanwhile
            for error in getattr(response, "topic_errors", ()):
                topic, code = error[0], error[1]
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    message = error[2] if len(error) > 2 else ""
                    raise RuntimeError(f"cannot create topic {topic}: Kafka error {code} {message}")
        to_check = [n for n in check if n in existing]
        if to_check:
            for description in await admin.describe_topics(to_check):
                found = len(description.get("partitions", []))
                if found != partitions:
                    raise TopicPartitionsMismatch(description["topic"], found, partitions)
    finally:
        await admin.close()
