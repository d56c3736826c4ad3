"""``zapflow process`` across restarts and rule reloads, against the real broker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import read_topics
from tests.integration.process.harness import (
    Kafka,
    WorkerProcess,
    envelope,
    new_worker,
    write_config,
)
from worker.events import event_topic

pytestmark = pytest.mark.integration

CHAT = "5511987654321@s.whatsapp.net"

THROTTLED = """\
rules:
  - id: auto-reply
    on: messages.upsert
    throttle: {key: [instance, msg.chat], once_within: 1h}
    actions:
      - whatsapp.send_text: {to: "{{ msg.chat }}", text: "Olá!"}
  - id: mirror-own
    on: messages.upsert
    from_me: allow
    when: msg.from_me
    actions:
      - log: {message: "own message {{ msg.id }}"}
"""

GREETING = """\
version: {version}
rules:
  - id: greet
    on: messages.upsert
    {extra}
    actions:
      - log: {{message: "{version} {{{{ msg.id }}}}"}}
"""


def text(key_id: str, from_me: bool = False) -> dict[str, Any]:
    return envelope(
        "messages.upsert",
        {
            "keyId": key_id,
            "keyFromMe": from_me,
            "keyRemoteJid": CHAT,
            "messageType": "conversation",
            "content": {"text": "Oi"},
            "messageTimestamp": 1747321234,
            "instanceId": 1,
            "isGroup": False,
            "info": {"type": "notify"},
        },
    )


def two_rounds(chats: list[str]) -> list[dict[str, Any]]:
    """A text from each chat, then a second one from each."""
    texts = []
    for round_ in range(2):
        for n, chat in enumerate(chats):
            message = text(f"3A6B{round_:02d}{n:014d}")
            message["data"]["keyRemoteJid"] = chat
            texts.append(message)
    return texts


@pytest.fixture
def make_worker(kafka_bootstrap: str, unique_prefix: str, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []
    prefix = unique_prefix

    def make(rules_text: str, store: str = "memory://") -> WorkerProcess:
        process = new_worker(kafka_bootstrap, tmp_path, prefix, rules_text, store)
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.stop()


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_throttle_holds_across_a_restart(
    make_worker: Any, kafka_bootstrap: str, store: str
) -> None:
    worker = make_worker(THROTTLED, store)
    async with Kafka(kafka_bootstrap, worker.prefix) as kafka:
        await kafka.produce(text("3A6B0000000000000001"))
        await kafka.wait_for(lambda a: len(a) == 1)
        assert worker.stop() == 0
        worker.start()  # memory: from the changelog; rocksdb: local files + changelog tail
        await kafka.produce(
            text("3A6B0000000000000002"), text("3EB0PERSON0000000001", from_me=True)
        )
        await kafka.wait_for(lambda a: any(x["rule_id"] == "mirror-own" for x in a))
        assert [a["rule_id"] for a in kafka.actions] == ["auto-reply", "mirror-own"]


async def test_broken_rules_keep_the_old_ones_and_fixed_rules_apply_without_restart(
    make_worker: Any, kafka_bootstrap: str
) -> None:
    worker = make_worker(GREETING.format(version="v1", extra=""))
    rule_file = worker.rules / "rules.yaml"

    def messages(actions: list[dict[str, Any]]) -> list[str]:
        return [a["params"]["message"].split()[0] for a in actions]

    async with Kafka(kafka_bootstrap, worker.prefix) as kafka:
        await kafka.produce(text("3A6B0000000000000001"))
        await kafka.wait_for(lambda a: len(a) == 1)

        rule_file.write_text(GREETING.format(version="v2", extra="throtle: 1h"))
        out = worker.wait_for_log("not reloaded, keeping version v1@")
        assert (
            f"{rule_file}:5:5: rule \"greet\": unknown key 'throtle' (did you mean 'throttle'?)"
            in out
        )
        await kafka.produce(text("3A6B0000000000000002"))
        await kafka.wait_for(lambda a: len(a) == 2)
        assert messages(kafka.actions) == ["v1", "v1"]

        rule_file.write_text(GREETING.format(version="v2", extra="mode: active"))
        worker.wait_for_log("rules reloaded from")
        await kafka.produce(text("3A6B0000000000000003"))
        await kafka.wait_for(lambda a: len(a) == 3)
        assert messages(kafka.actions) == ["v1", "v1", "v2"]
        assert kafka.actions[2]["bundle_version"].startswith("v2@")

        worker.signal(signal.SIGHUP)
        worker.wait_for_log("SIGHUP: reloading rules")
        assert worker.proc is not None and worker.proc.poll() is None
        assert os.path.exists(rule_file)


async def test_two_workers_split_the_partitions_and_act_once(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(THROTTLED)
    config = write_config(tmp_path / "zapflow.yaml", kafka_bootstrap, unique_prefix, tmp_path / "d")
    first = WorkerProcess(config, rules, tmp_path / "first.log")
    second = WorkerProcess(config, rules, tmp_path / "second.log")
    try:
        first.start()
        second.start()
        # Faust gives each worker the same partition numbers of every topic and table.
        second.wait_for_log("Setting newly assigned partitions")
        async with Kafka(kafka_bootstrap, unique_prefix) as kafka:
            chats = [f"55119{n:08d}@s.whatsapp.net" for n in range(12)]
            await kafka.produce(*two_rounds(chats))
            await kafka.wait_for(lambda a: len(a) >= len(chats))
            marker = text("3EB0PERSON0000000009", from_me=True)
            await kafka.produce(marker)
            await kafka.wait_for(lambda a: any(x["rule_id"] == "mirror-own" for x in a))
        replies = kafka.by_rule("auto-reply")
        assert sorted(r["params"]["to"] for r in replies) == sorted(chats)
        worked = [w for w in (first, second) if "Executing _on_partitions_assigned" in w.output()]
        assert len(worked) == 2
    finally:
        first.stop()
        second.stop()


async def test_events_read_ahead_keep_their_state_on_their_own_partition(
    make_worker: Any, kafka_bootstrap: str
) -> None:
    # The worker reads the events already waiting and evaluates them in a row (a batch
    # mixing both partitions); Faust's tables must still read and write each event's state
    # on that event's partition: its RocksDB store and its changelog partition.
    worker = make_worker(THROTTLED, "rocksdb://")
    chats = [f"55119{n:08d}@s.whatsapp.net" for n in range(40)]
    async with Kafka(kafka_bootstrap, worker.prefix) as kafka:
        await kafka.produce(text("3A6B9999999999999999"))
        await kafka.wait_for(lambda a: len(a) == 1)
        assert worker.stop() == 0
        texts = two_rounds(chats)
        partitions = await kafka.produce(*texts)
        partition_of = {
            t["data"]["keyRemoteJid"]: p for t, p in zip(texts, partitions, strict=True)
        }
        assert set(partitions) == {0, 1}
        worker.start()
        await kafka.wait_consumed(
            f"{worker.prefix}process", [event_topic("messages.upsert", worker.prefix)]
        )
        await kafka.read_all()
    # The second round is throttled: each chat's state was found where the first wrote it.
    replies = [a["params"]["to"] for a in kafka.by_rule("auto-reply")]
    assert sorted(replies) == sorted([CHAT, *chats])
    changelog = await read_topics(
        kafka_bootstrap,
        [f"{worker.prefix}process-rule-state-changelog"],
        lambda records: len(records) >= len(chats) + 1,
    )
    throttles = {}
    for record in changelog:
        key, (tag, _) = orjson.loads(record.key), orjson.loads(record.value)
        chat = key.rsplit("|", 1)[1]
        assert record.partition == tag, f"{key} written to partition {record.partition}"
        throttles[chat] = record.partition
    assert {chat: throttles[chat] for chat in chats} == partition_of
