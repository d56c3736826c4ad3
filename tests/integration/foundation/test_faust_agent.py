"""A Faust worker, run as a subprocess as the Faust docs advise, works against our broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import MakeTopic
from tests.helpers import terminate

APP = Path(__file__).with_name("echo_app.py")


async def test_faust_agent_processes_records_end_to_end(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    source = await make_topic("echo-in", partitions=1)
    sink = await make_topic("echo-out", partitions=1)
    env = {
        **os.environ,
        "ECHO_APP_ID": f"echo-{uuid.uuid4().hex[:8]}",
        "ECHO_BROKER": kafka_bootstrap,
        "ECHO_IN": source,
        "ECHO_OUT": sink,
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, str(APP), "--datadir", str(tmp_path / "faust"), "worker", "-l", "info"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for word in ("oi", "tudo", "bem"):
                await producer.send_and_wait(source, value=word.encode())
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            sink, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        try:
            while len(values) < 3:
                assert worker.poll() is None and time.monotonic() < deadline, (
                    f"the Faust worker produced {len(values)} of 3 records "
                    f"(exit code {worker.poll()}); its log:\n"
                    + (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
                )
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    values.extend(r.value for r in records)
        finally:
            await consumer.stop()
        assert values == [b"OI", b"TUDO", b"BEM"]
        assert worker.poll() is None, "the worker exited early"
    finally:
        terminate(worker)
        log.close()
