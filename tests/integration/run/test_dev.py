"""``zapflow dev`` (what ``make run`` starts) shows replies, alerts and welcomes, and Ctrl-C
leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.devkafka.broker import free_port, pid_alive


def test_dev_demo_shows_the_automations_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "dev",
            "--plain",
            "--state-dir",
            str(tmp_path / "dev"),
            "--http-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    wanted = {
        "reply": re.compile(r"→ loja-centro sends to \d+@s\.whatsapp\.net: "),
        "welcome": re.compile(r"→ loja-norte sends to \d+@g\.us: Bem-vindo"),
        "alert": re.compile(r"⚑ alert on /ops: "),
    }
    seen: set[str] = set()
    deadline = time.monotonic() + 150
    try:
        while seen != set(wanted) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            seen |= {name for name, pattern in wanted.items() if pattern.search(line)}
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    output = "\n".join([*lines, rest])
    assert seen == set(wanted), f"missing {set(wanted) - seen} in:\n{output}"
    assert proc.returncode == 0, output
    assert "stopped." in output

    worker_pid = int(re.search(r"worker started \(pid (\d+)\)", output).group(1))  # type: ignore[union-attr]
    broker_pid = int((tmp_path / "dev" / "broker.pid").read_text())
    assert not pid_alive(worker_pid), "the worker outlived zapflow dev"
    assert not pid_alive(broker_pid), "the Kafka broker outlived zapflow dev"
