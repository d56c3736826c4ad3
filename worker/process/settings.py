"""Settings of the processing stage, read from the ``kafka`` and ``process`` sections of the
zapflow YAML config (other sections belong to other stages and are ignored here).

```yaml
kafka:
  bootstrap_servers: 127.0.0.1:9092   # env KAFKA_BOOTSTRAP_SERVERS wins
  topic_prefix: codechat.
  partitions: 8                       # of the event topics, the changelogs and the tick topic
  replication_factor: 1
process:
  app_id: zapflow-process             # consumer group, prefix of changelog topics
  store: rocksdb://                   # memory:// rebuilds state from the changelog on start
  data_dir: .zapflow/process          # RocksDB files
  dedupe_ttl_s: 1h                    # how long a gateway message id is remembered (0: off)
  reload_interval_s: 1s               # how often the rules directory is checked
  tick_interval_s: 1s                 # how often due timers are fired
  http_port: 9464                     # /metrics /healthz /readyz /status; absent = none
  faust: {}                           # extra faust settings, e.g. broker_session_timeout: 10
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from worker.config import ConfigError, ConfigSection, document_from_mapping, load_document
from worker.events import DEFAULT_TOPIC_PREFIX


class SettingsError(Exception):
    """The config file is missing, not YAML, or has a value of the wrong kind."""


@dataclass(frozen=True)
class ProcessSettings:
    """Everything the processing stage is configured by."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    partitions: int = 8
    replication_factor: int = 1
    app_id: str = "zapflow-process"
    store: str = "rocksdb://"
    data_dir: Path = Path(".zapflow/process")
    dedupe_ttl_s: float = 3600.0
    reload_interval_s: float = 1.0
    tick_interval_s: float = 1.0
    #: Port of the metrics and status server on 127.0.0.1 (None: no server).
    http_port: int | None = None
    #: Passed to ``faust.App`` as is, after the settings above.
    faust: Mapping[str, Any] = field(default_factory=dict)


#: Keys of the ``process`` section (unknown ones are errors: a typo must not be ignored).
PROCESS_KEYS = (
    "app_id",
    "store",
    "data_dir",
    "dedupe_ttl_s",
    "reload_interval_s",
    "tick_interval_s",
    "http_port",
    "faust",
)


def load_settings(
    path: Path | None, environ: Mapping[str, str] = os.environ, *, alone: bool = False
) -> ProcessSettings:
    """Read the settings from ``path`` (``None`` = defaults) and the environment.

    ``ZAPFLOW_PROCESS__<KEY>`` and ``ZAPFLOW_KAFKA__<KEY>`` override keys as for every stage
    (:mod:`worker.config`); ``KAFKA_BOOTSTRAP_SERVERS`` wins over both. ``alone`` (the
    ``zapflow process`` command) refuses ``kafka.security``, which only ``zapflow run``
    applies to the stage.

    Raises:
        SettingsError: naming the file (or variable) and the key that is wrong.
    """
    try:
        document = (
            document_from_mapping({}, environ=environ)
            if path is None
            else load_document(path, environ)
        )
        settings = _read(document.root(), alone)
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        settings = replace(settings, bootstrap_servers=environ["KAFKA_BOOTSTRAP_SERVERS"])
    return settings


def _read(root: ConfigSection, alone: bool) -> ProcessSettings:
    defaults = ProcessSettings()
    kafka = root.section("kafka")
    process = root.section("process")
    process.check_keys(PROCESS_KEYS)
    if alone and _secured(kafka.data.get("security")):
        raise kafka.error(
            "security",
            "zapflow process alone connects without credentials",
            "run the stage as `zapflow run --only process`, which applies kafka.security",
        )
    faust = process.data.get("faust") or {}
    if not isinstance(faust, Mapping):
        raise process.error("faust", "expected a mapping of Faust settings", "e.g. {}")
    http_port = (
        process.integer("http_port", None, minimum=0, example=9464)
        if process.has("http_port")
        else None
    )
    return ProcessSettings(
        bootstrap_servers=kafka.string("bootstrap_servers", defaults.bootstrap_servers),
        topic_prefix=kafka.string("topic_prefix", defaults.topic_prefix),
        partitions=kafka.integer("partitions", defaults.partitions, minimum=1, example=8),
        replication_factor=kafka.integer(
            "replication_factor", defaults.replication_factor, minimum=1
        ),
        app_id=process.string("app_id", defaults.app_id),
        store=process.choice("store", ("rocksdb://", "memory://"), defaults.store),
        data_dir=Path(process.string("data_dir", str(defaults.data_dir))),
        dedupe_ttl_s=process.duration("dedupe_ttl_s", defaults.dedupe_ttl_s),
        reload_interval_s=process.duration(
            "reload_interval_s", defaults.reload_interval_s, minimum=0.05
        ),
        tick_interval_s=process.duration("tick_interval_s", defaults.tick_interval_s, minimum=0.05),
        http_port=http_port,
        faust=dict(faust),
    )


def _secured(security: Any) -> bool:
    """Whether a ``kafka.security`` section asks for more than a plain connection."""
    return (
        isinstance(security, Mapping) and str(security.get("protocol", "PLAINTEXT")) != "PLAINTEXT"
    )
