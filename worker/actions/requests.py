"""The HTTP request each action kind turns into (pure: no I/O, no clock).

Bodies follow the gateway's REST contract (CodeChat ``sendMessage.dto.ts`` and
``validate.schema.ts``: ``sendText`` and ``group/updateParticipant``) and the usual incoming
webhook shapes. Every request carries the record's idempotency key in ``Idempotency-Key`` and
every gateway send carries a deterministic ``options.messageId``, so a retry after a crash can be
recognised as the same request by whoever receives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from worker.actions.ids import external_attributes, message_id_for
from worker.actions.record import ActionRecord
from worker.actions.secrets import resolve_secrets
from worker.actions.settings import GatewaySettings

#: Header that carries the idempotency key on every outbound request.
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"

_HTTP_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
_PARTICIPANT_ACTIONS: Final = ("add", "remove", "promote", "demote")
_CHANNEL_TYPES: Final = ("slack", "webhook", "whatsapp")


class InvalidParams(ValueError):
    """The record's ``params`` cannot make a request; retrying cannot help."""

    def __init__(self, kind: str, path: str, problem: str) -> None:
        super().__init__(kind, path, problem)
        self.kind = kind
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.kind}: params.{self.path}: {self.problem}"


@dataclass(frozen=True)
class SendLimitKey:
    """Which send-limit buckets a request draws from."""

    instance: str
    #: Chat JID (or number) for per-chat limits; ``None`` charges the instance bucket only.
    chat: str | None


@dataclass(frozen=True)
class OutboundRequest:
    """One HTTP request, ready to send. Holds resolved secrets: never log it whole."""

    method: str
    #: Resolved URL (may hold a secret, e.g. a Slack webhook token).
    url: str
    #: Resolved headers (may hold secrets).
    headers: Mapping[str, str]
    #: JSON body, or ``None`` for no body.
    json: Any
    timeout_s: float
    #: ``METHOD url`` with secret references left unresolved: safe for logs and the DLQ.
    display: str
    #: ``scheme://host:port`` the request goes to; requests are capped per destination.
    destination: str
    #: Send limits to honour before sending, for WhatsApp messages.
    send_limit: SendLimitKey | None = None
    #: Extra facts for logs (never secrets).
    labels: Mapping[str, str] = field(default_factory=dict)
    #: For gateway calls, the instance: each instance's calls are capped on their own too, as
    #: the gateway holds each instance's sends apart (a send's ``delay_ms``, a stuck
    #: instance) and one instance's must not hold up the others'.
    lane: str | None = None


def build_request(
    record: ActionRecord,
    gateway: GatewaySettings,
    env: Mapping[str, str],
    default_timeout_s: float,
) -> OutboundRequest:
    """The request that performs ``record``; for ``kafka.produce`` and ``log`` there is none.

    Raises:
        InvalidParams: ``params`` are missing something or have the wrong shape.
        SecretNotSet, BadSecretReference: a secret reference cannot be resolved.
        ValueError: the kind does not make an HTTP request.
    """
    params = record.params
    if record.kind == "whatsapp.send_text":
        instance = _opt_text(params, "instance", record.kind) or record.instance
        to = _text(params, "to", record.kind)
        return _send_text(
            record,
            gateway,
            env,
            default_timeout_s,
            instance=instance,
            to=to,
            text=_text(params, "text", record.kind),
            quote_=_quote(params, record.kind),
            delay_ms=_opt_int(params, "delay_ms", record.kind),
        )
    if record.kind == "whatsapp.group_participants":
        return _group_participants(record, gateway, env, default_timeout_s)
    if record.kind == "notify":
        return _notify(record, gateway, env, default_timeout_s)
    if record.kind == "http":
        return _http(record, env, default_timeout_s)
    raise ValueError(f"kind {record.kind!r} does not make an HTTP request")


def gateway_headers(
    gateway: GatewaySettings, instance: str, env: Mapping[str, str]
) -> dict[str, str]:
    """Auth headers for a call on behalf of ``instance``.

    ``bearer`` uses the instance's JWT when one is configured and falls back to the global
    apikey; ``apikey`` always sends the global key (it is valid for every instance).
    """
    if gateway.auth == "bearer":
        token = gateway.tokens.get(instance)
        if token is not None:
            return {"Authorization": f"Bearer {resolve_secrets(token, env)}"}
    if gateway.apikey is not None:
        return {"apikey": str(resolve_secrets(gateway.apikey, env))}
    return {}


