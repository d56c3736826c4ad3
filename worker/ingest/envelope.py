"""The Kafka value ingest writes: the envelope around a raw gateway frame.

Contract (contracts §1)::

    {"id", "instance", "event", "received_at", "source": {"gateway", "connection", "seq"},
     "data": <raw payload, untouched>}

"Untouched" is meant literally: the frame is checked to be JSON and then its bytes are
spliced into the envelope, never re-serialised, so number formats, key order and unicode
escapes reach Kafka as the gateway sent them (and it costs one parse, no dump).

Frames that are binary, not JSON, or over the size limit become an invalid record for
``<prefix>invalid`` with the reason and the raw bytes in base64.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson

from worker.events import event_topic, invalid_topic
from worker.ingest.keys import partition_key

CONTENT_TYPE: Final = b"application/json"


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One message for the producer (and the spool)."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    #: The envelope id, kept outside the value so logs and duplicate checks need no parse.
    id: str


@dataclass(frozen=True, slots=True)
class FrameSource:
    """Where a frame came from: the connection it arrived on and its place there."""

    connection: str
    seq: int


class Subscriber:
    """The fixed parts of every envelope of one (instance, event) subscription.

    Built once per subscription so the per-frame work is a few byte joins.
    """

    __slots__ = (
        "event",
        "event_topic",
        "gateway",
        "headers",
        "instance",
        "invalid_topic",
        "prefix_fields",
    )

    def __init__(self, instance: str, event: str, gateway: str, topic_prefix: str) -> None:
        self.instance = instance
        self.event = event
        self.gateway = gateway
        self.event_topic = event_topic(event, topic_prefix)
        self.invalid_topic = invalid_topic(topic_prefix)
        self.headers: tuple[tuple[str, bytes], ...] = (
            ("event", event.encode()),
            ("instance", instance.encode()),
            ("content-type", CONTENT_TYPE),
        )
        self.prefix_fields = (
            b',"instance":' + orjson.dumps(instance) + b',"event":' + orjson.dumps(event)
        )


_last_second: list[Any] = [None, ""]


def format_received_at(epoch_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-25T20:41:07.123Z``."""
    seconds, millis = divmod(epoch_ms, 1000)
    # Thousands of frames share a second: format its date and time once.
    if _last_second[0] != seconds:
        _last_second[0] = seconds
        _last_second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{_last_second[1]}.{millis:03d}Z"


def parse_json(raw: bytes) -> Any:
    """Parse a frame; raises ``ValueError`` with a short reason when it is not JSON.

    orjson refuses integers beyond 64 bits, which JSON allows; those rare frames are
    parsed by the standard library instead (still refusing NaN and Infinity).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        first_error = str(exc)
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(first_error) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _source_json(gateway: str, source: FrameSource) -> bytes:
    return orjson.dumps({"gateway": gateway, "connection": source.connection, "seq": source.seq})


def frame_to_record(
    subscriber: Subscriber,
    frame: str | bytes,
    *,
    source: FrameSource,
    envelope_id: str,
    received_at_ms: int,
    max_frame_bytes: int,
) -> KafkaRecord:
    """Turn one received WebSocket message into the record to produce.

    Args:
        subscriber: the subscription the frame arrived on.
        frame: ``str`` for a text frame, ``bytes`` for a binary one.
        source: connection id and per-connection sequence number.
        envelope_id: a fresh time-ordered id.
        received_at_ms: receive time, milliseconds since the epoch.
        max_frame_bytes: larger frames are invalid.

    Returns:
        A record for the event topic, or for the invalid topic if the frame is unusable.
    """
    if not isinstance(frame, str):
        return invalid_record(
            subscriber,
            bytes(frame),
            "binary frame",
            source=source,
            envelope_id=envelope_id,
            received_at_ms=received_at_ms,
            max_frame_bytes=max_frame_bytes,
        )
    raw = frame.encode("utf-8", "surrogatepass")
    if len(raw) > max_frame_bytes:
        return invalid_record(
            subscriber,
            raw,
            f"frame of {len(raw)} bytes is over the limit of {max_frame_bytes} bytes",
            source=source,
            envelope_id=envelope_id,
            received_at_ms=received_at_ms,
            max_frame_bytes=max_frame_bytes,
        )
    try:
        data = parse_json(raw)
    except ValueError as exc:
        return invalid_record(
            subscriber,
            raw,
            f"not valid JSON: {exc}",
            source=source,
            envelope_id=envelope_id,
            received_at_ms=received_at_ms,
            max_frame_bytes=max_frame_bytes,
        )
    value = b"".join(
        (
            b'{"id":"',
            envelope_id.encode(),
            b'"',
            subscriber.prefix_fields,
            b',"received_at":"',
            format_received_at(received_at_ms).encode(),
            b'","source":',
            _source_json(subscriber.gateway, source),
            b',"data":',
            raw.strip(),
            b"}",
        )
    )
    key = partition_key(subscriber.instance, subscriber.event, data)
    return KafkaRecord(
        topic=subscriber.event_topic,
        key=key.encode(),
        value=value,
        headers=subscriber.headers,
        id=envelope_id,
    )


def invalid_record(
    subscriber: Subscriber,
    raw: bytes,
    reason: str,
    *,
    source: FrameSource,
    envelope_id: str,
    received_at_ms: int,
    max_frame_bytes: int,
) -> KafkaRecord:
    """The record for ``<prefix>invalid``: reason plus the raw bytes in base64.

    The raw bytes are cut at ``max_frame_bytes`` (``truncated: true``, ``raw_size`` says
    how many there were) so the record itself stays under Kafka's message size limit.
    """
    kept = raw[:max_frame_bytes]
    body: dict[str, Any] = {
        "id": envelope_id,
        "instance": subscriber.instance,
        "event": subscriber.event,
        "received_at": format_received_at(received_at_ms),
        "source": {
            "gateway": subscriber.gateway,
            "connection": source.connection,
            "seq": source.seq,
        },
        "reason": reason,
        "raw_base64": base64.b64encode(kept).decode("ascii"),
        "raw_size": len(raw),
    }
    if len(kept) < len(raw):
        body["truncated"] = True
    return KafkaRecord(
        topic=subscriber.invalid_topic,
        key=subscriber.instance.encode(),
        value=orjson.dumps(body),
        headers=subscriber.headers,
        id=envelope_id,
    )
