"""``zapflow tail``: follow the event topics (and actions, DLQ, invalid) and print each record."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from worker.console.summary import summarize_action, summarize_envelope
from worker.events import (
    DEFAULT_TOPIC_PREFIX,
    STREAMED_EVENTS,
    actions_topic,
    dlq_topic,
    event_topic,
    invalid_topic,
)
from worker.kafka_security import client_settings
from worker.stopping import stop_consumer

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class TailError(ValueError):
    """Bad ``tail`` arguments."""


def parse_since(text: str, now: datetime) -> datetime:
    """``10m`` / ``2h`` / ``1d`` before ``now``, or an ISO 8601 time (UTC if no zone given)."""
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise TailError(
            f"--since {text!r} is neither a duration like 10m, 2h, 1d nor an ISO 8601 time "
            "like 2026-11-25T20:00:00Z"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def topics_for(names: Sequence[str], prefix: str) -> list[str]:
    """Topic names for the given event names, or ``actions`` / ``dlq`` / ``invalid``."""
    special = {"actions": actions_topic, "dlq": dlq_topic, "invalid": invalid_topic}
    topics = []
    for name in names or STREAMED_EVENTS:
        if name in special:
            topics.append(special[name](prefix))
        elif name in STREAMED_EVENTS:
            topics.append(event_topic(name, prefix))
        else:
            valid = ", ".join([*STREAMED_EVENTS, *special])
            raise TailError(f"unknown event {name!r}; choose from: {valid}")
    return topics


def render(topic: str, value: bytes, raw_json: bool, prefix: str) -> str:
    if raw_json:
        return value.decode("utf-8", errors="replace")
    try:
        data: Any = json.loads(value)
    except ValueError:
        return f"{topic}: <not JSON, {len(value)} bytes>"
    if not isinstance(data, dict):
        return f"{topic}: {value[:200]!r}"
    if topic == actions_topic(prefix):
        return summarize_action(data)
    if topic == dlq_topic(prefix):
        record = data.get("record") or {}
        return f"DLQ {summarize_action(record)}  ✗ {data.get('error')} (attempts {data.get('attempts')})"
    if topic == invalid_topic(prefix):
        return f"INVALID {data.get('instance')} {data.get('event')}: {data.get('reason')}"
    return summarize_envelope(data)


async def topic_partitions(
    bootstrap: str, topics: list[str], client: Mapping[str, Any] | None = None
) -> list[Any]:
    """The partitions of those ``topics`` that exist (``client``: security settings)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **dict(client or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]


async def tail(
    bootstrap: str,
    topics: list[str],
    prefix: str,
    *,
    since: datetime | None = None,
    raw_json: bool = False,
    limit: int | None = None,
    out: TextIO = sys.stdout,
    client: Mapping[str, Any] | None = None,
) -> int:
    """Print records of ``topics`` as they arrive, from ``since`` or from now. Returns the count.

    ``client`` holds more keyword arguments of the Kafka clients (``kafka.security``).
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        **dict(client or {}),
    )
    await consumer.start()
    printed = 0
    try:
        partitions = await topic_partitions(bootstrap, topics, client)
        if not partitions:
            raise TailError(
                f"none of the topics exist on {bootstrap}: {', '.join(topics)}; is --prefix right?"
            )
        consumer.assign(partitions)
        if since is not None:
            stamps = {tp: int(since.timestamp() * 1000) for tp in partitions}
            offsets = await consumer.offsets_for_times(stamps)
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                found = offsets.get(tp)
                consumer.seek(tp, found.offset if found else ends[tp])
        else:
            await consumer.seek_to_end(*partitions)
        while limit is None or printed < limit:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.value is None:
                        continue
                    print(render(tp.topic, record.value, raw_json, prefix), file=out, flush=True)
                    printed += 1
    finally:
        await stop_consumer(consumer)
    return printed


def run(args: Any) -> int:
    from worker.cli import CommandError
    from worker.devkafka.jars import default_bootstrap

    bootstrap, prefix, client = args.bootstrap, args.prefix, {}
    if args.config is not None:
        kafka = _kafka_of(args.config)
        bootstrap = bootstrap or kafka.bootstrap_servers
        prefix = prefix or kafka.topic_prefix
        client = client_settings(kafka.security)
    prefix = prefix or DEFAULT_TOPIC_PREFIX
    try:
        topics = topics_for(args.events, prefix)
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except TailError as exc:
        raise CommandError(str(exc)) from exc
    bootstrap = bootstrap or default_bootstrap()
    try:
        asyncio.run(
            tail(
                bootstrap,
                topics,
                prefix,
                since=since,
                raw_json=args.json,
                limit=args.limit,
                client=client,
            )
        )
    except KeyboardInterrupt:
        return 0
    except TailError as exc:
        raise CommandError(str(exc)) from exc
    return 0


def _kafka_of(path: Any) -> Any:
    """The ``kafka`` section of a zapflow config file (bootstrap, prefix, security)."""
    from worker.cli import CommandError
    from worker.config import ConfigError, load_document
    from worker.ingest.config import kafka_config

    try:
        return kafka_config(load_document(path))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
