"""Action records: what the rule stage asks the executor to do (Kafka topic ``codechat.actions``).

The JSON shape is the Kafka contract between the rule stage and the executor (see the README's
topic contract): one record per action, keyed by its idempotency key so all deliveries and
retries of one key land on one partition, where the executor remembers what it has done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from worker.rules.records import ActionRecord as RuleActionRecord
from worker.rules.records import idempotency_key

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


#: The one definition of the key (the rule stage makes it; the executor remembers it).
idempotency_key_for = idempotency_key


@dataclass(frozen=True)
class ActionRecord(RuleActionRecord):
    """One action to perform, as read from the actions topic.

    The fields and the JSON are those of :class:`worker.rules.records.ActionRecord`, which the
    rule stage writes; this subclass adds the checks the executor needs before it trusts a
    record from Kafka.
    """

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
