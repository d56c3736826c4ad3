"""What the processing stage needs from the rules engine (contracts §3 and §4).

The stage is written against this protocol rather than the engine's module so that its
unit tests can drive it with a small stand-in, and so that what it relies on is written down.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


class ActionRecordLike(Protocol):
    """An action record (contracts §4)."""

    @property
    def idempotency_key(self) -> str: ...

    def to_json(self) -> bytes: ...


class EvaluationLike(Protocol):
    """What ``evaluate`` and ``fire_due`` return."""

    @property
    def actions(self) -> Sequence[ActionRecordLike]: ...

    @property
    def changes(self) -> Mapping[str, Any]: ...


class BundleLike(Protocol):
    """A loaded, validated rule bundle."""

    @property
    def version(self) -> str: ...

    @property
    def events(self) -> frozenset[str]: ...


class RulesEngine(Protocol):
    """The pure rules engine: load a directory, evaluate events, fire due timers."""

    def load(self, directory: Path) -> BundleLike:
        """Load and validate a whole directory; raises :attr:`load_error` on any problem."""
        ...

    @property
    def load_error(self) -> type[Exception]: ...

    def rule_digests(self, bundle: BundleLike) -> Mapping[str, str]:
        """Rule id -> a digest of its definition, to tell changed rules from unchanged ones."""
        ...

    def evaluate(
        self,
        bundle: BundleLike,
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike: ...

    def fire_due(
        self, bundle: BundleLike, state: Mapping[str, Any], now: datetime
    ) -> EvaluationLike: ...


class BundleEngine:
    """The real engine, :mod:`worker.rules`, behind :class:`RulesEngine`."""

    def __init__(self) -> None:
        rules = importlib.import_module("worker.rules")
        self._load = rules.load_bundle
        self._evaluate = rules.evaluate
        self._fire_due = rules.fire_due
        self._load_error: type[Exception] = rules.RuleLoadError

    @property
    def load_error(self) -> type[Exception]:
        return self._load_error

    def load(self, directory: Path) -> BundleLike:
        bundle: BundleLike = self._load(directory)
        return bundle

    def rule_digests(self, bundle: BundleLike) -> Mapping[str, str]:
        return rule_digests(bundle)

    def evaluate(
        self,
        bundle: BundleLike,
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike:
        evaluation: EvaluationLike = self._evaluate(bundle, state, envelope, now)
        return evaluation

    def fire_due(
        self, bundle: BundleLike, state: Mapping[str, Any], now: datetime
    ) -> EvaluationLike:
        evaluation: EvaluationLike = self._fire_due(bundle, state, now)
        return evaluation


def rule_digests(bundle: Any) -> dict[str, str]:
    """Rule id -> digest of the rule's definition as the bundle holds it."""
    digests: dict[str, str] = {}
    for rule in getattr(bundle, "rules", ()):
        source = getattr(rule, "source", None) or getattr(rule, "raw", None) or repr(rule)
        digests[str(rule.id)] = hashlib.sha256(repr(source).encode()).hexdigest()
    return digests
