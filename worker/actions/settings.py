"""Settings of the action executor.

A small frozen dataclass so the executor can be built by itself (tests, ``zapflow actions``)
or by the process stage from the shared config. Secrets (gateway apikey, instance tokens) are
``${env:NAME}`` references, resolved when a request is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from worker.actions.limits import Rate
from worker.actions.retry import RetryPolicy
from worker.events import DEFAULT_TOPIC_PREFIX

GatewayAuth = Literal["bearer", "apikey"]

_GATEWAY_AUTH: Final = ("bearer", "apikey")


class SettingsError(ValueError):
    """A bad executor setting: says which key, what was found and what is expected."""


@dataclass(frozen=True)
class GatewaySettings:
    """How to reach the CodeChat gateway's REST API."""

    #: Base URL, e.g. ``http://localhost:8084``.
    url: str = "http://localhost:8084"
    #: ``bearer``: use the instance's JWT from :attr:`tokens` (falling back to the apikey when an
    #: instance has no token); ``apikey``: always send the global key in the ``apikey`` header.
    auth: GatewayAuth = "apikey"
    #: Global API key, usually a ``${env:NAME}`` reference.
    apikey: str | None = None
    #: Instance name -> JWT (usually ``${env:NAME}`` references).
    tokens: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutorSettings:
    """Everything the executor needs; defaults suit one process on a laptop."""

    #: Prefix of the actions and dead-letter topics (``codechat.`` gives ``codechat.actions``).
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    #: Partitions of the actions topic; the idempotency table uses the same count.
    partitions: int = 1
    #: Replication factor for topics the executor creates.
    replication_factor: int = 1
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Timeout of one outbound request (records may lower or raise it for ``http``), seconds.
    request_timeout_s: float = 10.0
    #: Requests in flight at once, across all destinations.
    concurrency: int = 128
    #: Requests in flight at once to the gateway, all instances together: the rest of
    #: :attr:`concurrency` stays for alerts and webhooks while the gateway is slow.
    gateway_concurrency: int = 64
    #: Requests in flight at once to one destination (scheme, host, port), and to the gateway
    #: for one instance, so a slow endpoint (or instance) can hold at most this many slots
    #: and never stall the rest. The gateway holds each send for its ``delay_ms``.
    per_destination_concurrency: int = 8
    #: Records accepted but not finished (in flight, waiting for a retry or for a send limit).
    #: The agent stops taking new records while this many are pending.
    max_pending: int = 10_000
    #: WhatsApp sends per instance; ``None`` = unlimited.
    send_rate_per_instance: Rate | None = field(default_factory=lambda: Rate(1.0, 10))
    #: WhatsApp sends per (instance, chat); ``None`` = unlimited.
    send_rate_per_chat: Rate | None = field(default_factory=lambda: Rate(0.2, 3))
    #: Finished keys are forgotten after this many seconds (a replay older than that would
    #: perform again); keep it at least as long as the actions topic's retention.
    ledger_retention_s: float = 7 * 24 * 3600.0
    #: The shortest time between two passes looking for finished keys past the retention,
    #: seconds; a pass begins every tenth of the retention if that is longer, and is spread
    #: over it (``Executor._prune``).
    prune_interval_s: float = 600.0
    #: On a warm shutdown, how long requests already on the wire may take to finish, seconds.
    shutdown_grace_s: float = 5.0
    #: Name of the idempotency table (its changelog topic is ``<app id>-<name>-changelog``).
    table_name: str = "action-ledger"


