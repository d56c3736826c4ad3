"""The stage's Faust app skips the Monitor's per-event bookkeeping and consumes with the
consumer that never commits past an unprocessed event."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.process.standin import StandInEngine, write_rules
from worker.consumer import GaplessConsumer
from worker.process.app import build_app
from worker.process.reload import RulesWatcher
from worker.process.settings import ProcessSettings
from worker.streaming import QuietMonitor


async def test_the_stage_uses_the_quiet_monitor_and_the_gapless_consumer(tmp_path: Path) -> None:
    write_rules(tmp_path, {"id": "auto-reply", "on": "messages.upsert"})
    engine = StandInEngine()
    settings = ProcessSettings(app_id="test-process", store="memory://", partitions=2)
    built = build_app(settings, RulesWatcher.start(tmp_path, engine), engine)
    built.app.loop = asyncio.get_running_loop()
    assert isinstance(built.app.monitor, QuietMonitor)
    assert isinstance(built.app.consumer, GaplessConsumer)