def send_text_body(
    record: ActionRecord,
    to: str,
    text: str,
    quote_: Mapping[str, Any] | None,
    delay_ms: int | None,
) -> dict[str, Any]:
    """Body of ``POST /message/sendText/{instance}``."""
    options: dict[str, Any] = {
        "messageId": message_id_for(record.idempotency_key),
        "externalAttributes": external_attributes(record.rule_id, record.idempotency_key),
    }
    if delay_ms is not None:
        options["delay"] = delay_ms
    if quote_ is not None:
        # The gateway accepts a Prisma-shaped message (keyId, keyRemoteJid, keyFromMe, ...) as
        # the quoted message, i.e. the fields of the triggering messages.upsert payload.
        options["quotedMessage"] = dict(quote_)
    return {"number": to, "options": options, "textMessage": {"text": text}}


def _send_text(
    record: ActionRecord,
    gateway: GatewaySettings,
    env: Mapping[str, str],
    default_timeout_s: float,
    *,
    instance: str,
    to: str,
    text: str,
    quote_: Mapping[str, Any] | None,
    delay_ms: int | None,
) -> OutboundRequest:
    # ``options.delay`` makes the gateway hold the request while "composing".
    return _gateway_call(
        record,
        gateway,
        env,
        "POST",
        f"/message/sendText/{quote(instance, safe='')}",
        instance=instance,
        json=send_text_body(record, to, text, quote_, delay_ms),
        timeout_s=default_timeout_s + (delay_ms or 0) / 1000,
        send_limit=SendLimitKey(instance=instance, chat=to),
        labels={"instance": instance, "to": to},
    )


def _gateway_call(
    record: ActionRecord,
    gateway: GatewaySettings,
    env: Mapping[str, str],
    method: str,
    path: str,
    *,
    instance: str,
    json: dict[str, Any],
    timeout_s: float,
    send_limit: SendLimitKey,
    labels: Mapping[str, str],
) -> OutboundRequest:
    """A call to the gateway's REST API for ``instance``, with its auth and idempotency key."""
    url = gateway.url.rstrip("/") + path
    headers = {
        **gateway_headers(gateway, instance, env),
        IDEMPOTENCY_HEADER: record.idempotency_key,
    }
    return OutboundRequest(
        method=method,
        url=url,
        headers=headers,
        json=json,
        timeout_s=timeout_s,
        display=f"{method} {url}",
        destination=_destination(url),
        lane=instance,
        send_limit=send_limit,
        labels=labels,
    )


def _group_participants(
    record: ActionRecord, gateway: GatewaySettings, env: Mapping[str, str], default_timeout_s: float
) -> OutboundRequest:
    kind, params = record.kind, record.params
    instance = _opt_text(params, "instance", kind) or record.instance
    group = _text(params, "group", kind)
    action = _text(params, "action", kind)
    if action not in _PARTICIPANT_ACTIONS:
        raise InvalidParams(
            kind, "action", f"expected one of add, remove, promote, demote, found {action!r}"
        )
    participants = params.get("participants")
    if (
        not isinstance(participants, list)
        or not participants
        or not all(isinstance(p, str) and p for p in participants)
    ):
        raise InvalidParams(kind, "participants", "expected a non-empty list of strings")
    query = urlencode({"groupJid": group})
    return _gateway_call(
        record,
        gateway,
        env,
        "PUT",
        f"/group/updateParticipant/{quote(instance, safe='')}?{query}",
        instance=instance,
        json={"action": action, "participants": list(participants)},
        timeout_s=default_timeout_s,
        send_limit=SendLimitKey(instance=instance, chat=None),
        labels={"instance": instance, "group": group},
    )


