"""A Faust app that runs the executor alone (``zapflow actions``).

The process stage builds its own app and calls :func:`register_executor` on it; this module is
the standalone shape of the same thing, and what the integration tests start as a subprocess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from worker.actions.executor import Executor, register_executor
from worker.actions.settings import ExecutorSettings
from worker.batching import use_broker_batching
from worker.consumer import use_gapless_consumer
from worker.streaming import QuietMonitor


@dataclass(frozen=True)
class WorkerOptions:
    """Faust worker settings the executor's standalone app needs."""

    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str = "zapflow-actions"
    #: ``memory://`` rebuilds the table from its changelog at every start; ``rocksdb://`` keeps it.
    store: str = "rocksdb://"
    data_dir: Path = Path("./zapflow-data")
    web_enabled: bool = False
    web_port: int = 6066
    #: Seconds before the broker gives a dead worker's partitions to others.
    session_timeout_s: float = 30.0


def build_app(
    settings: ExecutorSettings, options: WorkerOptions, env: Mapping[str, str] | None = None
) -> tuple[Any, Executor]:
    """A Faust app with the executor registered on it."""
    app = faust.App(
        options.app_id,
        broker=f"kafka://{options.bootstrap_servers}",
        store=options.store,
        datadir=str(options.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        topic_disable_leader=True,
        web_enabled=options.web_enabled,
        web_port=options.web_port,
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=min(3.0, options.session_timeout_s / 5),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        Monitor=QuietMonitor,
    )
    use_broker_batching(use_gapless_consumer(app))
    executor = register_executor(app, settings, env=env)
    return app, executor
