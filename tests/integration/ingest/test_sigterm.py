"""``zapflow ingest`` as a process: SIGTERM mid-run spools what is in flight; a restart sends it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import spool_rows, wait_for
from tests.integration.ingest.conftest import (
    envelope,
    paced_traffic,
    read_topics,
    sequence_gaps,
)
from tests.integration.ingest.test_kafka_away import report_duplicates
from worker.events import event_topic

pytestmark = pytest.mark.integration

EVENTS = ("messages.upsert", "messages.update", "connection.update", "call.upsert")


class IngestProcess:
    """``python -m worker ingest --config FILE`` with its output lines collected."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config = config
        self.env = env
        self.log = log
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "worker",
                "ingest",
                "--config",
                str(self.config),
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=self.env,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip())

    def last_summary(self) -> str:
        summaries = [line for line in self.lines if "events/s" in line]
        return summaries[-1] if summaries else ""

    async def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


async def test_sigterm_while_kafka_is_away_spools_everything_and_a_restart_delivers_it(
    gateway: Any, private_broker_factory: Any, unique_prefix: str, tmp_path: Path
) -> None:
    broker = private_broker_factory(tmp_path / "kafka")
    await asyncio.to_thread(broker.start)
    shop = gateway.create_instance("shop-bot")
    spool = tmp_path / "spool.sqlite"
    config = tmp_path / "zapflow.yaml"
    config.write_text(
        f"""
gateway:
  url: {gateway.ws_url}
instances:
  - name: shop-bot
    token: ${{env:SHOP_TOKEN}}
kafka:
  bootstrap_servers: {broker.bootstrap_servers}
  topic_prefix: "{unique_prefix}"
  partitions: 2
  producer: {{linger_ms: 5, request_timeout: 5s, delivery_timeout: 2s, flush_timeout: 3s}}
ingest:
  events: [{", ".join(EVENTS)}]
  reconnect: {{first_delay: 300ms, max_delay: 2s, stable_after: 1s}}
  summary_interval: 1s
  spool: {{path: {spool}}}
"""
    )
    env = {**os.environ, "SHOP_TOKEN": shop.token, "PYTHONUNBUFFERED": "1"}
    first = IngestProcess(config, env, tmp_path / "ingest-1.log")
    second = IngestProcess(config, env, tmp_path / "ingest-2.log")
    stop = asyncio.Event()
    targets = [("shop-bot", e) for e in EVENTS]
    traffic: asyncio.Task[None] | None = None
    try:
        await first.start()
        await gateway.wait_subscribed("shop-bot", list(EVENTS), timeout=30)
        traffic = asyncio.create_task(paced_traffic(gateway, targets, 500.0, stop))
        await wait_for(lambda: "produced" in first.last_summary(), timeout=10)
        await asyncio.to_thread(broker.stop)
        await wait_for(lambda: "Kafka spooling" in first.last_summary(), timeout=20)
        # SIGTERM while events are in flight and Kafka is away.
        assert await first.terminate() == 0
        assert first.lines[-1].startswith("ingest: stopped;")
        spooled_at_exit = spool_rows(spool)
        assert spooled_at_exit > 500

        await second.start()
        await gateway.wait_subscribed("shop-bot", list(EVENTS), timeout=30)
        await asyncio.sleep(1.0)  # more traffic into the spool while Kafka is still away
        await asyncio.to_thread(broker.start)
        await wait_for(
            lambda: "Kafka direct, spool 0" in second.last_summary(), timeout=60, message="drain"
        )
        stop.set()
        await traffic
        assert await second.terminate() == 0
    finally:
        stop.set()
        if traffic is not None:
            await asyncio.gather(traffic, return_exceptions=True)
        first.kill()
        second.kill()

    assert spool_rows(spool) == 0
    delivered = gateway.counters().delivered
    topics = [event_topic(e, unique_prefix) for e in EVENTS]
    records = await read_topics(
        broker.bootstrap_servers,
        topics,
        lambda r: len({envelope(x)["id"] for x in r}) >= delivered,
        timeout=30,
    )
    envelopes = [envelope(r) for r in records]
    assert len({e["id"] for e in envelopes}) == delivered
    report_duplicates(envelopes)
    assert sequence_gaps(envelopes) == []
