"""What the processing stage needs from the rules engine (contracts §3 and §4).

The stage is written against this protocol rather than the engine's module so that its
unit tests can drive it with a small stand-in, and so that what it relies on is written down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

import yaml

from worker.process.keys import key_space_problems
from worker.rules import Diagnostic, RuleBundle, RuleLoadError, evaluate, fire_due, load_bundle
from worker.rules.loader import rule_files


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

    def timer_rules(self, bundle: BundleLike) -> frozenset[str]:
        """Ids of the rules whose state holds deadlines that ``fire_due`` must see."""
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
    """The real engine, :mod:`worker.rules`, behind :class:`RulesEngine`.

    Loading also refuses bundles whose state would not follow the topic keys
    (:mod:`worker.process.keys`), reported like any other rule error, and records a digest of
    each rule's YAML so that a reload keeps the state of the rules it did not change.
    """

    load_error: type[Exception] = RuleLoadError

    def __init__(self) -> None:
        self._digests: dict[str, dict[str, str]] = {}

    def load(self, directory: Path) -> BundleLike:
        bundle = load_bundle(directory)
        problems = [
            Diagnostic(rule.file, rule.line, 1, rule.id, message)
            for rule, message in key_space_problems(bundle.rules)
        ]
        if problems:
            raise RuleLoadError(problems)
        self._digests = {bundle.version: rule_digests(directory)}
        return bundle

    def rule_digests(self, bundle: BundleLike) -> Mapping[str, str]:
        return self._digests.get(bundle.version, {})

    def timer_rules(self, bundle: BundleLike) -> frozenset[str]:
        rules = cast(RuleBundle, bundle).rules
        return frozenset(rule.id for rule in rules if rule.for_s is not None)

    def evaluate(
        self,
        bundle: BundleLike,
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike:
        return evaluate(cast(RuleBundle, bundle), state, envelope, now)

    def fire_due(
        self, bundle: BundleLike, state: Mapping[str, Any], now: datetime
    ) -> EvaluationLike:
        return fire_due(cast(RuleBundle, bundle), state, now)


def rule_digests(directory: Path) -> dict[str, str]:
    """Rule id -> digest of the rule's YAML together with the shared parts of every file.

    Conservative: a change to ``vars``, ``channels`` or time intervals (which any rule may
    use) makes every rule count as changed. Files that do not parse give no digests (the
    loader has accepted them, so this only happens when a file changes during the reload;
    the next check loads again).
    """
    shared: list[Any] = []
    rules: list[Mapping[str, Any]] = []
    for path in rule_files(directory):
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return {}
        if not isinstance(document, dict):
            continue
        shared.append({k: v for k, v in document.items() if k not in ("rules", "version")})
        rules.extend(r for r in document.get("rules") or () if isinstance(r, dict))
    common = _canonical(shared)
    return {
        str(rule.get("id")): hashlib.sha256(common + b"\0" + _canonical(rule)).hexdigest()
        for rule in rules
    }


def _canonical(value: Any) -> bytes:
    return json.dumps(_string_keys(value), sort_keys=True, default=str).encode()


def _string_keys(value: Any) -> Any:
    """YAML 1.1 reads the key ``on`` as ``True``; JSON needs text keys to sort."""
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value
