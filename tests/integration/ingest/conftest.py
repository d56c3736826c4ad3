"""Fixtures for ingest integration tests: the gateway, configs, and reading topics back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import read_topics  # noqa: F401  (the ingest tests import it from here)
from worker.config import Secret
from worker.events import STREAMED_EVENTS
from worker.ingest.backoff import ReconnectPolicy
from worker.ingest.config import (
    IngestConfig,
    InstanceConfig,
    KafkaConfig,
    ProducerTuning,
    SpoolConfig,
)
from worker.simulator import Simulator


@pytest.fixture
async def gateway() -> AsyncIterator[Simulator]:
    """The CodeChat simulator on 127.0.0.1 and a free port."""
    sim = Simulator(secret="sim-secret", apikey="sim-apikey", host="127.0.0.1", port=0, seed=1)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def make_config(
    gateway: Any,
    instances: Iterable[tuple[str, str]],
    *,
    bootstrap: str,
    prefix: str,
    spool_dir: Path,
    events: tuple[str, ...] = STREAMED_EVENTS,
    producer: ProducerTuning | None = None,
    **overrides: Any,
) -> IngestConfig:
    """An ingest config for tests: fast reconnects, one partition per topic."""
    config = IngestConfig(
        gateway_url=gateway.ws_url,
        instances=tuple(
            InstanceConfig(name=name, token=Secret(token, "${env:TEST}"), events=events)
            for name, token in instances
        ),
        kafka=KafkaConfig(
            bootstrap_servers=bootstrap,
            topic_prefix=prefix,
            partitions=1,
            replication_factor=1,
            producer=producer or ProducerTuning(linger_ms=5),
        ),
        reconnect=ReconnectPolicy(first_delay=0.3, max_delay=2.0, factor=2.0, stable_after=1.0),
        ping_interval=5.0,
        ping_timeout=5.0,
        open_timeout=5.0,
        resubscribe_after_silence=0,
        spool=SpoolConfig(path=spool_dir / "spool.sqlite", max_bytes=256 * 1024 * 1024),
        summary_interval=1.0,
    )
    return replace(config, **overrides)


def envelope(record: Any) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(record.value)
    return value


def sequence_gaps(envelopes: Iterable[dict[str, Any]]) -> list[str]:
    """Per connection, the sequence numbers missing between 1 and the highest seen."""
    by_connection: dict[str, set[int]] = {}
    for env in envelopes:
        src = env["source"]
        by_connection.setdefault(src["connection"], set()).add(src["seq"])
    problems = []
    for conn, seqs in by_connection.items():
        missing = set(range(1, max(seqs) + 1)) - seqs
        if missing:
            problems.append(f"{conn}: missing {sorted(missing)[:10]}")
    return problems


async def paced_traffic(
    gateway: Any,
    targets: list[tuple[str, str]],
    rate: float,
    stop: asyncio.Event,
) -> None:
    """Emit round-robin over (instance, event) at about ``rate`` events per second."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while not stop.is_set():
        due = int((loop.time() - start) * rate)
        while sent < due:
            instance, event = targets[sent % len(targets)]
            await gateway.emit(instance, event)
            sent += 1
        await asyncio.sleep(0.01)
