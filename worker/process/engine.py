"""What the processing stage needs from the rules engine (contracts §3 and §4).

The stage is written against this protocol rather than the engine's module so that its
unit tests can drive it with a small stand-in, and so that what it relies on is written down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast

import yaml

from worker.process.keys import key_space_problems, repartition_keys
from worker.rules import (
    Diagnostic,
    Rule,
    RuleBundle,
    RuleLoadError,
    evaluate,
    fire_due,
    load_bundle,
)
from worker.rules.expressions import Condition
from worker.rules.loader import rule_files
from worker.rules.routing import Route, evaluate_only, routes, without


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
    ) -> EvaluationLike:
        """Evaluate the envelope with the rules that are not rekeyed."""
        ...

    def route(self, bundle: BundleLike, envelope: Mapping[str, Any]) -> Sequence[Route]:
        """(key, rule ids): where the envelope goes on for the rekeyed rules that want it."""
        ...

    def evaluate_rekeyed(
        self,
        bundle: BundleLike,
        rule_ids: Collection[str],
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike:
        """Evaluate a repartitioned envelope with those of ``rule_ids`` still rekeyed."""
        ...

    def fire_due(
        self, bundle: BundleLike, state: Mapping[str, Any], now: datetime
    ) -> EvaluationLike: ...


@dataclass(frozen=True)
class SplitBundle:
    """A loaded bundle with its rules split by where they are evaluated."""

    #: Every rule: deadlines, expiry and the version on action records.
    whole: RuleBundle
    #: The bundle without its rekeyed rules: what the event topics' agent evaluates.
    local: RuleBundle
    #: Rekeyed rule id -> the key parts its events are repartitioned by.
    rekeyed: Mapping[str, tuple[Condition, ...]]

    @property
    def version(self) -> str:
        return self.whole.version

    @property
    def events(self) -> frozenset[str]:
        return self.whole.events

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.whole.rules


def split_bundle(bundle: RuleBundle) -> SplitBundle:
    """Split off the rules whose state is keyed more coarsely than their events."""
    rekeyed = repartition_keys(bundle.rules)
    return SplitBundle(bundle, without(bundle, rekeyed), rekeyed)


class BundleEngine:
    """The real engine, :mod:`worker.rules`, behind :class:`RulesEngine`.

    Loading splits off the rules whose events must be repartitioned and refuses inhibition
    between rules whose state lives apart (:mod:`worker.process.keys`), reported like any
    other rule error, and records a digest of each rule's YAML so that a reload keeps the
    state of the rules it did not change.
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
        return split_bundle(bundle)

    def rule_digests(self, bundle: BundleLike) -> Mapping[str, str]:
        return self._digests.get(bundle.version, {})

    def timer_rules(self, bundle: BundleLike) -> frozenset[str]:
        rules = cast(SplitBundle, bundle).rules
        return frozenset(rule.id for rule in rules if rule.for_s is not None)

    def evaluate(
        self,
        bundle: BundleLike,
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike:
        return evaluate(cast(SplitBundle, bundle).local, state, envelope, now)

    def route(self, bundle: BundleLike, envelope: Mapping[str, Any]) -> Sequence[Route]:
        split = cast(SplitBundle, bundle)
        if not split.rekeyed:
            return ()
        return routes(split.whole, split.rekeyed, envelope)

    def evaluate_rekeyed(
        self,
        bundle: BundleLike,
        rule_ids: Collection[str],
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike:
        # A rule no longer rekeyed since a reload is evaluated on its events' partition
        # now; a record sent before the reload must not write its state here as well.
        split = cast(SplitBundle, bundle)
        ids = [rule_id for rule_id in rule_ids if rule_id in split.rekeyed]
        return evaluate_only(split.whole, ids, state, envelope, now)

    def fire_due(
        self, bundle: BundleLike, state: Mapping[str, Any], now: datetime
    ) -> EvaluationLike:
        return fire_due(cast(SplitBundle, bundle).whole, state, now)


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