def _notify(
    record: ActionRecord, gateway: GatewaySettings, env: Mapping[str, str], default_timeout_s: float
) -> OutboundRequest:
    kind, params = record.kind, record.params
    channel = params.get("channel")
    if not isinstance(channel, Mapping):
        raise InvalidParams(kind, "channel", "expected an object with name and type")
    name = _text(channel, "name", kind, "channel.")
    channel_type = _text(channel, "type", kind, "channel.")
    text = _text(params, "text", kind)
    fields = params.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise InvalidParams(kind, "fields", "expected an object")
    if channel_type == "whatsapp":
        instance = _opt_text(channel, "instance", kind, "channel.") or record.instance
        to = _text(channel, "to", kind, "channel.")
        request = _send_text(
            record,
            gateway,
            env,
            default_timeout_s,
            instance=instance,
            to=to,
            text=text,
            quote_=None,
            delay_ms=None,
        )
        return _with_labels(request, channel=name)
    if channel_type not in _CHANNEL_TYPES:
        raise InvalidParams(
            kind, "channel.type", f"expected slack, webhook or whatsapp, found {channel_type!r}"
        )
    raw_url = _text(channel, "url", kind, "channel.")
    raw_headers = channel.get("headers") or {}
    if not isinstance(raw_headers, Mapping) or not all(
        isinstance(v, str) for v in raw_headers.values()
    ):
        raise InvalidParams(kind, "channel.headers", "expected an object of strings")
    url = str(resolve_secrets(raw_url, env))
    headers = {str(k): str(v) for k, v in resolve_secrets(raw_headers, env).items()}
    headers.setdefault(IDEMPOTENCY_HEADER, record.idempotency_key)
    body: dict[str, Any]
    if channel_type == "slack":
        # Slack incoming webhooks (and Mattermost, Rocket.Chat, Discord's /slack) take {"text"}.
        body = {"text": text}
    else:
        body = {
            "channel": name,
            "text": text,
            "fields": dict(fields),
            "rule_id": record.rule_id,
            "instance": record.instance,
            "phase": record.phase,
            "event_id": record.event_id,
            "idempotency_key": record.idempotency_key,
            "created_at": record.created_at,
        }
    return OutboundRequest(
        method="POST",
        url=url,
        headers=headers,
        json=body,
        timeout_s=default_timeout_s,
        display=f"POST {raw_url}",
        destination=_destination(url),
        labels={"channel": name},
    )


def _http(
    record: ActionRecord, env: Mapping[str, str], default_timeout_s: float
) -> OutboundRequest:
    kind, params = record.kind, record.params
    method = _text(params, "method", kind).upper()
    if method not in _HTTP_METHODS:
        expected = ", ".join(sorted(_HTTP_METHODS))
        raise InvalidParams(kind, "method", f"expected one of {expected}, found {method!r}")
    raw_url = _text(params, "url", kind)
    raw_headers = params.get("headers") or {}
    if not isinstance(raw_headers, Mapping) or not all(
        isinstance(v, str) for v in raw_headers.values()
    ):
        raise InvalidParams(kind, "headers", "expected an object of strings")
    timeout = params.get("timeout_s")
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise InvalidParams(kind, "timeout_s", f"expected a positive number, found {timeout!r}")
    url = str(resolve_secrets(raw_url, env))
    headers = {str(k): str(v) for k, v in resolve_secrets(raw_headers, env).items()}
    if not any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers):
        headers[IDEMPOTENCY_HEADER] = record.idempotency_key
    body = params.get("json")
    return OutboundRequest(
        method=method,
        url=url,
        headers=headers,
        json=resolve_secrets(body, env) if body is not None else None,
        timeout_s=float(timeout) if timeout is not None else default_timeout_s,
        display=f"{method} {raw_url}",
        destination=_destination(url),
    )


def _with_labels(request: OutboundRequest, **labels: str) -> OutboundRequest:
    return replace(request, labels={**request.labels, **labels})


def gateway_destination(gateway: GatewaySettings) -> str:
    """The destination of every gateway call (capped by ``gateway_concurrency``)."""
    return _destination(gateway.url.rstrip("/"))


def _destination(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _text(params: Mapping[str, Any], key: str, kind: str, prefix: str = "") -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        found = "nothing" if value is None else repr(value)
        raise InvalidParams(kind, f"{prefix}{key}", f"expected a non-empty string, found {found}")
    return value


def _opt_text(params: Mapping[str, Any], key: str, kind: str, prefix: str = "") -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParams(kind, f"{prefix}{key}", f"expected a string, found {value!r}")
    return value


def _opt_int(params: Mapping[str, Any], key: str, kind: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidParams(kind, key, f"expected an integer >= 0 or null, found {value!r}")
    return value


def _quote(params: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    value = params.get("quote")
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("keyId"), str):
        raise InvalidParams(kind, "quote", "expected an object with keyId, keyRemoteJid, keyFromMe")
    return value
