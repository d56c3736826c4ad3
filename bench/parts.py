"""Starting the measured parts as their own processes, configured the way an operator would:
the simulator (:mod:`bench.simproc`), ``zapflow ingest``, ``zapflow process`` and
``zapflow actions``, each with a YAML file written into the run's temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.harness import REPO_ROOT, BenchError, Child, python_argv, wait_for, zapflow_argv

SIM_APIKEY = "bench-apikey"
#: Create the process stage's internal topics before it starts (see
#: :func:`precreate_process_topics`); ``BENCH_PRECREATE=0`` measures the stage as it starts alone.
PRECREATE = os.environ.get("BENCH_PRECREATE", "1") != "0"


def unique_prefix(name: str) -> str:
    """A topic prefix of its own for one benchmark run, e.g. ``bench-ingest-3f9a2c.``."""
    return f"bench-{name}-{uuid.uuid4().hex[:6]}."


class SimProcess:
    """The simulator child and its JSON-line control channel."""

    def __init__(self, child: Child, port: int, tokens: Path, names: list[str]) -> None:
        self.child = child
        self.port = port
        self.tokens = tokens
        self.names = names

    @classmethod
    async def start(
        cls, workdir: Path, instances: int, events: Sequence[str] = ("messages.upsert",)
    ) -> SimProcess:
        tokens = workdir / "tokens"
        child = await Child.start(
            "simulator",
            python_argv(
                "-m",
                "bench.simproc",
                "--instances",
                str(instances),
                "--events",
                ",".join(events),
                "--tokens",
                str(tokens),
            ),
            workdir / "simulator.log",
            cwd=REPO_ROOT,
            pipes=True,
        )
        assert child.proc.stdout is not None
        try:
            line = await _read_line(child, 60.0)
        except BenchError:
            await child.stop()
            raise
        port = int(orjson.loads(line)["port"])
        names = [f"bench-{i:04d}" for i in range(instances)]
        return cls(child, port, tokens, names)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def command(self, timeout: float = 300.0, **cmd: Any) -> Any:  # noqa: ASYNC109
        """Send one command; ``timeout`` bounds the wait for its answer."""
        proc = self.child.proc
        assert proc.stdin is not None
        proc.stdin.write(orjson.dumps(cmd) + b"\n")
        await proc.stdin.drain()
        answer = orjson.loads(await _read_line(self.child, timeout))
        if isinstance(answer, dict) and "error" in answer:
            raise BenchError(f"simulator: {answer['error']}")
        return answer

    async def live(self) -> int:
        return int((await self.command(op="live"))["live"])

    async def wait_live(self, expect: int, within: float, watch: Child | None = None) -> float:
        """Seconds until ``expect`` keys have a live subscriber."""
        import time

        start = time.monotonic()

        async def enough() -> bool:
            return await self.live() >= expect

        await wait_for(enough, within, f"{expect} live subscriptions", 0.2, watch)
        return time.monotonic() - start

    async def stop(self) -> None:
        proc = self.child.proc
        if proc.returncode is None and proc.stdin is not None:
            try:
                proc.stdin.write(b'{"op": "stop"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            except (ConnectionError, RuntimeError):
                pass
        await self.child.stop(10.0)


async def _read_line(child: Child, within: float) -> bytes:
    import asyncio

    assert child.proc.stdout is not None
    try:
        line = await asyncio.wait_for(child.proc.stdout.readline(), within)
    except TimeoutError:
        raise BenchError(
            f"simulator did not answer within {within:g}s\n{child.log_tail()}"
        ) from None
    if not line:
        await child.proc.wait()
        raise BenchError(
            f"simulator exited with {child.proc.returncode}\n--- {child.log} ---\n"
            f"{child.log_tail()}"
        )
    return line


def write_yaml(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


def ingest_config(
    workdir: Path,
    sim: SimProcess,
    bootstrap: str,
    prefix: str,
    events: Sequence[str] = ("messages.upsert",),
    instances: Sequence[str] | None = None,
    ingest: Mapping[str, Any] | None = None,
    producer: Mapping[str, Any] | None = None,
) -> Path:
    names = list(instances if instances is not None else sim.names)
    document = {
        "gateway": {"url": sim.ws_url},
        "instances": [
            {"name": n, "token": f"${{file:{sim.tokens / n}}}", "events": list(events)}
            for n in names
        ],
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "partitions": 8,
            **({"producer": dict(producer)} if producer else {}),
        },
        "ingest": {
            "spool": {"path": str(workdir / "spool.sqlite")},
            "summary_interval": "60s",
            **dict(ingest or {}),
        },
    }
    return write_yaml(workdir / "ingest.yaml", document)


async def start_ingest(workdir: Path, config: Path) -> Child:
    return await Child.start(
        "ingest",
        zapflow_argv("ingest", "--config", str(config), "--log-level", "WARNING"),
        workdir / "ingest.log",
        cwd=workdir,
    )


def process_config(
    workdir: Path,
    bootstrap: str,
    prefix: str,
    app_id: str,
    store: str = "rocksdb://",
    faust: Mapping[str, Any] | None = None,
) -> Path:
    document = {
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix, "partitions": 8},
        "process": {
            "app_id": app_id,
            "store": store,
            "data_dir": str(workdir / "process-data"),
            "faust": dict(faust or {}),
        },
    }
    return write_yaml(workdir / "process.yaml", document)


async def precreate_process_topics(bootstrap: str, app_id: str) -> None:
    """Create the stage's changelog and tick topics before it starts.

    Works around a start-up race of the stage: when an event arrives before its
    ``seen-messages`` changelog topic is in the client's metadata, Faust raises
    ``PartitionsMismatch`` ("changelog topic ... has 0 partitions") on every event.
    """
    from bench.harness import create_topics

    await create_topics(
        bootstrap,
        [f"{app_id}-seen-messages-changelog", f"{app_id}-rule-state-changelog"],
        8,
        {"cleanup.policy": "compact"},
    )
    await create_topics(bootstrap, [f"{app_id}-ticks"], 8)


async def start_process(workdir: Path, config: Path, rules: Path, floor: bool = False) -> Child:
    """``zapflow process`` on ``rules``; with ``floor``, with evaluation switched off
    (``bench/process_floor.py``)."""
    args = ("process", "--config", str(config), "--rules", str(rules), "--log-level", "warning")
    # bench.process_floor is found through the PYTHONPATH every child gets (Child.start).
    return await Child.start(
        "process",
        python_argv("-m", "bench.process_floor", *args) if floor else zapflow_argv(*args),
        workdir / "process.log",
        cwd=workdir,
        env={"KAFKA_BOOTSTRAP_SERVERS": ""},
    )


def actions_config(
    workdir: Path, bootstrap: str, prefix: str, app_id: str, gateway_url: str
) -> Path:
    document = {
        "kafka": {"bootstrap_servers": bootstrap},
        "actions": {
            "topic_prefix": prefix,
            "partitions": 8,
            "gateway": {
                "url": gateway_url,
                "auth": "apikey",
                "apikey": "${env:BENCH_GATEWAY_APIKEY}",
            },
            "send_rate_per_instance": None,
            "send_rate_per_chat": None,
        },
        "worker": {"app_id": app_id, "data_dir": str(workdir / "actions-data")},
    }
    return write_yaml(workdir / "actions.yaml", document)


async def start_actions(workdir: Path, config: Path) -> Child:
    return await Child.start(
        "actions",
        zapflow_argv("actions", "--config", str(config), "--log-level", "warning"),
        workdir / "actions.log",
        cwd=workdir,
        env={"BENCH_GATEWAY_APIKEY": SIM_APIKEY},
    )
