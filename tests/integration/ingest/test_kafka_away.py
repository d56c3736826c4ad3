"""Nothing delivered is lost while Kafka is away: the spool keeps it and drains it."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.ingest.conftest import (
    envelope,
    make_config,
    paced_traffic,
    read_topics,
    sequence_gaps,
)
from worker.events import event_topic
from worker.ingest.config import ProducerTuning
from worker.ingest.service import IngestService

pytestmark = pytest.mark.integration

EVENTS = ("messages.upsert", "messages.update", "connection.update", "call.upsert")
RATE = 500.0
#: Long enough for in-flight sends to time out and the spool to take over several times.
BROKER_DOWN = 12.0


def report_duplicates(envelopes: list[dict[str, Any]]) -> int:
    counts = collections.Counter(e["id"] for e in envelopes)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(f"\nduplicates: {duplicates} of {len(envelopes)} records")
    return duplicates


async def test_broker_stopped_mid_run_loses_nothing_and_the_spool_drains(
    gateway: Any,
    private_broker_factory: Any,
    unique_prefix: str,
    tmp_path: Path,
) -> None:
    broker = private_broker_factory(tmp_path / "kafka")
    await asyncio.to_thread(broker.start)
    shop = gateway.create_instance("shop-bot")
    config = make_config(
        gateway,
        [(shop.name, shop.token)],
        bootstrap=broker.bootstrap_servers,
        prefix=unique_prefix,
        spool_dir=tmp_path,
        events=EVENTS,
        producer=ProducerTuning(
            linger_ms=5, request_timeout=5.0, delivery_timeout=2.0, flush_timeout=5.0
        ),
    )
    service = IngestService(config)
    await service.start()
    stop = asyncio.Event()
    targets = [("shop-bot", e) for e in EVENTS]
    traffic = asyncio.create_task(paced_traffic(gateway, targets, RATE, stop))
    try:
        await gateway.wait_subscribed("shop-bot", list(EVENTS), timeout=20)
        await wait_for(lambda: service.stats.produced > 1000, timeout=20)
        await asyncio.to_thread(broker.stop)
        await wait_for(lambda: service.stats.mode == "spooling", timeout=15)
        await wait_for(lambda: service.stats.spool_depth > 1000, timeout=15)
        await asyncio.sleep(BROKER_DOWN - 4)  # traffic keeps flowing into the spool
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: service.stats.mode == "direct", timeout=60, message="drained")
        await wait_for(lambda: service.stats.produced > service.stats.spooled + 2000, timeout=20)
        stop.set()
        await traffic
        delivered = gateway.counters().delivered
        await wait_for(lambda: service.stats.received >= delivered, timeout=10)
        await wait_for(lambda: service.stats.produced >= delivered, timeout=30)
    finally:
        stop.set()
        await asyncio.gather(traffic, return_exceptions=True)
        await service.stop()

    assert service.stats.spooled > 1000
    assert service.stats.spool_depth == 0
    assert service.stats.spool_dropped == 0
    topics = [event_topic(e, unique_prefix) for e in EVENTS]
    records = await read_topics(
        broker.bootstrap_servers, topics, lambda r: len({envelope(x)["id"] for x in r}) >= delivered
    )
    envelopes = [envelope(r) for r in records]
    ids = {e["id"] for e in envelopes}
    assert len(ids) == delivered
    report_duplicates(envelopes)
    assert sequence_gaps(envelopes) == []
