"""``zapflow process``: run the rules on the event topics and emit action records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "process",
        help="run the rules on the event topics (Faust worker)",
        description=(
            "Consume the codechat.<event> topics the rules listen to, evaluate the rules with "
            "their state in Faust tables, and produce action records to codechat.actions. "
            "The rules directory is reloaded when it changes, or on SIGHUP."
        ),
    )
    parser.add_argument("--config", type=Path, help="zapflow YAML config (kafka, process)")
    parser.add_argument("--rules", type=Path, default=Path("rules"), help="rules directory")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that ``zapflow --help`` does not import faust.
    from worker.cli import CommandError
    from worker.process.engine import BundleEngine
    from worker.process.run import StartError, run_process
    from worker.process.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config, alone=True)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    if not args.rules.is_dir():
        raise CommandError(f"rules directory {args.rules} does not exist")
    try:
        return run_process(settings, args.rules, BundleEngine(), args.log_level)
    except StartError as exc:
        raise CommandError(str(exc)) from None
