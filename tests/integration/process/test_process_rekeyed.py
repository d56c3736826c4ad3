"""Rules keyed more coarsely than their topic, repartitioned, against the real broker.

The worker uses the RocksDB store, which reads a key only from the partition of the event
in hand: evaluated where its events arrive, a throttle per instance would hold per partition
and let one alert through for each partition its chats hash to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.process.harness import (
    Kafka,
    WorkerProcess,
    envelope,
    new_worker,
)
from worker.events import event_topic
from worker.process.forward import rekeyed_topic_name

pytestmark = pytest.mark.integration

RULES = """\
version: it-rekeyed
rules:
  - id: price-asked
    description: at most one alert per instance, whichever chat asks
    on: messages.upsert
    when: msg.text == "preço"
    throttle: {key: [instance], once_within: 1h}
    actions:
      - log: {message: "{{ instance }}: price asked in {{ msg.chat }}"}
  - id: reply
    on: messages.upsert
    throttle: {key: [instance, msg.chat], once_within: 1h}
    actions:
      - log: {message: "reply to {{ msg.chat }}"}
  - id: help-unanswered
    on: messages.upsert
    key: [instance]
    when: msg.text == "socorro"
    for: 2s
    actions:
      - log: {message: "{{ instance }}: help asked in {{ msg.chat }}"}
"""


def text(instance: str, chat: str, body: str) -> dict[str, Any]:
    return envelope(
        "messages.upsert",
        {
            "keyId": "3EB0" + uuid.uuid4().hex[:16].upper(),
            "keyFromMe": False,
            "keyRemoteJid": chat,
            "messageType": "conversation",
            "content": {"text": body},
            "messageTimestamp": 1747321234,
            "instanceId": 1,
            "isGroup": False,
            "info": {"type": "notify"},
        },
        instance=instance,
    )


@pytest.fixture(scope="module")
def worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    root = tmp_path_factory.mktemp("rekeyed")
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    process = new_worker(kafka_bootstrap, root, prefix, RULES, store="rocksdb://")
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def test_a_throttle_per_instance_holds_across_chats_on_different_partitions(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    prefix = worker.prefix
    chats = [f"55119876543{n:02d}@s.whatsapp.net" for n in range(1, 7)]
    async with Kafka(kafka_bootstrap, prefix) as kafka:
        partitions = await kafka.produce(*(text("shop-1", chat, "preço") for chat in chats))
        assert set(partitions) == {0, 1}, "the chats must be spread over both partitions"
        # Every event read and acked, then every forward: all records they caused are in.
        group = f"{prefix}process"
        await kafka.wait_consumed(group, [event_topic("messages.upsert", prefix)])
        await kafka.wait_consumed(group, [rekeyed_topic_name(group)])
        actions = await kafka.read_all()

    asked = [a for a in actions if a["rule_id"] == "price-asked"]
    assert len(asked) == 1, asked
    assert asked[0]["instance"] == "shop-1"
    assert asked[0]["params"]["message"] in {f"shop-1: price asked in {chat}" for chat in chats}
    replies = [a for a in actions if a["rule_id"] == "reply" and a["instance"] == "shop-1"]
    assert sorted(r["params"]["message"] for r in replies) == [f"reply to {c}" for c in chats]
    assert "not evaluated" not in worker.output()


async def test_a_for_deadline_of_a_rekeyed_rule_fires_with_no_further_event(
    worker: WorkerProcess, kafka_bootstrap: str
) -> None:
    async with Kafka(kafka_bootstrap, worker.prefix) as kafka:
        await kafka.produce(text("shop-2", "5521900000001@s.whatsapp.net", "socorro"))
        try:
            await kafka.wait_for(lambda a: any(x["rule_id"] == "help-unanswered" for x in a))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{worker.output()[-6000:]}") from None
        [fired] = kafka.by_rule("help-unanswered")
    assert (fired["instance"], fired["phase"]) == ("shop-2", "fire")
    assert fired["params"]["message"] == "shop-2: help asked in 5521900000001@s.whatsapp.net"
