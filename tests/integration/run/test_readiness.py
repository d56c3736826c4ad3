"""``/readyz`` says not ready until Kafka is up, then ready; SIGTERM stops the process in time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.run.harness import start_worker
from worker.devkafka.broker import KafkaBroker


async def test_readyz_is_false_before_kafka_is_up_and_true_after(
    private_broker_factory: Callable[[Path], KafkaBroker], tmp_path: Path
) -> None:
    broker = private_broker_factory(tmp_path / "kafka")  # not started yet
    worker = await start_worker(broker.bootstrap_servers, "ready.", tmp_path, ("shop-r",))
    try:

        async def not_ready_for_kafka() -> bool:
            code, body = await asyncio.to_thread(worker.get, "/readyz")
            if code != 503:
                return False
            checks = json.loads(body)["checks"]
            return checks["kafka"]["ok"] is False and checks["consumers"] == {
                "ok": False,
                "detail": "waiting for the first partition assignment",
            }

        await wait_for(not_ready_for_kafka, 60, message="/readyz to answer 503 without Kafka")
        health, _ = await asyncio.to_thread(worker.get, "/healthz")
        assert health == 200

        await asyncio.to_thread(broker.start)
        await worker.wait_ready(timeout=120)
        _, body = await asyncio.to_thread(worker.get, "/readyz")
        checks = json.loads(body)["checks"]
        assert {name for name, check in checks.items() if check["ok"]} == {
            "consumers",
            "kafka",
            "rules",
            "subscriptions",
        }
        started = time.monotonic()
        assert await worker.stop(timeout=40) == 0, worker.log()
        assert time.monotonic() - started < 40
    finally:
        await worker.stop()
        await worker.sim.stop()
        await worker.inbox.stop()
