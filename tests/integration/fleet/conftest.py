"""Several ``zapflow ingest`` processes against one gateway and one broker.

The gateway (the simulator, in this process) and Kafka are real; each ingest process is
a subprocess started with ``zapflow ingest --config FILE --status-port PORT``, so
SIGKILL and SIGTERM mean what they mean in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import from_the_start
from worker.events import SENT_EVENTS, STREAMED_EVENTS, event_topic
from worker.simulator import Simulator

ROOT = Path(__file__).resolve().parents[3]
#: Reading Kafka back stops after this long without a new record.
QUIET = 4.0
Key = tuple[str, str]


@pytest.fixture
async def gateway() -> AsyncIterator[Simulator]:
    sim = Simulator(secret="sim-secret", apikey="sim-apikey", host="127.0.0.1", port=0, seed=1)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class IngestProcess:
    name: str
    config: Path
    status_port: int
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.status_port = free_port()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker",
                    "ingest",
                    "--config",
                    str(self.config),
                    "--status-port",
                    str(self.status_port),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {timeout:.0f}s")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def status(self) -> dict[str, Any] | None:
        """The process's /status, or None while it does not answer."""
        url = f"http://127.0.0.1:{self.status_port}/status"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except OSError:
            return None

    async def owned(self, members: int) -> set[Key] | None:
        """The keys this process owns and runs, once it sees a group of ``members``."""
        status = await asyncio.to_thread(self.status)
        if status is None or "ownership" not in status:
            return None
        if status["ownership"]["members"] != members:
            return None
        return {
            (row["instance"], row["event"])
            for row in status["ownership"]["subscriptions"]
            if row["here"] == "owned" and row["running"]
        }


