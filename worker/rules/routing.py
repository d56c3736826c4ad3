"""Rules evaluated away from their events' partition: their keys, and evaluating only them.

A stateful rule whose state key is coarser than its event topic's key (a throttle per
instance on ``messages.upsert``, keyed by instance and chat) has its events repartitioned by
that key, so all events of one key meet on one partition (see :mod:`worker.process.keys`).
The stage then needs three things from the engine, all pure like :func:`evaluate`:

- :func:`routes`: for one envelope, the key each such rule's event travels by, leaving out
  the rules that would do nothing with it (so fewer events make the extra hop);
- :func:`evaluate_only`: evaluation restricted to some rules, where the events arrive;
- :func:`without`: the bundle without those rules, for evaluation where the events start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from worker.rules.engine import (
    _FROM_ME,
    _RUNTIME_ERRORS,
    _key,
    _message_guard,
    evaluate,
)
from worker.rules.expressions import Condition, EvaluationError
from worker.rules.model import RuleBundle
from worker.rules.normalise import normalise
from worker.rules.records import Evaluation

#: A repartition key for an event and the rules it is sent on for: ``(key, rule ids)``.
Route = tuple[str, tuple[str, ...]]


def rule_key(parts: tuple[Condition, ...], view: Mapping[str, Any]) -> str:
    """The key ``parts`` give for a normalised event, spelt as in state keys (``a|b``).

    Raises:
        EvaluationError: a part is undefined for this event.
    """
    return _key(parts, view)


def routes(
    bundle: RuleBundle,
    keys: Mapping[str, tuple[Condition, ...]],
    envelope: Mapping[str, Any],
) -> list[Route]:
    """Where the envelope must travel for the rules in ``keys`` (rule id -> key parts).

    Rules listening to the envelope's event are grouped by the key their parts give, in
    rule order. Left out are the rules that would do nothing with the event, exactly as
    :func:`evaluate` decides it: the message guard (echoes, from-me, status broadcasts), and
    a ``when`` that does not hold for rules without ``for`` (a ``for`` rule needs every
    event, to resolve its alert). A rule whose condition or key cannot be evaluated for the
    event is left out too: evaluating it would yield an error trace and nothing else.

    Raises:
        UnknownEvent: when the envelope's event is not a streamed event.
    """
    view = normalise(envelope)
    rules = [rule for rule in bundle.by_event.get(view["event"], ()) if rule.id in keys]
    if not rules:
        return []
    guard = _message_guard(view)
    grouped: dict[str, list[str]] = {}
    for rule in rules:
        if guard is not None and (guard is not _FROM_ME or not rule.allow_from_me):
            continue
        try:
            if rule.for_s is None and rule.when is not None and rule.when.test(view) is not None:
                continue
            key = rule_key(keys[rule.id], view)
        except (EvaluationError, *_RUNTIME_ERRORS):
            continue
        grouped.setdefault(key, []).append(rule.id)
    return [(key, tuple(ids)) for key, ids in grouped.items()]


def without(bundle: RuleBundle, rule_ids: Collection[str]) -> RuleBundle:
    """The bundle with ``rule_ids`` evaluated for no event (the bundle itself when none).

    ``by_id`` keeps every rule: :func:`fire_due` still fires their deadlines and expires
    their state, and the version on action records stays the bundle's.
    """
    if not rule_ids:
        return bundle
    by_event = {
        event: tuple(rule for rule in rules if rule.id not in rule_ids)
        for event, rules in bundle.by_event.items()
    }
    return dataclasses.replace(bundle, by_event=by_event)


def evaluate_only(
    bundle: RuleBundle,
    rule_ids: Collection[str],
    state: Mapping[str, Any],
    envelope: Mapping[str, Any],
    now: datetime,
) -> Evaluation:
    """:func:`evaluate` with only the rules ``rule_ids`` (in bundle order) considered.

    Ids of rules that do not listen to the envelope's event (or are gone) are ignored.

    Raises:
        UnknownEvent: when one of the rules listens and the event is not a streamed event.
    """
    event = envelope.get("event")
    if not isinstance(event, str):
        return evaluate(bundle, state, envelope, now)  # raises UnknownEvent
    only = tuple(rule for rule in bundle.by_event.get(event, ()) if rule.id in rule_ids)
    if not only:
        return Evaluation()
    return evaluate(dataclasses.replace(bundle, by_event={event: only}), state, envelope, now)
