"""SIGHUP under ``zapflow run``: the rules, and the instances, without a restart.

The process stage owns the signal (a forced rules reload, see :mod:`worker.process.app`)
and calls what ``zapflow run`` adds here: re-read the configuration file (and, with
``gateway.discover``, the gateway's instance list), start and stop the subscriptions of
added and removed instances, and give the executor the instances' current tokens so
replies on a new instance authenticate. Only instances change this way; gateway, Kafka and
stage settings need a restart. A file that no longer loads is refused with the same message
as at start, and the running configuration stays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("zapflow.run")

_reloads: set[asyncio.Task[bool]] = set()


def reload_soon(built: Any, say: Callable[[str], None] | None = None) -> None:
    """The SIGHUP callback: reload in the background (discovery needs the network)."""
    task = asyncio.get_running_loop().create_task(reload_instances(built, say))
    _reloads.add(task)
    task.add_done_callback(_reloads.discard)


async def reload_instances(built: Any, say: Callable[[str], None] | None = None) -> bool:
    """Apply the instances of ``built.config.path`` to the running stages of ``built``."""
    from worker.config import ConfigError
    from worker.ingest.discovery import DiscoveryError, discover
    from worker.run.config import load_run_config

    path = built.config.path
    try:
        config = load_run_config(path, built.config.stages)
        ingest = await discover(config.ingest) if config.ingest is not None else None
    except (ConfigError, DiscoveryError) as exc:
        log.error("configuration not reloaded, keeping the running one: %s", exc)
        return False
    parts = []
    if built.ingest is not None and ingest is not None:
        added, removed = built.ingest.reload(ingest)
        parts.append(
            f"{len(ingest.instances)} instances ({len(added)} added, {len(removed)} removed)"
        )
    if built.executor is not None and config.actions is not None:
        current = built.executor.settings
        tokens = config.actions.gateway.tokens
        built.executor.settings = dataclasses.replace(
            current, gateway=dataclasses.replace(current.gateway, tokens=tokens)
        )
        parts.append(f"executor knows {len(tokens)} instance tokens")
    line = f"run: configuration reloaded from {path}; " + "; ".join(parts)
    log.info("%s", line)
    if say is not None:
        say(line)
    return True
