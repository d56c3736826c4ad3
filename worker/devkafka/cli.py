"""``zapflow kafka start|stop|status|fetch``: the embedded broker from the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kafka",
        help="run the embedded single-node Apache Kafka broker for development",
        description=(
            "Run a single-node Apache Kafka (KRaft) broker from jars fetched from Maven Central. "
            "Needs Java 17+ and, for the first fetch, Maven."
        ),
    )
    sub = parser.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)

    start = sub.add_parser("start", help="start a broker in the background and print its address")
    start.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    start.add_argument("--data-dir", type=Path, default=None, help="state directory")
    start.set_defaults(handler=_start)

    stop = sub.add_parser("stop", help="stop the background broker")
    stop.add_argument("--data-dir", type=Path, default=None, help="state directory")
    stop.set_defaults(handler=_stop)

    status = sub.add_parser("status", help="say whether the background broker is up")
    status.add_argument("--data-dir", type=Path, default=None, help="state directory")
    status.set_defaults(handler=_status)

    fetch = sub.add_parser("fetch", help="download the broker jars into the cache (once)")
    fetch.set_defaults(handler=_fetch)


def _state_dir(args: argparse.Namespace) -> Path:
    from worker.devkafka.jars import cache_root

    return Path(args.data_dir) if args.data_dir else cache_root() / "run" / "kafka"


def _running_pid(state: Path) -> int | None:
    from worker.devkafka.broker import pid_alive

    try:
        pid = int((state / "broker.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _start(args: argparse.Namespace) -> int:
    import shutil

    from worker.cli import CommandError
    from worker.devkafka.broker import KafkaBroker
    from worker.devkafka.jars import DevKafkaError

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        print(f"KAFKA_BOOTSTRAP_SERVERS is set ({external}); not starting a broker")
        return 0
    state = _state_dir(args)
    if _running_pid(state):
        print((state / "bootstrap").read_text().strip())
        return 0
    # Each start gets a freshly formatted data directory.
    shutil.rmtree(state, ignore_errors=True)
    broker = KafkaBroker(state, args.port, detach=True)
    try:
        broker.start()
    except DevKafkaError as exc:
        raise CommandError(str(exc)) from exc
    print(broker.bootstrap_servers)
    return 0


def _stop(args: argparse.Namespace) -> int:
    from worker.devkafka.broker import terminate_process

    state = _state_dir(args)
    pid = _running_pid(state)
    if pid is None:
        print("no broker running")
        return 0
    terminate_process(pid, timeout=20.0)
    (state / "broker.pid").unlink(missing_ok=True)
    print(f"broker stopped (pid {pid})")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _state_dir(args)
    pid = _running_pid(state)
    if pid is None:
        print("down")
        return 3
    print(f"up at {(state / 'bootstrap').read_text().strip()} (pid {pid})")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from worker.cli import CommandError
    from worker.devkafka.jars import DevKafkaError, fetch_jars, java_executable

    try:
        java_executable()
        path = fetch_jars()
    except DevKafkaError as exc:
        raise CommandError(str(exc)) from exc
    print(f"Kafka broker jars ready in {path}")
    return 0
