"""The embedded broker never outlives what started it, and the CLI controls a background one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until
from worker.devkafka.broker import pid_alive

_STARTER = """
import sys, time
from pathlib import Path
from worker.devkafka.broker import KafkaBroker
with KafkaBroker(Path(sys.argv[1])) as broker:
    print(broker.pid, flush=True)
    time.sleep(600)
"""


def _start_owner(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", _STARTER, str(tmp_path / "broker")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line.strip().isdigit(), f"the owner process did not start a broker (printed {line!r})"
    return owner, int(line)


def test_broker_dies_when_its_owner_is_killed(tmp_path: Path) -> None:
    owner, broker_pid = _start_owner(tmp_path)
    assert pid_alive(broker_pid)
    owner.kill()
    owner.wait()
    wait_until(lambda: not pid_alive(broker_pid), timeout=30, message="the orphaned broker to exit")


def test_interrupting_the_owner_stops_the_broker(tmp_path: Path) -> None:
    owner, broker_pid = _start_owner(tmp_path)
    owner.send_signal(signal.SIGINT)
    owner.wait(timeout=40)
    wait_until(lambda: not pid_alive(broker_pid), timeout=30, message="the broker to stop")


def _cluster_brokers(address: str) -> list[tuple[str, int]]:
    """What a Kafka client sees at ``address`` (the check `kcat -L` would make)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def describe() -> list[tuple[str, int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=address)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
        return [(b["host"], b["port"]) for b in cluster["brokers"]]

    return asyncio.run(describe())


def test_cli_start_status_stop_leaves_no_java_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    zapflow = [sys.executable, "-m", "worker", "kafka"]
    state = ["--data-dir", str(tmp_path / "state")]

    started = subprocess.run([*zapflow, "start", *state], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    address = started.stdout.strip()
    assert address.startswith("127.0.0.1:")
    pid = int((tmp_path / "state" / "broker.pid").read_text())
    try:
        status = subprocess.run(
            [*zapflow, "status", *state], env=env, capture_output=True, text=True
        )
        assert status.returncode == 0
        assert status.stdout.strip() == f"up at {address} (pid {pid})"
    finally:
        stopped = subprocess.run(
            [*zapflow, "stop", *state], env=env, capture_output=True, text=True
        )
    assert stopped.stdout.strip() == f"broker stopped (pid {pid})"
    assert not pid_alive(pid)
    status = subprocess.run([*zapflow, "status", *state], env=env, capture_output=True, text=True)
    assert (status.returncode, status.stdout.strip()) == (3, "down")