@dataclass
class Fleet:
    gateway: Any
    bootstrap: str
    prefix: str
    tmp: Path
    instances: list[str]
    grace: float = 3.0
    processes: list[IngestProcess] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> list[Key]:
        return [(i, e) for i in self.instances for e in STREAMED_EVENTS]

    def write_config(self, path: Path, spool: Path, token_files: bool = False) -> None:
        """A process's config; tokens from its environment, or from files (which a
        running process can read on reload, unlike a changed environment)."""
        instances = []
        for n, name in enumerate(self.instances):
            if token_files:
                token_file = self.tmp / f"token-{name}"
                token_file.write_text(self.tokens[name])
                instances.append({"name": name, "token": f"${{file:{token_file}}}"})
            else:
                instances.append({"name": name, "token": f"${{env:ZF_TOKEN_{n}}}"})
        doc = {
            "gateway": {"url": self.gateway.ws_url},
            "instances": instances,
            "kafka": {
                "bootstrap_servers": self.bootstrap,
                "topic_prefix": self.prefix,
                "partitions": 1,
                "producer": {"linger_ms": 5},
            },
            "ingest": {
                "reconnect": {"first_delay": "0.3s", "max_delay": "2s", "stable_after": "1s"},
                "resubscribe_after_silence": 0,
                "open_timeout": "3s",
                "summary_interval": "5s",
                "spool": {"path": str(spool)},
                "ownership": {
                    "mode": "kafka",
                    "session_timeout": "6s",
                    "heartbeat_interval": "1s",
                    "grace": f"{self.grace}s",
                },
            },
        }
        path.write_text(yaml.safe_dump(doc))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZAPFLOW_")}
        for n, name in enumerate(self.instances):
            env[f"ZF_TOKEN_{n}"] = self.tokens[name]
        return env

    def add_process(self) -> IngestProcess:
        n = len(self.processes)
        config = self.tmp / f"ingest-{n}.yaml"
        self.write_config(config, self.tmp / f"spool-{n}.sqlite")
        proc = IngestProcess(f"ingest-{n}", config, 0, self.tmp / f"ingest-{n}.log", self.env())
        self.processes.append(proc)
        proc.start()
        return proc

    def rewrite_configs(self) -> None:
        """Write every process's config again from ``instances`` (token files)."""
        for n, proc in enumerate(self.processes):
            self.write_config(proc.config, self.tmp / f"spool-{n}.sqlite", token_files=True)

    def live(self) -> list[IngestProcess]:
        return [p for p in self.processes if p.alive]

    def socket_counts(self) -> Counter[int]:
        """How many keys have 0, 1, 2, ... open sockets."""
        return Counter(self.gateway.sockets(i, e).open for i, e in self.keys)

    def unserved(self) -> list[Key]:
        return [k for k in self.keys if self.gateway.sockets(*k).live_id is None]

    async def wait_settled(self, timeout: float = 60.0) -> dict[str, set[Key]]:
        """Until every key has one open, live socket and the live processes' owned sets
        are disjoint and cover every key. Returns each process's owned set."""
        deadline = time.monotonic() + timeout
        last = "nothing checked yet"
        while time.monotonic() < deadline:
            counts = self.socket_counts()
            unserved = self.unserved()
            owned: dict[str, set[Key]] = {}
            for proc in self.live():
                got = await proc.owned(len(self.live()))
                if got is not None:
                    owned[proc.name] = got
            union: set[Key] = set().union(*owned.values()) if owned else set()
            overlap = sum(len(s) for s in owned.values()) - len(union)
            if (
                counts == Counter({1: len(self.keys)})
                and not unserved
                and len(owned) == len(self.live())
                and union == set(self.keys)
                and overlap == 0
            ):
                return owned
            last = (
                f"sockets per key {dict(counts)}, {len(unserved)} keys without a live socket, "
                f"owned { ({n: len(s) for n, s in owned.items()}) }, overlap {overlap}"
            )
            await asyncio.sleep(0.2)
        raise AssertionError(f"fleet did not settle within {timeout:.0f}s: {last}\n{self.logs()}")

    def logs(self, tail: int = 15) -> str:
        parts = []
        for proc in self.processes:
            lines = proc.log.read_text(errors="replace").splitlines() if proc.log.exists() else []
            parts.append(f"--- {proc.name} ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.alive:
                proc.signal(signal.SIGKILL)
        for proc in self.processes:
            if proc.proc is not None:
                proc.proc.wait(timeout=10)


@pytest.fixture
def fleet_factory(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(instances: int = 20, grace: float = 3.0, bootstrap: str | None = None) -> Fleet:
        names = [f"inst-{n:02d}" for n in range(instances)]
        fleet = Fleet(
            gateway, bootstrap or kafka_bootstrap, unique_prefix, tmp_path, names, grace=grace
        )
        for name in names:
            fleet.tokens[name] = gateway.create_instance(name).token
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop_all()


class Load:
    """Emits events round-robin over the keys at a fixed rate, in the background.

    Only events the gateway sends over its socket are emitted (``contacts.update`` is
    subscribed to but arrives as ``contacts.upsert``)."""

    def __init__(self, gateway: Any, keys: list[Key], rate: float) -> None:
        self.gateway = gateway
        self.keys = [k for k in keys if k[1] in SENT_EVENTS]
        self.rate = rate
        self.emitted = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            instance, event = self.keys[n % len(self.keys)]
            try:
                await self.gateway.emit(instance, event)
            except Exception:
                self.errors += 1
            self.emitted += 1
            n += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def delivered_per_key(gateway: Any, keys: list[Key]) -> dict[Key, int]:
    return {k: gateway.counters(*k).delivered for k in keys}


@dataclass
class KafkaTally:
    """What the event topics hold, per (instance, event) and per gateway connection."""

    counts: Counter[Key] = field(default_factory=Counter)
    #: (instance, event) -> connection id -> sequence numbers seen.
    connections: dict[Key, dict[str, set[int]]] = field(default_factory=dict)
    duplicates: int = 0

    def total(self) -> int:
        return sum(self.counts.values())

    def seq_gaps(self, key: Key) -> int:
        gaps = 0
        for seqs in self.connections.get(key, {}).values():
            gaps += max(seqs) - len(seqs)
        return gaps


async def kafka_tally(
    bootstrap: str, prefix: str, expected: int, timeout: float = 30.0
) -> KafkaTally:
    """Read the event topics until ``expected`` distinct events are there (and a second
    more, to see late duplicates) or ``timeout``."""
    consumer = from_the_start(bootstrap, [event_topic(e, prefix) for e in STREAMED_EVENTS])
    await consumer.start()
    tally = KafkaTally()
    ids: set[str] = set()
    try:
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for batch in batches.values():
                for record in batch:
                    env = json.loads(record.value)
                    if env["id"] in ids:
                        tally.duplicates += 1
                        continue
                    ids.add(env["id"])
                    key = (env["instance"], env["event"])
                    tally.counts[key] += 1
                    source = env["source"]
                    conns = tally.connections.setdefault(key, {})
                    conns.setdefault(source["connection"], set()).add(source["seq"])
                    last_new = time.monotonic()
            if tally.total() >= expected:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
            elif time.monotonic() - last_new > QUIET:
                break  # fewer than expected, and nothing more is coming
    finally:
        await consumer.stop()
    return tally
