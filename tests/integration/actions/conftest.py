"""Fixtures for executor tests: an HTTP receiver, the executor as a subprocess, Kafka I/O."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.events import actions_topic, dlq_topic
from worker.topics import ensure_topics

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Call:
    path: str
    method: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Route:
    """What the receiver answers on one path: statuses in turn (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    served: int = 0


class Receiver:
    """A real HTTP server on 127.0.0.1 port 0 that records every request."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.routes: dict[str, Route] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def route(self, path: str, *statuses: int, delay_s: float = 0.0, **headers: str) -> str:
        self.routes[path] = Route(list(statuses) or [200], delay_s, dict(headers))
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        self.calls.append(
            Call(request.path, request.method, dict(request.headers), body, time.time())
        )
        route = self.routes.get(request.path, Route())
        status = route.statuses[min(route.served, len(route.statuses) - 1)]
        route.served += 1
        if route.delay_s:
            await asyncio.sleep(route.delay_s)
        return web.json_response({"status": status}, status=status, headers=route.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class ExecutorProcess:
    """``zapflow actions`` as a subprocess, as the Faust docs advise for end-to-end tests."""

    def __init__(
        self, config: Path, workdir: Path, env: dict[str, str], name: str = "executor"
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "actions", "--config", str(self.config)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, (
            f"the executor exited with {self.proc and self.proc.poll()}; its log:\n"
            + self.log()[-4000:]
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crash or an OOM kill."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def terminate(self) -> None:
        """SIGTERM and wait, without blocking the event loop (the receivers run on it)."""
        await asyncio.to_thread(self.stop)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class ExecutorHarness:
    kafka_bootstrap: str
    prefix: str
    tmp_path: Path
    processes: list[ExecutorProcess] = field(default_factory=list)
    app_id: str = ""
    _producer: AIOKafkaProducer | None = None

    @property
    def actions(self) -> str:
        return actions_topic(self.prefix)

    @property
    def dlq(self) -> str:
        return dlq_topic(self.prefix)

    async def create_topics(self, partitions: int = 1) -> None:
        await ensure_topics(self.kafka_bootstrap, [self.actions, self.dlq], partitions=partitions)

    def start_peer(self, process: ExecutorProcess) -> ExecutorProcess:
        """Another worker of the same app (same consumer group and table)."""
        peer = ExecutorProcess(
            process.config, self.tmp_path, process.env, name=f"executor-{len(self.processes)}"
        )
        peer.start()
        self.processes.append(peer)
        return peer

    def start_executor(
        self, actions: dict[str, Any], env: dict[str, str] | None = None, store: str = "memory://"
    ) -> ExecutorProcess:
        config = {
            "kafka": {"bootstrap_servers": self.kafka_bootstrap},
            "worker": {
                "app_id": f"zf-actions-{uuid.uuid4().hex[:8]}",
                "store": store,
                "data_dir": str(self.tmp_path / "data"),
                "session_timeout_s": 10,
            },
            "actions": {"topic_prefix": self.prefix, **actions},
        }
        self.app_id = config["worker"]["app_id"]
        path = self.tmp_path / f"actions-{len(self.processes)}.yaml"
        path.write_text(yaml.safe_dump(config))
        process = ExecutorProcess(path, self.tmp_path, {**os.environ, **(env or {})})
        process.start()
        self.processes.append(process)
        return process

    async def send(self, *records: dict[str, Any]) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.kafka_bootstrap)
            await self._producer.start()
        for record in records:
            await self._producer.send_and_wait(
                self.actions,
                key=record["idempotency_key"].encode(),
                value=orjson.dumps(record),
            )

    async def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        await self.send()
        assert self._producer is not None
        await self._producer.send_and_wait(self.actions, key=key, value=value)

    async def read_topic(self, topic: str, count: int, timeout: float = 60.0) -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        values: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(values) < count:
                for process in self.processes[-1:]:
                    process.assert_running()
                assert time.monotonic() < deadline, (
                    f"read {len(values)} of {count} records from {topic} in {timeout:.0f} s; "
                    "executor log:\n" + (self.processes[-1].log()[-4000:] if self.processes else "")
                )
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    values.extend(orjson.loads(r.value) for r in records)
        finally:
            await consumer.stop()
        return values

    async def ledger(self) -> dict[str, dict[str, Any]]:
        """The executor's idempotency table as its changelog topic holds it (last value per key)."""
        table: dict[str, dict[str, Any]] = {}
        for key, value in await self.changelog():
            if value is None:  # tombstone: the executor forgot the key
                table.pop(key, None)
            else:
                table[key] = value
        return table

    async def changelog(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Every write to the executor's idempotency table so far, in order for each key."""
        topic = f"{self.app_id}-action-ledger-changelog"
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        writes: list[tuple[str, dict[str, Any] | None]] = []
        try:
            deadline = time.monotonic() + 10
            while not consumer.assignment():
                if time.monotonic() > deadline:
                    return writes
                await asyncio.sleep(0.05)
            tps = list(consumer.assignment())
            ends = await consumer.end_offsets(tps)

            async def behind() -> bool:
                for tp, end in ends.items():
                    if await consumer.position(tp) < end:
                        return True
                return False

            while await behind():
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    writes.extend(
                        (orjson.loads(r.key), None if r.value is None else orjson.loads(r.value))
                        for r in records
                    )
        finally:
            await consumer.stop()
        return writes

    async def close(self) -> None:
        for process in self.processes:
            await process.terminate()
        if self._producer is not None:
            await self._producer.stop()


@pytest.fixture
async def executor_harness(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> AsyncIterator[ExecutorHarness]:
    harness = ExecutorHarness(kafka_bootstrap, unique_prefix, tmp_path)
    try:
        yield harness
    finally:
        await harness.close()


_counter: Iterator[int] = iter(range(1, 1_000_000))


def action(
    kind: str, params: dict[str, Any], rule_id: str = "test-rule", **extra: Any
) -> dict[str, Any]:
    """An action record as the rule stage writes it, with a fresh event id."""
    event_id = f"01JDX{uuid.uuid4().hex[:21].upper()}"
    index = next(_counter)
    record = {
        "idempotency_key": f"{rule_id}:{event_id}:{index}:-:fire",
        "rule_id": rule_id,
        "bundle_version": "test",
        "event_id": event_id,
        "action_index": index,
        "item": None,
        "phase": "fire",
        "instance": "shop-bot",
        "kind": kind,
        "params": params,
        "created_at": "2026-11-25T20:41:07.130Z",
    }
    record.update(extra)
    return record
