"""Starting the processing stage as a Faust worker (what ``zapflow process`` runs)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust

from worker.consumer import ConsumerCollector
from worker.events import actions_topic, event_topic
from worker.observability.server import Observability, StatusServer
from worker.offsets import anchor_offsets
from worker.process.app import ProcessApp, build_app
from worker.process.engine import RulesEngine
from worker.process.metrics import ProcessCollector, status_section
from worker.process.reload import RulesWatcher
from worker.process.settings import ProcessSettings
from worker.process.topics import internal_topics
from worker.streaming import prepare_worker
from worker.topics import ensure_topics

log = logging.getLogger("zapflow.process")


class StartError(Exception):
    """The stage cannot start: bad rules, or topics it cannot use. One line per problem."""


def run_process(
    settings: ProcessSettings, rules_dir: Path, engine: RulesEngine, loglevel: str = "info"
) -> int:
    """Load the rules, create the topics, and run the worker until it is stopped.

    Raises:
        StartError: the rules do not load, or a topic has the wrong partition count.
    """
    try:
        watcher = RulesWatcher.start(rules_dir, engine)
    except engine.load_error as exc:
        raise StartError(f"rules in {rules_dir} do not load:\n{exc}") from None
    if not watcher.current.bundle.events:
        raise StartError(f"rules in {rules_dir} listen to no event (none, or all disabled)")
    built = build_app(settings, watcher, engine)
    sources = [event_topic(name, settings.topic_prefix) for name in built.subscribed]
    rekeyed = built.rekeyed.get_topic_name()
    internal = internal_topics(built.app, built.ticks.get_topic_name(), rekeyed)
    topics = [*sources, actions_topic(settings.topic_prefix), *internal]

    # Faust's worker runs on the loop that is current when it starts; create the topics on it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        created = loop.run_until_complete(
            ensure_topics(
                settings.bootstrap_servers,
                topics,
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                configs=internal,
            )
        )
        loop.run_until_complete(
            anchor_offsets(settings.bootstrap_servers, settings.app_id, [*sources, rekeyed])
        )
    except Exception as exc:
        loop.close()
        raise StartError(str(exc)) from None

    if settings.http_port is not None:
        serve_status(built, settings.http_port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(built.app, loglevel=loglevel, loop=loop, redirect_stdouts=False)
    prepare_worker(worker)
    if created:
        print(f"zapflow process: created topics {', '.join(created)}", flush=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        code = stop.code
    finally:
        log.info("process stage stopped: %s", built.processor.counters)
    return code if isinstance(code, int) else 0


def serve_status(built: ProcessApp, port: int) -> None:
    """Serve the stage's metrics, health and status on ``127.0.0.1:port`` inside the worker."""
    processor = built.processor
    obs = Observability()
    obs.registry.register(ProcessCollector(processor))
    obs.registry.register(ConsumerCollector(built.app))
    obs.status["process"] = lambda: status_section(processor)
    obs.readiness["rules"] = lambda: (True, f"version {processor.watcher.current.bundle.version}")
    server = StatusServer(obs, port=port)

    async def serve() -> None:
        await server.start()
        log.info("metrics and status on %s", server.url)

    built.app.task(serve)
