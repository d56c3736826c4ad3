"""Start ``zapflow run`` as a subprocess against the simulator, an alert inbox and Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.console.inbox import AlertInbox
from worker.devkafka.broker import free_port
from worker.simulator import Simulator

RULES = Path(__file__).with_name("rules")
SECRET = "run-test-secret"
APIKEY = "run-test-apikey"


def config_text(
    bootstrap: str,
    prefix: str,
    app_id: str,
    sim: Simulator,
    data: Path,
    http_port: int,
    ownership: bool = False,
    kafka_security: str | None = None,
) -> str:
    ownership_line = (
        "  ownership: {mode: kafka, grace: 6s, session_timeout: 6s, heartbeat_interval: 1s}"
        if ownership
        else ""
    )
    instances = "\n".join(
        f"  - {{name: {inst.name}, token: '${{env:RUN_TEST_TOKEN_{i}}}'}}"
        for i, inst in enumerate(sim.instances)
    )
    return f"""\
gateway:
  url: {sim.ws_url}
instances:
{instances}
kafka:
  bootstrap_servers: {bootstrap}
  topic_prefix: {prefix}
  partitions: 2
{f"  security: {kafka_security}" if kafka_security else ""}
ingest:
  reconnect: {{first_delay: 0.5s, max_delay: 5s}}
  spool: {{path: {data / "spool"}}}
{ownership_line}
process:
  app_id: {app_id}
  store: memory://
  data_dir: {data / "process"}
  faust: {{broker_session_timeout: 10, broker_heartbeat_interval: 1}}
actions:
  gateway: {{apikey: '${{env:RUN_TEST_APIKEY}}'}}
  send_rate_per_chat: null
  send_rate_per_instance: null
http:
  port: {http_port}
"""


@dataclass
class RunningWorker:
    proc: subprocess.Popen[bytes]
    sim: Simulator
    inbox: AlertInbox
    prefix: str
    bootstrap: str
    http_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    async def status(self) -> dict[str, Any]:
        code, body = await asyncio.to_thread(self.get, "/status")
        return json.loads(body) if code == 200 else {}

    async def wait_ready(self, timeout: float = 120.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            assert self.proc.poll() is None, f"zapflow run exited early:\n{self.log()}"
            code, _ = await asyncio.to_thread(self.get, "/readyz")
            if code == 200:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"zapflow run was not ready in {timeout:.0f} s:\n{self.log()}")

    async def stop(self, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, timeout)
            except subprocess.TimeoutExpired:
                dump = await self._stack_dump()
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
                raise AssertionError(
                    f"zapflow run did not stop within {timeout:.0f} s; its threads and tasks "
                    f"(full log: {self.log_path}):\n{dump}"
                ) from None
        return self.proc.returncode

    async def _stack_dump(self, timeout: float = 10.0) -> str:
        """Ask a stuck worker for its threads and asyncio tasks (Faust's worker answers
        SIGUSR1 with them on stderr) and return what it wrote."""
        start = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        size = start
        while loop.time() < deadline:
            await asyncio.sleep(0.5)
            now = self.log_path.stat().st_size
            if now > start and now == size:
                break  # wrote something and has stopped writing
            size = now
        with self.log_path.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")[-20000:] or "(no answer to SIGUSR1)"


async def start_worker(
    bootstrap: str,
    prefix: str,
    tmp: Path,
    instances: tuple[str, ...],
    *,
    sim: Simulator | None = None,
    inbox: AlertInbox | None = None,
    app_id: str | None = None,
    ownership: bool = False,
    rules: Path = RULES,
    kafka_security: str | None = None,
    env: dict[str, str] | None = None,
) -> RunningWorker:
    """Start ``zapflow run``; with ``sim``/``inbox``/``app_id`` given, as one more member of a
    fleet that shares them."""
    if sim is None:
        sim = Simulator(secret=SECRET, apikey=APIKEY, port=0, seed=11)
        await sim.start()
        for name in instances:
            sim.create_instance(name)
    if inbox is None:
        inbox = AlertInbox()
        await inbox.start()
    http_port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "zapflow.yaml"
    app_id = app_id or f"zf-test-{uuid.uuid4().hex[:8]}"
    config.write_text(
        config_text(bootstrap, prefix, app_id, sim, tmp, http_port, ownership, kafka_security)
    )
    env = {
        **os.environ,
        "ZAPFLOW_OPS_WEBHOOK": inbox.url("/ops"),
        "RUN_TEST_APIKEY": APIKEY,
        **{f"RUN_TEST_TOKEN_{i}": inst.token for i, inst in enumerate(sim.instances)},
        **(env or {}),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    log_path = tmp / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run", "--config", str(config), "--rules", str(rules)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return RunningWorker(
        proc, sim, inbox, prefix, bootstrap, f"http://127.0.0.1:{http_port}", log_path
    )
