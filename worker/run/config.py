"""One ``zapflow.yaml`` for every stage of ``zapflow run``.

Each stage reads its own section (``gateway``/``instances``/``ingest``, ``process``,
``actions``); what they share is said once and handed to all of them:

- ``kafka`` (bootstrap servers, topic prefix, partitions, replication factor) configures the
  topics of every stage, the executor's included;
- ``instances`` tokens are also what the executor authenticates gateway calls with (Bearer),
  and the gateway's REST address is derived from ``gateway.url`` unless
  ``actions.gateway.url`` says otherwise;
- ``http`` is the one port for metrics, health and status.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from worker.config import ConfigDocument, ConfigError, load_document

if TYPE_CHECKING:
    from worker.actions.settings import ExecutorSettings
    from worker.ingest.config import IngestConfig
    from worker.process.settings import ProcessSettings

STAGES: Final = ("ingest", "process", "actions")
TOP_LEVEL_KEYS: Final = ("gateway", "instances", "kafka", "ingest", "process", "actions", "http")


@dataclass(frozen=True)
class HttpSettings:
    """The status port: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``."""

    host: str = "127.0.0.1"
    port: int = 9464
    enabled: bool = True


def http_settings(document: ConfigDocument) -> HttpSettings:
    section = document.root().section("http")
    section.check_keys(("host", "port", "enabled"))
    base = HttpSettings()
    return HttpSettings(
        host=section.string("host", base.host),
        port=section.integer("port", base.port, minimum=0, example=9464),
        enabled=section.boolean("enabled", base.enabled),
    )


def check_top_level(document: ConfigDocument) -> None:
    """Refuse top-level sections no stage reads (a typo must not be ignored)."""
    document.root().check_keys(TOP_LEVEL_KEYS)


def rest_base_url(ws_url: str) -> str:
    """``ws://gw:8084/ws/events`` -> ``http://gw:8084``: the gateway serves REST on the same port."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


@dataclass(frozen=True)
class RunConfig:
    """The settings of every stage that runs, from one file."""

    path: Path
    document: ConfigDocument
    stages: tuple[str, ...]
    http: HttpSettings
    #: The shared sections (gateway, instances, kafka) are read even when ingest does not run.
    shared: IngestConfig
    ingest: IngestConfig | None = None
    process: ProcessSettings | None = None
    actions: ExecutorSettings | None = None


def load_run_config(path: Path, stages: tuple[str, ...] = STAGES) -> RunConfig:
    """Read ``path`` once and build the settings of ``stages``.

    Raises:
        ConfigError: naming the file (or environment variable), key and fix.
    """
    from worker.actions.settings import SettingsError, settings_from_mapping
    from worker.ingest.config import ingest_config
    from worker.process.settings import SettingsError as ProcessSettingsError
    from worker.process.settings import load_settings

    document = load_document(path)
    check_top_level(document)
    # The ingest reader owns the shared sections (gateway, instances, kafka) and checks them
    # even when ingest itself does not run here, since the other stages use them too.
    ingest = ingest_config(document)
    kafka = ingest.kafka

    process = None
    if "process" in stages:
        try:
            process = load_settings(path)
        except ProcessSettingsError as exc:
            raise ConfigError(str(path), "process", str(exc)) from None
        process = dataclasses.replace(
            process,
            bootstrap_servers=kafka.bootstrap_servers,
            topic_prefix=kafka.topic_prefix,
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
        )

    actions = None
    if "actions" in stages:
        section = document.root().section("actions").data
        try:
            actions = settings_from_mapping(dict(section))
        except SettingsError as exc:
            raise ConfigError(str(path), "actions", str(exc)) from None
        explicit_gateway = dict(section.get("gateway") or {})
        gateway = actions.gateway
        if "url" not in explicit_gateway:
            gateway = dataclasses.replace(gateway, url=rest_base_url(ingest.gateway_url))
        if "tokens" not in explicit_gateway and ingest.instances:
            tokens = {i.name: i.token.reveal() for i in ingest.instances}
            auth = explicit_gateway.get("auth", "bearer")
            gateway = dataclasses.replace(gateway, tokens=tokens, auth=auth)
        actions = dataclasses.replace(
            actions,
            gateway=gateway,
            topic_prefix=kafka.topic_prefix,
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
        )

    return RunConfig(
        path=path,
        document=document,
        stages=stages,
        http=http_settings(document),
        shared=ingest,
        ingest=ingest if "ingest" in stages else None,
        process=process,
        actions=actions,
    )
