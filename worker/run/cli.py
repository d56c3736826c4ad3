"""``zapflow run`` and ``zapflow dev``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worker.observability.logs import FORMATS


def register(subparsers: Any) -> None:
    run: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run ingest, rules and actions in one process (production entry point)",
        description=(
            "Run every stage in one process: gateway subscriptions into Kafka, the rules on "
            "the event topics, and the action executor; metrics, health and status on one "
            "HTTP port. Stops gracefully on SIGTERM or Ctrl-C."
        ),
    )
    run.add_argument("--config", type=Path, default=Path("zapflow.yaml"), metavar="FILE")
    run.add_argument("--rules", type=Path, default=Path("rules"), metavar="DIR")
    run.add_argument(
        "--only",
        action="append",
        choices=("ingest", "process", "actions"),
        help="run only this stage (repeatable); default: all three",
    )
    run.add_argument("--log-format", choices=FORMATS, default="text")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.add_argument("--quiet", action="store_true", help="no banner and no periodic summary")
    run.set_defaults(handler=_run)

    dev: argparse.ArgumentParser = subparsers.add_parser(
        "dev",
        help="the local demo: embedded Kafka, gateway simulator, worker, live view",
        description=(
            "Start an embedded Kafka broker, a CodeChat gateway simulator with demo traffic, "
            "and the worker with the shipped rules; show events, rules firing, actions and "
            "alerts live. Ctrl-C stops everything."
        ),
    )
    dev.add_argument("--rules", type=Path, default=Path("rules"), metavar="DIR")
    dev.add_argument("--instances", type=int, default=3, help="simulated gateway instances")
    dev.add_argument("--rate", type=float, default=2.0, help="background events per second")
    dev.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    dev.add_argument("--plain", action="store_true", help="print lines instead of the live view")
    dev.add_argument("--http-port", type=int, default=9464, help="worker metrics/status port")
    dev.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the demo keeps its broker and worker data",
    )
    dev.set_defaults(handler=_dev)


def _run(args: argparse.Namespace) -> int:
    from worker.cli import CommandError
    from worker.config import ConfigError
    from worker.run.app import StartError, run
    from worker.run.config import STAGES, load_run_config

    stages = tuple(s for s in STAGES if not args.only or s in args.only)
    if not args.rules.is_dir() and "process" in stages:
        raise CommandError(
            f"rules directory {args.rules} does not exist; pass --rules DIR "
            "(or --only ingest --only actions to run without rules)"
        )
    try:
        config = load_run_config(args.config, stages)
        return run(
            config,
            args.rules,
            log_format=args.log_format,
            log_level=args.log_level,
            quiet=args.quiet,
        )
    except (ConfigError, StartError) as exc:
        raise CommandError(str(exc)) from None


def _dev(args: argparse.Namespace) -> int:
    from worker.run.dev import run_dev

    return int(run_dev(args))
