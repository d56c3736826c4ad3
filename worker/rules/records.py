"""What evaluation returns: action records (contract §4), traces and state changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

Phase = Literal["fire", "resolve"]
Outcome = Literal["matched", "not_matched", "suppressed", "pending", "resolved", "error"]


def rfc3339(moment: datetime) -> str:
    """``2026-11-25T20:41:07.130Z``: UTC, milliseconds, as on the envelope."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def idempotency_key(
    rule_id: str, event_id: str, action_index: int, item: str | None, phase: str
) -> str:
    """``<rule_id>:<event_id>:<action_index>:<item or ->:<phase>`` (contract §4)."""
    return f"{rule_id}:{event_id}:{action_index}:{item if item is not None else '-'}:{phase}"


@dataclass(frozen=True)
class ActionRecord:
    """One action to perform, as written to ``codechat.actions`` (keyed by the idempotency key)."""

    idempotency_key: str
    rule_id: str
    bundle_version: str
    #: the envelope id of the event that caused it (for a timer: the event that started it)
    event_id: str
    action_index: int
    #: the for_each item's identity, or None
    item: str | None
    phase: Phase
    instance: str
    kind: str
    #: rendered parameters, shaped per kind (contract §4); ``${env:NAME}`` left as is
    params: Mapping[str, Any]
    created_at: str

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
            "params": self.params,
            "created_at": self.created_at,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> ActionRecord:
        data = orjson.loads(raw)
        return cls(
            idempotency_key=data["idempotency_key"],
            rule_id=data["rule_id"],
            bundle_version=data["bundle_version"],
            event_id=data["event_id"],
            action_index=int(data["action_index"]),
            item=data.get("item"),
            phase=data.get("phase", "fire"),
            instance=data["instance"],
            kind=data["kind"],
            params=data.get("params", {}),
            created_at=data["created_at"],
        )


@dataclass(frozen=True)
class RuleTrace:
    """What one rule decided for one event (or timer), for explain, logs and metrics."""

    rule_id: str
    outcome: Outcome
    #: suppressed: throttle, window, quiet_hours, inhibited, shadow, pending, firing;
    #: not_matched: guard or condition; resolved: resolved or cancelled; error: the stage
    reason: str | None = None
    #: suppressed/pending until when, if known
    until: datetime | None = None
    #: the condition that failed (not_matched) or the error message (error)
    condition: str | None = None
    #: the values the failed condition saw
    values: Mapping[str, Any] | None = None
    key: str | None = None
    item: str | None = None
    actions: int = 0
    detail: str | None = None
    phase: Phase = "fire"

    def describe(self) -> str:
        """One readable line, e.g. ``suppressed (throttle) until 2026-…``."""
        text = self.outcome.replace("_", " ")
        if self.reason:
            text += f" ({self.reason})"
        if self.item is not None:
            text += f" [item {self.item}]"
        if self.until is not None:
            text += f" until {rfc3339(self.until)}"
        if self.detail:
            text += f": {self.detail}"
        if self.condition:
            text += f": {self.condition}"
        if self.values:
            shown = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
            text += f" — saw {shown}"
        if self.outcome == "matched":
            text += f" → {self.actions} action{'s' if self.actions != 1 else ''}"
        return text


@dataclass
class Evaluation:
    """The result of :func:`evaluate` or :func:`fire_due`."""

    actions: list[ActionRecord] = field(default_factory=list)
    #: state writes; None deletes the key
    changes: dict[str, Any | None] = field(default_factory=dict)
    trace: list[RuleTrace] = field(default_factory=list)
    #: the normalised view of the event (None for fire_due)
    view: Mapping[str, Any] | None = None
