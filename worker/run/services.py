"""Stages that are not Faust agents, as ``mode`` services the Faust worker starts and stops.

The worker starts them in order and stops them in reverse order, so ingest stops reading
and flushes (or spools) before Kafka clients of the other stages go away.
"""

from __future__ import annotations

from typing import Any

from mode import Service

from worker.ingest.service import IngestService
from worker.observability.server import StatusServer
from worker.stopping import StopBudget


class IngestRunner(Service):
    """Runs the ingest stage inside the worker's event loop."""

    def __init__(
        self, ingest: IngestService, budget: StopBudget | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ingest = ingest
        #: The Faust worker's wait for Kafka during its stop, which ingest's flush shares.
        self.budget = budget

    async def on_start(self) -> None:
        await self.ingest.start()

    async def on_stop(self) -> None:
        await self.ingest.stop(self.budget)


class StatusRunner(Service):
    """Serves ``/metrics``, ``/healthz``, ``/readyz`` and ``/status``."""

    def __init__(self, server: StatusServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server

    async def on_start(self) -> None:
        # ``zapflow run`` opens the port before Kafka is reachable; adopt it then.
        if not self.server.started:
            await self.server.start()
        self.log.info(
            "metrics and status on %s (/metrics /healthz /readyz /status)", self.server.url
        )

    async def on_stop(self) -> None:
        await self.server.stop()
