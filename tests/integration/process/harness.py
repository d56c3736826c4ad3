"""Running ``zapflow process`` as a subprocess and talking to it through Kafka.

Faust advises against embedding a worker's lifecycle in pytest; the worker runs as its own
process, is fed envelopes with aiokafka, and its action records are read back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from worker.actions.ids import message_id_for
from worker.console.tail import topic_partitions
from worker.events import actions_topic, event_topic

_CHAT_EVENTS = ("messages.", "chats.", "send.message", "presence.update")


def write_config(
    path: Path, bootstrap: str, prefix: str, data_dir: Path, store: str = "memory://"
) -> Path:
    """A config with short Faust timings so a test worker starts and stops quickly."""
    config = {
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix, "partitions": 2},
        "process": {
            "app_id": f"{prefix}process",
            "store": store,
            "data_dir": str(data_dir),
            "reload_interval_s": 0.3,
            "tick_interval_s": 0.5,
            "http_port": 0,
            "faust": {
                "broker_session_timeout": 10,
                "broker_heartbeat_interval": 1,
                "table_standby_replicas": 0,
                "broker_commit_interval": 0.5,
            },
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def new_worker(
    bootstrap: str, root: Path, prefix: str, rules_text: str, store: str = "memory://"
) -> WorkerProcess:
    """A ``zapflow process`` worker (not started) with its rules, config and log under ``root``."""
    rules = root / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(rules_text)
    config = write_config(root / "zapflow.yaml", bootstrap, prefix, root / "data", store)
    return WorkerProcess(config, rules, root / "worker.log", prefix=prefix)


@dataclass
class WorkerProcess:
    """One ``zapflow process`` subprocess, its output in a log file."""

    config: Path
    rules: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_offset: int = field(default=0)
    #: The topic prefix of its config.
    prefix: str = ""

    def start(self) -> None:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker",
                    "process",
                    "--config",
                    str(self.config),
                    "--rules",
                    str(self.rules),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"},
            )
        self.wait_for_log("[^Worker]: Ready", timeout=60)

    def output(self) -> str:
        """What this run of the worker logged so far."""
        with self.log.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 45.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{out[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(
            f"worker did not log {text!r} within {timeout}s:\n{self.output()[-3000:]}"
        )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def kafka_key(envelope: Mapping[str, Any]) -> bytes:
    """The key ingest gives an envelope (contracts §1)."""
    event, instance, data = envelope["event"], envelope["instance"], envelope["data"]
    if event.startswith(_CHAT_EVENTS):
        item = data[0] if isinstance(data, list) else data
        chat = (
            item.get("keyRemoteJid")
            or item.get("remoteJid")
            or item.get("keyLid")
            or item.get("id")
        )
        return f"{instance}:{chat}".encode()
    if event.startswith("group"):
        item = data[0] if isinstance(data, list) else data
        return f"{instance}:{item['id']}".encode()
    return str(instance).encode()


def new_id() -> str:
    """A unique 26-character envelope id (ULID-shaped enough for the worker)."""
    return "01JT" + uuid.uuid4().hex[:22].upper()


def envelope(event: str, data: Any, instance: str = "shop-bot") -> dict[str, Any]:
    return {
        "id": new_id(),
        "instance": instance,
        "event": event,
        "received_at": "2026-11-25T20:41:07.123Z",
        "source": {"gateway": "127.0.0.1:8084", "connection": "test", "seq": 1},
        "data": data,
    }


def own_message_id(idempotency_key: str) -> str:
    """The ``options.messageId`` the executor gives the send of this action."""
    return message_id_for(idempotency_key)


class Kafka:
    """Produces envelopes to the event topics and collects action records."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.actions: list[dict[str, Any]] = []
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Kafka:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            actions_topic(self.prefix),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            metadata_max_age_ms=1000,
        )
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._producer is not None and self._consumer is not None
        await self._producer.stop()
        await self._consumer.stop()

    async def produce(self, *envelopes: Mapping[str, Any]) -> list[int]:
        """Produce with the keys ingest gives; returns the partition each envelope went to."""
        assert self._producer is not None
        partitions = []
        for env in envelopes:
            sent = await self._producer.send_and_wait(
                event_topic(env["event"], self.prefix), orjson.dumps(env), key=kafka_key(env)
            )
            partitions.append(sent.partition)
        return partitions

    async def wait_consumed(self, group: str, topics: Sequence[str], timeout: float = 45.0) -> None:
        """Wait until ``group`` has committed every record of ``topics`` produced so far.

        The process stage acks an event only once the records it produced are in Kafka, so
        afterwards every record those events caused can be read.
        """
        end = await self._end_offsets(topics)
        tps = list(end)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                behind = {
                    tp: (committed[tp].offset if tp in committed else -1, offset)
                    for tp, offset in end.items()
                    if offset > 0 and (tp not in committed or committed[tp].offset < offset)
                }
                if not behind:
                    return
                if loop.time() > deadline:
                    raise AssertionError(f"{group} did not consume within {timeout}s: {behind}")
                await asyncio.sleep(0.2)  # polling interval of the condition, not a wait
        finally:
            await admin.close()

    async def read_all(self, timeout: float = 45.0) -> list[dict[str, Any]]:
        """Collect every action record produced so far."""
        total = sum((await self._end_offsets([actions_topic(self.prefix)])).values())
        return await self.wait_for(lambda actions: len(actions) >= total, timeout)

    async def _end_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        tps = await topic_partitions(self.bootstrap, list(topics))
        return dict(await self._consumer.end_offsets(tps))

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 45.0
    ) -> list[dict[str, Any]]:
        """Collect action records until ``predicate(all so far)`` holds."""
        assert self._consumer is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.actions):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(
                    f"condition not met within {timeout}s; actions: {self.actions}"
                )
            batch = await self._consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batch.values():
                for record in records:
                    assert record.key is not None and record.value is not None
                    action = orjson.loads(record.value)
                    assert record.key.decode() == action["idempotency_key"]
                    self.actions.append(action)
        return self.actions

    def by_rule(self, rule_id: str) -> list[dict[str, Any]]:
        return [a for a in self.actions if a["rule_id"] == rule_id]
