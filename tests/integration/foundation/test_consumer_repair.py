"""A record lost between Faust's fetcher and its agent: Faust's consumer commits past it,
zapflow's reads the partition again and the agent gets it (worker/consumer.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.structs import TopicPartition

from tests.conftest import MakeTopic
from tests.helpers import terminate, wait_for

APP = Path(__file__).with_name("dropping_app.py")
RECORDS = 60
LOST = 25


async def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        return None  # the group's coordinator is not elected yet
    finally:
        await admin.close()
    meta = offsets.get(TopicPartition(topic, 0))
    return None if meta is None or meta.offset < 0 else meta.offset


async def _run(bootstrap: str, topic: str, consumer: str, tmp: Path) -> tuple[list[int], str]:
    """Run the app until its group has committed every record; the offsets its agent saw."""
    group = f"drop-{consumer}-{uuid.uuid4().hex[:8]}"
    out = tmp / f"{consumer}.offsets"
    out.touch()
    log_path = tmp / f"{consumer}.log"
    env = {
        **os.environ,
        "DROP_APP_ID": group,
        "DROP_BROKER": bootstrap,
        "DROP_TOPIC": topic,
        "DROP_OUT": str(out),
        "DROP_OFFSET": str(LOST),
        "DROP_CONSUMER": consumer,
    }
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(APP), "--datadir", str(tmp / consumer), "worker", "-l", "info"],
            env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            async def all_committed() -> bool:
                assert worker.poll() is None, log_path.read_text(errors="replace")[-3000:]
                return await _committed(bootstrap, group, topic) == RECORDS

            await wait_for(all_committed, 90, 0.5, f"{consumer} consumer to commit {RECORDS}")
        finally:
            terminate(worker)
    seen = [int(line) for line in out.read_text().split()]
    return seen, log_path.read_text(errors="replace")


async def test_a_record_lost_on_its_way_to_the_agent_is_read_again(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = await make_topic("drop-in", partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send(topic, value=f"record {n}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    stock, _ = await _run(kafka_bootstrap, topic, "stock", tmp_path)
    assert LOST not in stock, "Faust's own consumer was expected to commit past the lost record"
    assert sorted(stock) == [n for n in range(RECORDS) if n != LOST]

    gapless, log = await _run(kafka_bootstrap, topic, "gapless", tmp_path)
    assert LOST in gapless, log[-3000:]
    assert set(gapless) == set(range(RECORDS)), log[-3000:]
    assert "never reached an agent" in log, log[-3000:]
    print(
        f"\n[consumer-repair] stock Faust committed {RECORDS} with offset {LOST} never "
        f"processed; gapless: all {RECORDS} processed, {len(gapless) - RECORDS} seen again "
        "after the repair"
    )
