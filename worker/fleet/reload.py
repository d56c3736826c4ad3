"""Re-reading the configuration of a running ingest (SIGHUP), and its status port.

Instances come and go while the fleet runs: edit ``zapflow.yaml`` and send SIGHUP to
every ingest process (``kill -HUP PID``). Each re-reads the file, starts the new
instances' subscriptions it owns and stops the removed ones'. A file that no longer
loads is refused with the same message as at start, and the process carries on with
the configuration it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.config import ConfigError, load_document

log = logging.getLogger("zapflow.fleet")


def reload_from_file(service: Any, path: Path, say: Callable[[str], None] | None = None) -> bool:
    """Apply the instances of the file at ``path`` to a running ``IngestService``."""
    from worker.ingest.config import ingest_config

    try:
        config = ingest_config(load_document(path))
    except ConfigError as exc:
        log.error("configuration not reloaded, keeping the running one: %s", exc)
        return False
    added, removed = service.reload(config)
    line = (
        f"ingest: configuration reloaded from {path}; "
        f"{len(config.instances)} instances ({len(added)} added, {len(removed)} removed)"
    )
    log.info("%s", line)
    if say is not None:
        say(line)
    return True


async def start_status_port(service: Any, port: int) -> Any:
    """Serve ``/status`` (with the ``ownership`` section), ``/healthz`` and ``/metrics``."""
    from worker.observability.server import Observability, StatusServer

    obs = Observability()
    if service.roster is not None:
        obs.status["ownership"] = service.roster.status
    server = StatusServer(obs, host="127.0.0.1", port=port)
    await server.start()
    log.info("status on %s/status", server.url)
    return server
