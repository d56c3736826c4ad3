"""``zapflow ingest --config FILE``: gateway subscriptions into Kafka, alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ingest",
        help="subscribe to the gateway's WebSocket events and write them to Kafka",
        description=(
            "Keep one WebSocket subscription per configured instance and event, and put "
            "every event into its Kafka topic (spooling to disk while Kafka is away). "
            "Stops cleanly on SIGTERM or Ctrl-C."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("zapflow.yaml"),
        metavar="FILE",
        help="configuration file (default: zapflow.yaml); ZAPFLOW_* variables override it",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no status line and no periodic summary"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default: INFO)",
    )
    parser.add_argument(
        "--status-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /status (who owns which subscription) on 127.0.0.1:PORT for zapflow status",
    )
    parser.set_defaults(handler=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    import sys

    from worker.cli import CommandError
    from worker.config import ConfigError, load_document
    from worker.fleet.reload import reload_from_file, start_status_port
    from worker.heap import freeze_startup_heap
    from worker.ingest.config import ingest_config
    from worker.ingest.discovery import DiscoveryError
    from worker.ingest.service import IngestService

    try:
        config = ingest_config(load_document(args.config))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None

    level = "WARNING" if args.quiet and args.log_level == "INFO" else args.log_level
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiokafka logs every failed connection attempt at ERROR while the broker is away;
    # ingest reports that state itself, once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    def say(line: str) -> None:
        print(line, flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        service = IngestService(config, output=None if args.quiet else say)
        status_server = None
        try:
            await service.start()
            # Instances added or removed at runtime: edit the file, send SIGHUP.
            loop.add_signal_handler(
                signal.SIGHUP, reload_from_file, service, args.config, None if args.quiet else say
            )
            if args.status_port is not None:
                status_server = await start_status_port(service, args.status_port)
            freeze_startup_heap()
            await stop.wait()
            if not args.quiet:
                say("ingest: stopping (flushing to Kafka, spooling what is left)")
        finally:
            await service.stop()
            if status_server is not None:
                await status_server.stop()
        if not args.quiet:
            stats = service.stats
            say(
                f"ingest: stopped; {stats.received} received, {stats.produced} produced, "
                f"{stats.spool_depth} in the spool"
            )

    try:
        asyncio.run(main())
    except DiscoveryError as exc:
        raise CommandError(str(exc)) from None
    return 0
