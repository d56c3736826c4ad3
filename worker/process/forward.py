"""Events sent on to the stage's repartition topic, for the rules keyed by something else.

A rekeyed rule (see :mod:`worker.process.keys`) is evaluated on the partition of the
``<app id>-rekeyed`` topic its key hashes to, not where its events arrive. The agent on the
event topics therefore produces one :class:`Forward` per repartition key an envelope needs:
keyed by that key, so that every event of one key lands on one partition, and carrying the
rule ids to evaluate and the envelope exactly as it was read (its bytes are embedded, not
parsed and written again):

``{"rules": ["per-instance-alert"], "envelope": {...the envelope...}}``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


def rekeyed_topic_name(app_id: str) -> str:
    """The stage's repartition topic, one partition per state partition."""
    return f"{app_id}-rekeyed"


@dataclass(frozen=True)
class Forward:
    """An envelope on its way to the rekeyed rules ``rule_ids``, keyed by their ``key``."""

    #: The rules' key for this event (``shop-bot``, ``shop-bot|5511…``): the Kafka key.
    key: str
    rule_ids: tuple[str, ...]
    #: The envelope id, for log lines.
    event_id: str
    #: The envelope as read from its event topic (valid JSON).
    envelope: bytes

    def to_json(self) -> bytes:
        return b'{"rules":' + orjson.dumps(self.rule_ids) + b',"envelope":' + self.envelope + b"}"

    def __str__(self) -> str:
        return f"forward of event {self.event_id} by key {self.key!r}"


def read_forward(raw: bytes) -> tuple[tuple[str, ...], Mapping[str, Any]]:
    """The rule ids and the envelope of a record of the repartition topic.

    Raises:
        ValueError: not a forward record (orjson.JSONDecodeError is one).
    """
    record = orjson.loads(raw)
    if not isinstance(record, dict):
        raise ValueError(f"a forward record is a JSON object, found {type(record).__name__}")
    rules, envelope = record.get("rules"), record.get("envelope")
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise ValueError("a forward record's 'rules' is a list of rule ids")
    if not isinstance(envelope, dict):
        raise ValueError("a forward record's 'envelope' is a JSON object")
    return tuple(rules), envelope
