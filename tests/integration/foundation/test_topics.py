"""The stage creates its topics, Faust's own included, with the right settings, up front."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from worker.topics import TopicLayoutError, ensure_topics


async def test_topics_are_created_with_their_partitions_and_settings(kafka_bootstrap: str) -> None:
    app_id = f"topics-{uuid.uuid4().hex[:8]}"
    changelog, ticks = f"{app_id}-rule-state-changelog", f"{app_id}-ticks"
    created = await ensure_topics(
        kafka_bootstrap,
        [ticks, changelog],
        partitions=3,
        replication_factor=1,
        configs={changelog: {"cleanup.policy": "compact"}},
    )
    assert created == sorted([changelog, ticks])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([changelog, ticks])
        policies = {}
        for name in (changelog, ticks):
            response = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None})]
            )
            entries = response[0].resources[0][4]
            policies[name] = {entry[0]: entry[1] for entry in entries}["cleanup.policy"]
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {changelog: 3, ticks: 3}
    assert policies == {changelog: "compact", ticks: "delete"}
    assert (
        await ensure_topics(kafka_bootstrap, [changelog], partitions=3, replication_factor=1) == []
    )


async def test_an_existing_topic_with_another_partition_count_is_refused_with_the_fix(
    kafka_bootstrap: str,
) -> None:
    topic = f"layout-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], partitions=2)
    with pytest.raises(TopicLayoutError) as refused:
        await ensure_topics(kafka_bootstrap, [topic], partitions=4, setting="actions.partitions")
    assert str(refused.value) == (
        f"topic {topic} has 2 partitions but actions.partitions is 4; state tables need as "
        "many partitions as their source topics: set actions.partitions to 2, or recreate "
        "the topic"
    )
    assert await ensure_topics(kafka_bootstrap, [topic], partitions=4, check=()) == []
