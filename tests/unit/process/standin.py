"""A tiny stand-in for the rules engine (contracts §3/§4), for the process stage's unit tests.

Rules are dicts: ``{"id", "on", "throttle_s" (optional), "for_s" (optional), "rekeyed"
(optional)}``. A rule with ``for_s`` keeps a pending deadline under ``"<id>|<instance>"`` and
fires it from ``fire_due``. A ``rekeyed`` rule is not evaluated by ``evaluate`` but routed by
the envelope's instance and evaluated by ``evaluate_rekeyed``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Record:
    idempotency_key: str
    rule_id: str
    bundle_version: str
    event_id: str
    kind: str = "log"

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()


@dataclass(frozen=True)
class Evaluation:
    actions: list[Record] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bundle:
    version: str
    rules: tuple[Mapping[str, Any], ...]

    @property
    def events(self) -> frozenset[str]:
        return frozenset(rule["on"] for rule in self.rules)


class StandInLoadError(Exception):
    pass


class StandInEngine:
    """Loads ``rules.json`` from a directory; evaluates the stand-in rules."""

    load_error = StandInLoadError

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on  # an event id whose evaluation raises

    def load(self, directory: Path) -> Bundle:
        path = directory / "rules.yaml"
        try:
            rules = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StandInLoadError(f"{path}:1:1: cannot load: {type(exc).__name__}") from None
        version = str(abs(hash(path.read_text())))
        return Bundle(version, tuple(rules))

    def rule_digests(self, bundle: Bundle) -> dict[str, str]:
        return {rule["id"]: json.dumps(rule, sort_keys=True) for rule in bundle.rules}

    def timer_rules(self, bundle: Bundle) -> frozenset[str]:
        return frozenset(rule["id"] for rule in bundle.rules if "for_s" in rule)

    def evaluate(
        self, bundle: Bundle, state: Mapping[str, Any], envelope: Mapping[str, Any], now: datetime
    ) -> Evaluation:
        local = [rule for rule in bundle.rules if not rule.get("rekeyed")]
        return self._evaluate(bundle.version, local, state, envelope, now)

    def route(
        self, bundle: Bundle, envelope: Mapping[str, Any]
    ) -> list[tuple[str, tuple[str, ...]]]:
        ids = tuple(
            rule["id"]
            for rule in bundle.rules
            if rule.get("rekeyed") and rule["on"] == envelope["event"]
        )
        return [(envelope["instance"], ids)] if ids else []

    def evaluate_rekeyed(
        self,
        bundle: Bundle,
        rule_ids: Collection[str],
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> Evaluation:
        only = [rule for rule in bundle.rules if rule.get("rekeyed") and rule["id"] in rule_ids]
        return self._evaluate(bundle.version, only, state, envelope, now)

    def _evaluate(
        self,
        version: str,
        rules: list[Mapping[str, Any]],
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> Evaluation:
        if envelope["id"] == self.fail_on:
            raise RuntimeError("boom")
        evaluation = Evaluation()
        for rule in rules:
            if rule["on"] != envelope["event"]:
                continue
            key = f"{rule['id']}|{envelope['instance']}"
            if "for_s" in rule:
                evaluation.changes[key] = {
                    "due": now.timestamp() + rule["for_s"],
                    "event": envelope["id"],
                }
                continue
            last = state.get(key)
            if (
                "throttle_s" in rule
                and last is not None
                and now.timestamp() - last < rule["throttle_s"]
            ):
                continue
            evaluation.changes[key] = now.timestamp()
            evaluation.actions.append(_record(rule["id"], version, envelope["id"], "fire"))
        return evaluation

    def fire_due(self, bundle: Bundle, state: Mapping[str, Any], now: datetime) -> Evaluation:
        evaluation = Evaluation()
        for key, value in state.items():
            if isinstance(value, dict) and value["due"] <= now.timestamp():
                rule_id = key.split("|", 1)[0]
                evaluation.actions.append(_record(rule_id, bundle.version, value["event"], "fire"))
                evaluation.changes[key] = None
        return evaluation


def _record(rule_id: str, version: str, event_id: str, phase: str) -> Record:
    return Record(f"{rule_id}:{event_id}:0:-:{phase}", rule_id, version, event_id)


def write_rules(directory: Path, *rules: Mapping[str, Any]) -> None:
    (directory / "rules.yaml").write_text(json.dumps(list(rules)))


def envelope(
    event: str = "messages.upsert",
    data: Any = None,
    *,
    id: str = "01JEVENT000000000000000001",
    instance: str = "shop-bot",
) -> dict[str, Any]:
    return {
        "id": id,
        "instance": instance,
        "event": event,
        "received_at": "2026-11-25T20:41:07.123Z",
        "source": {"gateway": "localhost:8084", "connection": "c1", "seq": 1},
        "data": data if data is not None else {},
    }
