"""The pipeline with Kafka unreachable: everything spools; a full spool warns, then errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.helpers import wait_for
from worker.ingest.config import KafkaConfig
from worker.ingest.envelope import KafkaRecord
from worker.ingest.producer import EventPipeline
from worker.ingest.spool import Spool
from worker.ingest.stats import IngestStats


def record(n: int) -> KafkaRecord:
    return KafkaRecord(
        topic="t.messages.upsert",
        key=b"shop-bot:x",
        value=b"v" * 926,  # 1000 bytes in the spool with key and overhead
        headers=(("event", b"messages.upsert"),),
        id=f"ID{n}",
    )


async def test_a_filling_spool_warns_once_then_reports_what_it_could_not_store(
    tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zapflow.ingest")
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=1024 * 1024)
    stats = IngestStats()
    pipeline = EventPipeline(
        KafkaConfig(bootstrap_servers=f"127.0.0.1:{unused_tcp_port}"),
        ["t.messages.upsert"],
        spool,
        stats,
        spool_warn_ratio=0.5,
    )
    reached = await pipeline.start(connect_timeout=0.5)
    assert not reached
    try:
        assert pipeline.mode == "spooling"
        for n in range(600):
            pipeline.accept(record(n), 0.0)
        await wait_for(lambda: stats.spool_depth == 600, timeout=5)
        for n in range(600, 1200):
            pipeline.accept(record(n), 0.0)
        await wait_for(lambda: stats.spool_dropped > 0, timeout=5)
    finally:
        await pipeline.close()
    assert stats.spooled + stats.spool_dropped == 1200
    assert stats.spooled == 1048
    warnings = [r.getMessage() for r in caplog.records if "% full" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"spool {tmp_path / 'spool.sqlite'} is ")
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == "zapflow.ingest"
    ]
    assert len(errors) == 1
    assert errors[0].getMessage() == (
        f"spool {tmp_path / 'spool.sqlite'} is full (1048576 bytes); "
        f"{stats.spool_dropped} events were not stored. "
        "Bring Kafka back or raise ingest.spool.max_bytes"
    )
    # What was stored is still there for the next start.
    reopened = Spool(tmp_path / "spool.sqlite", max_bytes=1024 * 1024)
    assert reopened.depth == 1048
    assert reopened.oldest(1)[0].record.id == "ID0"
