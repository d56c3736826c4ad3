"""What evaluation returns: action records (contract §4), traces and state changes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

Phase = Literal["fire", "resolve"]
Outcome = Literal["matched", "not_matched", "suppressed", "pending", "resolved", "error"]


def rfc3339(moment: datetime) -> str:
    """``2026-11-25T20:41:07.130Z``: UTC, milliseconds, as on the envelope."""
    # isoformat ends in "+00:00" for UTC; it takes half the time strftime did.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


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


class RuleTrace:
    """What one rule decided for one event (or timer), for explain, logs and metrics.

    A plain class with slots rather than a frozen dataclass: the engine makes one per rule
    per event, tens of thousands a second, and the values a failed condition saw are only
    worked out when someone reads :attr:`values`.
    """

    __slots__ = (
        "_seen",
        "_values",
        "actions",
        "condition",
        "detail",
        "item",
        "key",
        "outcome",
        "phase",
        "reason",
        "rule_id",
        "until",
    )

    def __init__(  # noqa: PLR0917 - positional in the hot path, keywords elsewhere
        self,
        rule_id: str,
        outcome: Outcome,
        reason: str | None = None,
        until: datetime | None = None,
        condition: str | None = None,
        values: Mapping[str, Any] | None = None,
        key: str | None = None,
        item: str | None = None,
        actions: int = 0,
        detail: str | None = None,
        phase: Phase = "fire",
        seen: tuple[Any, Mapping[str, Any]] | None = None,
    ) -> None:
        self.rule_id = rule_id
        #: matched, not_matched, suppressed, pending, resolved or error
        self.outcome = outcome
        #: suppressed: throttle, window, quiet_hours, inhibited, shadow, pending, firing;
        #: not_matched: guard, condition or for_each; resolved: resolved or cancelled
        self.reason = reason
        #: suppressed/pending until when, if known
        self.until = until
        #: the condition that failed (not_matched) or the error message (error)
        self.condition = condition
        self._values = values
        self._seen = seen
        self.key = key
        self.item = item
        self.actions = actions
        self.detail = detail
        self.phase: Phase = phase

    @property
    def values(self) -> Mapping[str, Any] | None:
        """The values the failed condition saw (computed on first use)."""
        if self._values is None and self._seen is not None:
            node, view = self._seen
            self._values = node.seen(view)
            self._seen = None
        return self._values

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "until": rfc3339(self.until) if self.until else None,
            "condition": self.condition,
            "values": self.values,
            "key": self.key,
            "item": self.item,
            "actions": self.actions,
            "detail": self.detail,
            "phase": self.phase,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleTrace) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RuleTrace({self.rule_id!r}, {self.describe()!r})"

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
        values = self.values
        if values:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            text += f" — saw {shown}"
        if self.outcome == "matched":
            text += f" → {self.actions} action{'s' if self.actions != 1 else ''}"
        return text


class Evaluation:
    """The result of :func:`evaluate` or :func:`fire_due`."""

    __slots__ = ("_trace", "actions", "changes", "view")

    def __init__(
        self,
        actions: list[ActionRecord] | None = None,
        changes: dict[str, Any | None] | None = None,
        trace: list[RuleTrace] | None = None,
        view: Mapping[str, Any] | None = None,
    ) -> None:
        #: action records of active rules, in rule order
        self.actions: list[ActionRecord] = actions if actions is not None else []
        #: state writes; None deletes the key
        self.changes: dict[str, Any | None] = changes if changes is not None else {}
        #: the normalised view of the event (None for fire_due)
        self.view = view
        # Traces, some still as compact tuples for the common "not matched" case: built
        # into RuleTrace objects only when read, since most evaluations are never explained.
        # (rule id, guard); (rule id, failed check, view); (rule id, condition, view, 0):
        # a condition known to fail, its failed check found when read.
        self._trace: list[Any] = list(trace) if trace is not None else []

    @property
    def trace(self) -> list[RuleTrace]:
        """One entry per rule considered (per item for ``for_each``), in rule order."""
        entries = self._trace
        for index, entry in enumerate(entries):
            if type(entry) is tuple:
                if len(entry) >= 3:
                    rule_id, failed, view = entry[:3]
                    if len(entry) == 4:
                        # A failing condition whose failed check is found now (prefilter).
                        failed = failed.test(view) or failed
                    entries[index] = RuleTrace(
                        rule_id,
                        "not_matched",
                        "condition",
                        None,
                        failed.source,
                        seen=(failed, view),
                    )
                else:
                    rule_id, guard = entry
                    entries[index] = RuleTrace(rule_id, "not_matched", "guard", None, guard)
        return entries

    def outcomes(self) -> Iterator[tuple[str, str, str | None]]:
        """``(rule_id, outcome, reason)`` per trace entry, without building the entries.

        For per-rule metrics on every event, where the full trace is not needed.
        """
        for entry in self._trace:
            if type(entry) is tuple:
                yield entry[0], "not_matched", "guard" if len(entry) == 2 else "condition"
            else:
                yield entry.rule_id, entry.outcome, entry.reason

    def __repr__(self) -> str:
        return (
            f"Evaluation(actions={self.actions!r}, changes={self.changes!r}, trace={self.trace!r})"
        )
