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
  dedupe_ttl_s: 3600                  # how long a gateway message id is remembered (0: off)
  reload_interval_s: 1.0              # how often the rules directory is checked
  tick_interval_s: 1.0                # how often due timers are fired
  http_port: 9464                     # /metrics /healthz /readyz /status; absent = none
  faust: {}                           # extra faust settings, e.g. broker_session_timeout: 10
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


_KAFKA_KEYS = {
    "bootstrap_servers": str,
    "topic_prefix": str,
    "partitions": int,
    "replication_factor": int,
}
_PROCESS_KEYS = {
    "app_id": str,
    "store": str,
    "data_dir": Path,
    "dedupe_ttl_s": float,
    "reload_interval_s": float,
    "tick_interval_s": float,
    "http_port": int,
    "faust": dict,
}


def load_settings(path: Path | None, environ: Mapping[str, str] = os.environ) -> ProcessSettings:
    """Read the settings from ``path`` (``None`` = defaults), then the environment.

    Raises:
        SettingsError: naming the file and the key that is wrong.
    """
    document: Any = {}
    if path is not None:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read the config file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise SettingsError(f"{path}: expected a mapping at the top, found {_kind(document)}")
    values: dict[str, Any] = {}
    for section, keys in (("kafka", _KAFKA_KEYS), ("process", _PROCESS_KEYS)):
        values.update(_section(document, section, keys, path))
    if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        values["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
    return ProcessSettings(**values)


def _section(
    document: Mapping[str, Any], name: str, keys: Mapping[str, type], path: Path | None
) -> dict[str, Any]:
    section = document.get(name) or {}
    where = f"{path}: {name}" if path else name
    if not isinstance(section, dict):
        raise SettingsError(f"{where}: expected a mapping, found {_kind(section)}")
    values: dict[str, Any] = {}
    for key, given in section.items():
        kind = keys.get(key)
        if kind is None:
            continue  # keys of the other stages share the section (e.g. kafka.producer)
        value = given
        if kind is float and isinstance(given, int) and not isinstance(given, bool):
            value = float(given)
        elif kind is Path and isinstance(given, str):
            value = Path(given)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SettingsError(
                f"{where}.{key}: expected {kind.__name__}, found {_kind(value)} {value!r}"
            )
        values[key] = value
    return values


def _kind(value: Any) -> str:
    return type(value).__name__
