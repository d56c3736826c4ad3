"""``zapflow tail`` and ``zapflow status``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worker.events import DEFAULT_TOPIC_PREFIX


def register(subparsers: Any) -> None:
    tail: argparse.ArgumentParser = subparsers.add_parser(
        "tail",
        help="follow the Kafka topics and print events, actions and dead letters",
        description=(
            "Follow zapflow's Kafka topics and print one line per record. EVENT is an event "
            "name (messages.upsert, connection.update, ...) or actions, dlq, invalid; "
            "default: every event topic."
        ),
    )
    tail.add_argument("events", nargs="*", metavar="EVENT")
    tail.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: the running dev broker)"
    )
    tail.add_argument(
        "--config",
        type=Path,
        help="read bootstrap servers, topic prefix and kafka.security from this zapflow config",
    )
    tail.add_argument(
        "--prefix", default=None, help=f"topic prefix (default: {DEFAULT_TOPIC_PREFIX})"
    )
    tail.add_argument("--since", help="start from a time: 10m, 2h, 1d or ISO 8601 (default: now)")
    tail.add_argument("--json", action="store_true", help="print the raw JSON values")
    tail.add_argument("--limit", type=int, default=None, help="stop after N records")
    tail.set_defaults(handler=_tail)

    status: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="show what a running zapflow process is doing"
    )
    status.add_argument(
        "--url", default="http://127.0.0.1:9464", help="the process's HTTP port (metrics/status)"
    )
    status.add_argument("--json", action="store_true", help="print the raw status JSON")
    status.set_defaults(handler=_status)


def _tail(args: argparse.Namespace) -> int:
    from worker.console.tail import run

    return run(args)


def _status(args: argparse.Namespace) -> int:
    from worker.console.status import run

    return run(args)
