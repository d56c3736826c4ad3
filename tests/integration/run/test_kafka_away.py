"""SIGTERM while Kafka is away: ``zapflow run`` stops in time and loses nothing it read.

Faust commits the consumers' offsets once more when it stops, and aiokafka retries that
commit until the broker is back: without a bound, a worker asked to stop during a Kafka
outage waited for the outage to end. With subscription ownership (a fleet), leaving the
ownership group while Kafka is away raised aiokafka's stray cancellation into ingest's stop,
which ended before the events in flight reached the spool: they were lost.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import spool_rows, wait_for
from tests.integration.run.harness import RunningWorker, start_worker
from worker.devkafka.broker import KafkaBroker

INSTANCE = "shop-away"


def _replies(worker: RunningWorker) -> Counter[str]:
    """sendText calls by chat."""
    return Counter(
        str(c.body.get("number"))
        for c in worker.sim.rest_calls
        if "/message/sendText/" in c.path and isinstance(c.body, dict)
    )


@pytest.mark.parametrize("ownership", [False, True], ids=["alone", "ownership"])
async def test_sigterm_while_kafka_is_away_stops_in_time_and_a_restart_answers_everything(
    private_broker_factory: Callable[[Path], KafkaBroker], tmp_path: Path, ownership: bool
) -> None:
    broker = private_broker_factory(tmp_path / "kafka")
    await asyncio.to_thread(broker.start)
    app_id = f"zf-away-{uuid.uuid4().hex[:8]}"
    first = await start_worker(
        broker.bootstrap_servers, "away.", tmp_path, (INSTANCE,), app_id=app_id, ownership=ownership
    )
    second: RunningWorker | None = None
    factory = first.sim.factory(INSTANCE)
    try:
        await first.wait_ready(timeout=120)
        before = factory.received_text(time.time(), "before the outage")
        assert await first.sim.emit(INSTANCE, "messages.upsert", before)
        await wait_for(lambda: _replies(first).total() == 1, 60, message="a reply")

        received = (await first.status())["ingest"]["received"]
        await asyncio.to_thread(broker.stop)
        during = [factory.received_text(time.time(), f"during the outage {i}") for i in range(5)]
        for message in during:
            assert await first.sim.emit(INSTANCE, "messages.upsert", message)

        async def all_read() -> bool:
            status = await first.status()
            return (status.get("ingest") or {}).get("received", 0) >= received + len(during)

        await wait_for(all_read, 30, message="ingest to read what came during the outage")

        started = time.monotonic()
        code = await first.stop(timeout=60)
        took = time.monotonic() - started
        assert code == 0, first.log()
        # One shared wait for Kafka: 11 s alone, 17 s with ownership's grace period, here.
        assert took < 30, f"stopping took {took:.0f} s"
        # Ingest kept what it read from the gateway and Kafka never took.
        assert spool_rows(tmp_path / "spool") >= len(during), first.log()

        shutil.copy(first.log_path, tmp_path / "worker-1.log")  # the next one writes its own
        await asyncio.to_thread(broker.start)
        second = await start_worker(
            broker.bootstrap_servers,
            "away.",
            tmp_path,
            (INSTANCE,),
            sim=first.sim,
            inbox=first.inbox,
            app_id=app_id,
            ownership=ownership,
        )
        await second.wait_ready(timeout=120)
        # The rule answers a chat once a day; the contacts of the messages may repeat.
        expected = Counter({str(m["keyRemoteJid"]): 1 for m in [before, *during]})
        await wait_for(
            lambda: _replies(second).total() >= expected.total(), 90, message="every reply"
        )
        # One reply per chat, the one before the outage included (read again or not).
        assert _replies(second) == expected
    finally:
        for worker in (first, second):
            if worker is not None:
                await worker.stop()
        await first.sim.stop()
        await first.inbox.stop()
