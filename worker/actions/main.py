"""The ``zapflow actions`` command: load the config, create topics, run the Faust worker."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import yaml
from faust.worker import Worker

from worker.actions.app import WorkerOptions, build_app
from worker.actions.settings import SettingsError, settings_from_mapping
from worker.cli import CommandError
from worker.events import actions_topic, dlq_topic
from worker.offsets import anchor_offsets
from worker.streaming import prepare_worker
from worker.topics import TopicLayoutError, ensure_topics


def run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise CommandError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"{path}: expected a mapping at the top level")
    try:
        settings = settings_from_mapping(data.get("actions") or {})
    except SettingsError as exc:
        raise CommandError(f"{path}: {exc}") from None
    kafka = data.get("kafka") or {}
    worker = data.get("worker") or {}
    if not isinstance(kafka, dict) or not isinstance(worker, dict):
        raise CommandError(f"{path}: 'kafka' and 'worker' must be mappings")
    security = kafka.get("security")
    if isinstance(security, dict) and security.get("protocol", "PLAINTEXT") != "PLAINTEXT":
        raise CommandError(
            f"{path}: kafka.security: zapflow actions alone connects without credentials; "
            "run the executor as `zapflow run --only actions`, which applies kafka.security"
        )
    try:
        options = _worker_options(args.bootstrap_servers, kafka, worker)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{path}: worker: {exc}") from None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    topic = actions_topic(settings.topic_prefix)
    try:
        loop.run_until_complete(
            ensure_topics(
                options.bootstrap_servers,
                [topic, dlq_topic(settings.topic_prefix)],
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                check=[topic],
                setting="actions.partitions",
            )
        )
    except TopicLayoutError as exc:
        raise CommandError(f"{path}: {exc}") from None
    loop.run_until_complete(anchor_offsets(options.bootstrap_servers, options.app_id, [topic]))
    app, _ = build_app(settings, options)
    worker = Worker(app, loglevel=args.log_level, loop=loop)
    prepare_worker(worker)
    worker.execute_from_commandline()


def _worker_options(
    bootstrap_servers: str | None, kafka: dict[str, Any], worker: dict[str, Any]
) -> WorkerOptions:
    defaults = WorkerOptions()
    return WorkerOptions(
        bootstrap_servers=bootstrap_servers
        or str(kafka.get("bootstrap_servers", defaults.bootstrap_servers)),
        app_id=str(worker.get("app_id", defaults.app_id)),
        store=str(worker.get("store", defaults.store)),
        data_dir=Path(worker.get("data_dir", defaults.data_dir)),
        web_enabled=bool(worker.get("web_enabled", defaults.web_enabled)),
        web_port=int(worker.get("web_port", defaults.web_port)),
        session_timeout_s=float(worker.get("session_timeout_s", defaults.session_timeout_s)),
    )
