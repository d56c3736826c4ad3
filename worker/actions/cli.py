"""``zapflow actions --config FILE``: run the action executor alone."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "actions",
        help="run the action executor (performs records from the actions topic)",
        description=(
            "Run the action executor: reads action records from <prefix>actions, performs each "
            "at most once, retries retriable failures and writes failures to <prefix>dlq."
        ),
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers (overrides)"
    )
    parser.add_argument("--log-level", default="info", help="info, debug, warning (default info)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that ``zapflow --help`` does not load Faust.
    from worker.actions.main import run as run_actions

    return run_actions(args)
