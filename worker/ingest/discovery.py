"""Instances and their tokens from the gateway itself, with the global apikey.

CodeChat's ``GET /instance/fetchInstances`` (global apikey only) returns every instance
row with its ``Auth.token`` (upstream notes §3.2), so one apikey can replace a token per
instance in the configuration. Instances named in the configuration keep their own
token and events; discovery only adds the others. It runs once at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from worker.config import Secret
from worker.ingest.config import IngestConfig, InstanceConfig


class DiscoveryError(Exception):
    """The gateway did not list its instances."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(url, problem)
        self.url = url
        self.problem = problem

    def __str__(self) -> str:
        return f"cannot discover instances from {self.url}: {self.problem}"


def fetch_instances_url(gateway_url: str) -> str:
    """The REST URL beside the socket URL: ``ws://h:p/ws/events`` → ``http://h:p/instance/fetchInstances``."""
    parts = urlsplit(gateway_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/instance/fetchInstances", "", ""))


def instances_from_rows(rows: Any, events: tuple[str, ...]) -> list[InstanceConfig]:
    """Instance configs from the ``fetchInstances`` rows; rows without a token are skipped.

    Raises:
        ValueError: the answer is not a list of instance rows.
    """
    if not isinstance(rows, list):
        raise ValueError("expected a list of instances")
    found = []
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("expected a list of instances")
        name = row.get("name")
        auth = row.get("Auth")
        token = auth.get("token") if isinstance(auth, dict) else None
        if isinstance(name, str) and name and isinstance(token, str) and token:
            found.append(InstanceConfig(name, Secret(token, "fetchInstances"), events))
    return found


def merge_instances(
    configured: Iterable[InstanceConfig], discovered: Iterable[InstanceConfig]
) -> tuple[InstanceConfig, ...]:
    """Configured instances first and as configured; then the discovered ones not named."""
    merged = list(configured)
    names = {inst.name for inst in merged}
    merged.extend(inst for inst in discovered if inst.name not in names)
    return tuple(merged)


async def discover(config: IngestConfig, request_timeout: float = 10.0) -> IngestConfig:
    """The configuration with the gateway's instances added (if ``gateway.discover``).

    Raises:
        DiscoveryError: the request failed or was refused.
    """
    if not config.discover or config.apikey is None:
        return config
    import aiohttp

    url = fetch_instances_url(config.gateway_url)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session,
            session.get(url, headers={"apikey": config.apikey.reveal()}) as response,
        ):
            if response.status != 200:
                raise DiscoveryError(
                    url, f"HTTP {response.status}; check gateway.apikey (the global apikey)"
                )
            rows = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DiscoveryError(url, f"{type(exc).__name__}: {exc}") from None
    try:
        found = instances_from_rows(rows, config.default_events)
    except ValueError as exc:
        raise DiscoveryError(url, str(exc)) from None
    instances = merge_instances(config.instances, found)
    if not instances:
        raise DiscoveryError(url, "the gateway lists no instances with a token")
    return replace(config, instances=instances)
