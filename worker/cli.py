"""The ``zapflow`` command line.

Each capability registers its own subcommands from a small ``cli`` module that
imports nothing heavy at import time, so ``zapflow --help`` stays fast; the work
is imported when a subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker import __version__

# Modules that define ``register(subparsers)``; the order is the order in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "worker.devkafka.cli",
    "worker.simulator.cli",
    "worker.ingest.cli",
    "worker.rules.cli",
    "worker.process.cli",
    "worker.actions.cli",
    "worker.run.cli",
    "worker.console.cli",
)


class CommandError(Exception):
    """A failure to report to the user as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zapflow",
        description=(
            "zapflow turns the event stream of CodeChat WhatsApp gateways into Kafka topics "
            "and runs YAML automations on them."
        ),
    )
    parser.add_argument("--version", action="version", version=f"zapflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name + ".").startswith(exc.name + "."):
                raise
            continue  # a capability not present in this build
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except CommandError as exc:
        print(f"zapflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def entry() -> int:
    """The ``zapflow`` executable: :func:`main` with the event loop chosen for commands.

    :func:`main` itself leaves the loop alone, so calling it in a process that has its own
    (a test) changes nothing there.
    """
    from worker.eventloop import EventLoopError, use_event_loop

    try:
        use_event_loop()
    except EventLoopError as exc:
        print(f"zapflow: error: {exc}", file=sys.stderr)
        return 2
    return main()
