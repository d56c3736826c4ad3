"""Action records: what the rule stage asks the executor to do (Kafka topic ``codechat.actions``).

The JSON shape is the Kafka contract between the rule stage and the executor (see the README's
topic contract): one record per action, keyed by its idempotency key so all deliveries and
retries of one key land on one partition, where the executor remembers what it has done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

#: The action kinds the executor knows how to perform.
ACTION_KINDS: Final[frozenset[str]] = frozenset(
    {
        "whatsapp.send_text",
        "whatsapp.group_participants",
        "notify",
        "http",
        "kafka.produce",
        "log",
    }
)

Phase = Literal["fire", "resolve"]

_REQUIRED_FIELDS: Final = (
    "idempotency_key",
    "rule_id",
    "bundle_version",
    "event_id",
    "action_index",
    "phase",
    "instance",
    "kind",
    "params",
    "created_at",
)


class InvalidActionRecord(ValueError):
    """A message on the actions topic that is not an action record the executor can perform."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid action record: {self.reason}"


def idempotency_key_for(
    rule_id: str, event_id: str, action_index: int, item: str | None, phase: Phase
) -> str:
    """The key under which one action is performed at most once.

    ``<rule_id>:<event_id>:<action_index>:<item or ->:<phase>``: the same rule firing on the same
    event always yields the same key, so a replayed or redelivered event cannot act twice.
    """
    return f"{rule_id}:{event_id}:{action_index}:{item if item is not None else '-'}:{phase}"


@dataclass(frozen=True)
class ActionRecord:
    """One action to perform, as written to the actions topic."""

    #: ``<rule_id>:<event_id>:<action_index>:<item or ->:<phase>``; also the Kafka key.
    idempotency_key: str
    #: Id of the rule that produced the action.
    rule_id: str
    #: Content hash of the rule bundle in force when the rule fired.
    bundle_version: str
    #: Envelope id of the event that made the rule fire.
    event_id: str
    #: Position of the action in the rule's ``actions`` list.
    action_index: int
    #: ``for_each`` item the action was rendered for, or ``None``.
    item: str | None
    #: ``fire`` when the rule fires, ``resolve`` for its recovery action.
    phase: Phase
    #: Gateway instance the triggering event came from.
    instance: str
    #: One of :data:`ACTION_KINDS`.
    kind: str
    #: Rendered parameters of the action; secrets stay as ``${env:NAME}`` references.
    params: Mapping[str, Any] = field(default_factory=dict)
    #: When the rule stage created the record, RFC 3339 UTC with milliseconds.
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "idempotency_key": self.idempotency_key,
            "rule_id": self.rule_id,
            "bundle_version": self.bundle_version,
            "event_id": self.event_id,
            "action_index": self.action_index,
            "item": self.item,
            "phase": self.phase,
            "instance": self.instance,
            "kind": self.kind,
            "params": dict(self.params),
            "created_at": self.created_at,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionRecord:
        """Build a record from its JSON object.

        Raises:
            InvalidActionRecord: a field is missing or has the wrong type, or the kind is unknown.
        """
        missing = [name for name in _REQUIRED_FIELDS if name not in data]
        if missing:
            raise InvalidActionRecord(f"missing field(s) {', '.join(missing)}")
        for name in ("idempotency_key", "rule_id", "bundle_version", "event_id", "instance"):
            if not isinstance(data[name], str):
                raise InvalidActionRecord(f"field {name!r} must be a string")
        if not data["idempotency_key"]:
            raise InvalidActionRecord("field 'idempotency_key' must not be empty")
        if not isinstance(data["action_index"], int) or isinstance(data["action_index"], bool):
            raise InvalidActionRecord("field 'action_index' must be an integer")
        item = data.get("item")
        if item is not None and not isinstance(item, str):
            raise InvalidActionRecord("field 'item' must be a string or null")
        phase = data["phase"]
        if phase not in ("fire", "resolve"):
            raise InvalidActionRecord(f"field 'phase' must be 'fire' or 'resolve', not {phase!r}")
        kind = data["kind"]
        if kind not in ACTION_KINDS:
            known = ", ".join(sorted(ACTION_KINDS))
            raise InvalidActionRecord(f"unknown kind {kind!r} (expected one of {known})")
        if not isinstance(data["params"], Mapping):
            raise InvalidActionRecord("field 'params' must be an object")
        if not isinstance(data["created_at"], str):
            raise InvalidActionRecord("field 'created_at' must be a string")
        return cls(
            idempotency_key=data["idempotency_key"],
            rule_id=data["rule_id"],
            bundle_version=data["bundle_version"],
            event_id=data["event_id"],
            action_index=data["action_index"],
            item=item,
            phase=phase,
            instance=data["instance"],
            kind=kind,
            params=dict(data["params"]),
            created_at=data["created_at"],
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ActionRecord:
        """Parse a record from the bytes of a Kafka value.

        Raises:
            InvalidActionRecord: not JSON, not an object, or not a valid record.
        """
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidActionRecord(f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InvalidActionRecord(f"expected a JSON object, found {type(data).__name__}")
        return cls.from_dict(data)


def rfc3339(moment: datetime) -> str:
    """``2026-11-25T20:41:07.123Z``: UTC, milliseconds, ``Z`` suffix."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def dlq_value(
    record: Mapping[str, Any] | ActionRecord,
    *,
    error: str,
    retriable: bool,
    attempts: int,
    failed_at: datetime,
) -> dict[str, Any]:
    """The ``codechat.dlq`` value for an action that failed for good.

    ``record`` is the record as received; a raw mapping is accepted so that records too broken
    to parse still reach the dead-letter topic as they were.
    """
    body = record.to_dict() if isinstance(record, ActionRecord) else dict(record)
    return {
        "record": body,
        "error": error,
        "retriable": retriable,
        "attempts": attempts,
        "failed_at": rfc3339(failed_at),
    }
