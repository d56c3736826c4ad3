"""Every event the gateway delivers reaches its topic once, with envelope, key and headers."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.ingest.conftest import envelope, make_config, read_topics, sequence_gaps
from worker import schemas
from worker.events import SENT_EVENTS, STREAMED_EVENTS, event_topic
from worker.ingest.keys import partition_key
from worker.ingest.service import IngestService
from worker.ingest.stats import SubscriptionState

pytestmark = pytest.mark.integration


async def test_every_delivered_event_of_all_14_subscriptions_lands_once(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    shop = gateway.create_instance("shop-bot")
    support = gateway.create_instance("support")
    config = make_config(
        gateway,
        [(shop.name, shop.token), (support.name, support.token)],
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix,
        spool_dir=tmp_path,
    )
    service = IngestService(config)
    await service.start()
    try:
        for name in ("shop-bot", "support"):
            await gateway.wait_subscribed(name, list(STREAMED_EVENTS), timeout=20)
        per_event = 20
        for _ in range(per_event):
            for name in ("shop-bot", "support"):
                for event in SENT_EVENTS:
                    await gateway.emit(name, event)
        delivered = gateway.counters().delivered
        assert delivered >= per_event * len(SENT_EVENTS) * 2 * 0.99
        await wait_for(
            lambda: service.stats.produced >= delivered, timeout=30, message="all produced"
        )
        assert all(s.state == SubscriptionState.OPEN for s in service.stats.subscriptions.values())
    finally:
        await service.stop()

    topics = [event_topic(e, unique_prefix) for e in STREAMED_EVENTS]
    records = await read_topics(kafka_bootstrap, topics, lambda r: len(r) >= delivered)
    assert len(records) == delivered
    envelopes = [envelope(r) for r in records]
    assert len({e["id"] for e in envelopes}) == delivered, "duplicate envelope ids"
    counts = collections.Counter((e["instance"], e["event"]) for e in envelopes)
    for name in ("shop-bot", "support"):
        for event in SENT_EVENTS:
            assert counts[(name, event)] == gateway.counters(name, event).delivered, (name, event)
    for record, env in zip(records, envelopes, strict=True):
        assert schemas.errors("envelope", env) == []
        assert record.topic == event_topic(env["event"], unique_prefix)
        assert set(env) == {"id", "instance", "event", "received_at", "source", "data"}
        assert len(env["id"]) == 26
        assert env["received_at"].endswith("Z")
        assert env["source"]["gateway"] == f"127.0.0.1:{gateway.port}"
        assert dict(record.headers) == {
            "event": env["event"].encode(),
            "instance": env["instance"].encode(),
            "content-type": b"application/json",
        }
        assert record.key == partition_key(env["instance"], env["event"], env["data"]).encode()
    assert sequence_gaps(envelopes) == []
    assert service.stats.spool_depth == 0
    assert service.stats.invalid_frames == 0