def settings_from_mapping(data: Mapping[str, Any], where: str = "actions") -> ExecutorSettings:
    """Build settings from the ``actions`` section of a config file (plain JSON-like data).

    Raises:
        SettingsError: an unknown key or a value of the wrong type, naming the key.
    """
    known = {
        "topic_prefix",
        "partitions",
        "replication_factor",
        "gateway",
        "retry",
        "request_timeout_s",
        "concurrency",
        "gateway_concurrency",
        "per_destination_concurrency",
        "max_pending",
        "send_rate_per_instance",
        "send_rate_per_chat",
        "ledger_retention_s",
        "prune_interval_s",
        "shutdown_grace_s",
    }
    _reject_unknown(data, known, where)
    defaults = ExecutorSettings()
    gateway_data = data.get("gateway", {})
    _require_mapping(gateway_data, f"{where}.gateway")
    _reject_unknown(gateway_data, {"url", "auth", "apikey", "tokens"}, f"{where}.gateway")
    auth = gateway_data.get("auth", "apikey")
    if auth not in _GATEWAY_AUTH:
        raise SettingsError(f"{where}.gateway.auth: expected 'bearer' or 'apikey', found {auth!r}")
    tokens = gateway_data.get("tokens", {})
    _require_mapping(tokens, f"{where}.gateway.tokens")
    gateway = GatewaySettings(
        url=_str(gateway_data, "url", GatewaySettings.url, f"{where}.gateway"),
        auth=auth,
        apikey=_opt_str(gateway_data, "apikey", f"{where}.gateway"),
        tokens={str(k): str(v) for k, v in tokens.items()},
    )
    retry_data = data.get("retry", {})
    _require_mapping(retry_data, f"{where}.retry")
    _reject_unknown(
        retry_data,
        {"max_attempts", "base_delay_s", "max_delay_s", "max_retry_after_s"},
        f"{where}.retry",
    )
    base = RetryPolicy()
    retry = RetryPolicy(
        max_attempts=_int(retry_data, "max_attempts", base.max_attempts, f"{where}.retry"),
        base_delay_s=_num(retry_data, "base_delay_s", base.base_delay_s, f"{where}.retry"),
        max_delay_s=_num(retry_data, "max_delay_s", base.max_delay_s, f"{where}.retry"),
        max_retry_after_s=_num(
            retry_data, "max_retry_after_s", base.max_retry_after_s, f"{where}.retry"
        ),
    )
    return ExecutorSettings(
        topic_prefix=_str(data, "topic_prefix", defaults.topic_prefix, where),
        partitions=_int(data, "partitions", defaults.partitions, where),
        replication_factor=_int(data, "replication_factor", defaults.replication_factor, where),
        gateway=gateway,
        retry=retry,
        request_timeout_s=_num(data, "request_timeout_s", defaults.request_timeout_s, where),
        concurrency=_int(data, "concurrency", defaults.concurrency, where),
        gateway_concurrency=_int(data, "gateway_concurrency", defaults.gateway_concurrency, where),
        per_destination_concurrency=_int(
            data, "per_destination_concurrency", defaults.per_destination_concurrency, where
        ),
        max_pending=_int(data, "max_pending", defaults.max_pending, where),
        send_rate_per_instance=_rate(
            data, "send_rate_per_instance", defaults.send_rate_per_instance, where
        ),
        send_rate_per_chat=_rate(data, "send_rate_per_chat", defaults.send_rate_per_chat, where),
        ledger_retention_s=_num(data, "ledger_retention_s", defaults.ledger_retention_s, where),
        prune_interval_s=_num(data, "prune_interval_s", defaults.prune_interval_s, where),
        shutdown_grace_s=_num(data, "shutdown_grace_s", defaults.shutdown_grace_s, where),
    )


def _reject_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in data:
        if key not in known:
            expected = ", ".join(sorted(known))
            raise SettingsError(f"{where}: unknown key {key!r} (expected one of: {expected})")


def _require_mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise SettingsError(f"{where}: expected a mapping, found {type(value).__name__}")


def _str(data: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise SettingsError(f"{where}.{key}: expected a string, found {value!r}")
    return value


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise SettingsError(f"{where}.{key}: expected a string, found {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SettingsError(f"{where}.{key}: expected a positive integer, found {value!r}")
    return value


def _num(data: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise SettingsError(f"{where}.{key}: expected a number >= 0, found {value!r}")
    return float(value)


def _rate(data: Mapping[str, Any], key: str, default: Rate | None, where: str) -> Rate | None:
    if key not in data:
        return default
    value = data[key]
    if value is None:
        return None
    _require_mapping(value, f"{where}.{key}")
    _reject_unknown(value, {"per_second", "burst"}, f"{where}.{key}")
    per_second = _num(value, "per_second", 1.0, f"{where}.{key}")
    burst = _num(value, "burst", 1.0, f"{where}.{key}")
    try:
        return Rate(per_second, burst)
    except ValueError as exc:
        raise SettingsError(f"{where}.{key}: {exc}") from None
