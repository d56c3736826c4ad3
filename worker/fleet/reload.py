"""Re-reading the configuration of a running ingest (SIGHUP), and its status port.

Instances come and go while the fleet runs: edit ``zapflow.yaml`` (or, with
``gateway.discover``, create or delete them on the gateway) and send SIGHUP to every
ingest process (``kill -HUP PID``). Each re-reads the file (and asks the gateway again),
starts the new instances' subscriptions it owns and stops the removed ones'. A file that no longer
loads is refused with the same message as at start, and the process carries on with
the configuration it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.config import ConfigError, load_document

log = logging.getLogger("zapflow.fleet")


_reloads: set[asyncio.Task[bool]] = set()


def reload_from_file(service: Any, path: Path, say: Callable[[str], None] | None = None) -> None:
    """SIGHUP handler: reload in the background (discovery needs the network)."""
    task = asyncio.get_running_loop().create_task(reload_instances(service, path, say))
    _reloads.add(task)
    task.add_done_callback(_reloads.discard)


async def reload_instances(
    service: Any, path: Path, say: Callable[[str], None] | None = None
) -> bool:
    """Apply the instances of the file at ``path`` (and, with ``gateway.discover``, the
    gateway's current instance list) to a running ``IngestService``."""
    from worker.ingest.config import ingest_config
    from worker.ingest.discovery import DiscoveryError, discover

    try:
        config = await discover(ingest_config(load_document(path)))
    except (ConfigError, DiscoveryError) as exc:
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
    from worker.fleet.roster import ownership_status
    from worker.observability.server import Observability, StatusServer

    obs = Observability()
    obs.status["ownership"] = lambda: ownership_status(service)
    server = StatusServer(obs, host="127.0.0.1", port=port)
    await server.start()
    log.info("status on %s/status", server.url)
    return server
