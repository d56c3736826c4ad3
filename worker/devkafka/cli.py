"""``zapflow kafka start|stop|status|fetch``."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "kafka", help="run the embedded single-node Apache Kafka broker for development"
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
