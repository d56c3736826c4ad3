"""Which rules keep their state where their events arrive, and which need a repartition.

Every event topic is keyed by what its events are about (contracts §1): ``instance:chat`` for
messages, chats, sends and presence, ``instance:group`` for group events, ``instance`` for the
rest. All events of one chat (group, instance) are therefore on one partition, and so is any
state keyed by that chat plus anything finer (``[instance, msg.chat, msg.sender]``): the
state table is co-partitioned with the topics and every read and write of a key happens on
the partition that holds it. The engine's default keys are exactly these.

A rule that keys state more coarsely than its topic (a throttle per instance on
``messages.upsert``) would see its state split over partitions if it were evaluated where its
events arrive: each partition would throttle on its own. Such a rule is *rekeyed*: the agent
on the event topics does not evaluate it, but sends each of its events on to the stage's
repartition topic, keyed by :func:`repartition_keys`' parts (those every state key of the
rule contains), so that all events of one key meet on one partition of that topic, where a
second agent evaluates the rule with the same state table. It costs one more topic hop for
each event that reaches a rekeyed rule.

Inhibition reads the inhibiting rule's state while evaluating the muted rule, so both must
live in the same key space: it is refused between rules on events keyed differently, and for
rekeyed rules (their state is not on their events' partition).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: For each event, the rule fields that make up its topic key.
_CHAT_FIELD = {
    "messages.upsert": "msg.chat",
    "messages.update": "msg.chat",
    "send.message": "msg.chat",
    "chats.upsert": "chat.id",
    "chats.update": "chat.id",
    "presence.update": "presence.chat",
}
_GROUP_EVENTS = frozenset({"groups.upsert", "groups.update", "group-participants.update"})


def topic_key_fields(event: str) -> frozenset[str]:
    """The normalised fields a state key must contain to live on its event's partition."""
    if event in _CHAT_FIELD:
        return frozenset({"instance", _CHAT_FIELD[event]})
    if event in _GROUP_EVENTS:
        return frozenset({"instance", "group.id"})
    return frozenset({"instance"})


def repartition_keys(rules: Iterable[Any]) -> dict[str, tuple[Any, ...]]:
    """Rule id -> the key parts its events are repartitioned by, for each rekeyed rule.

    A rule is rekeyed when one of its state keys (throttle, window, ``for``) lacks a field of
    one of its events' topic keys; all its events then travel, so its state stays in one
    place. They travel by the parts that every one of its state keys contains: events with
    equal values of those parts carry all the state any one of them can touch. Parts that
    read the ``for_each`` item are left out (the item is not known before evaluation); with
    no common part left, every event of the rule goes to one partition.
    """
    keys: dict[str, tuple[Any, ...]] = {}
    for rule in rules:
        if getattr(rule, "mode", "active") == "disabled" or _coarser_state(rule) is None:
            continue
        state_keys = [key for _, key in _state_keys(rule)]
        others = [{part.source.strip() for part in key} for key in state_keys[1:]]
        common: dict[str, Any] = {}
        for part in state_keys[0]:
            source = part.source.strip()
            if all(source in other for other in others) and not _reads_item(part):
                common.setdefault(source, part)
        keys[rule.id] = tuple(common.values())
    return keys


def key_space_problems(rules: Iterable[Any]) -> list[tuple[Any, str]]:
    """(rule, message) for each inhibition between rules whose state lives apart."""
    rules = list(rules)
    by_id = {rule.id: rule for rule in rules}
    problems: list[tuple[Any, str]] = []
    for rule in rules:
        if getattr(rule, "mode", "active") == "disabled":
            continue
        for other_id in getattr(rule, "inhibited_by", ()):
            other = by_id.get(other_id)
            if other is None:
                continue
            mine = {frozenset(topic_key_fields(e)) for e in rule.on}
            theirs = {frozenset(topic_key_fields(e)) for e in other.on}
            if mine != theirs:
                problems.append(
                    (
                        rule,
                        f"inhibited by rule {other_id!r}, whose events are keyed differently "
                        f"({', '.join(other.on)} vs {', '.join(rule.on)}); inhibition only works "
                        "between rules on events with the same key",
                    )
                )
                continue
            for whose, subject in ((rule, "this rule"), (other, f"rule {other_id!r}")):
                coarser = _coarser_state(whose)
                if coarser is not None:
                    problems.append(
                        (
                            rule,
                            f"inhibited by rule {other_id!r}, but {subject} has its events "
                            f"repartitioned ({coarser}); inhibition only works between rules "
                            "whose state follows their events' key",
                        )
                    )
                    break
    return problems


def _coarser_state(rule: Any) -> str | None:
    """How the rule's state is keyed more coarsely than one of its topics, or None."""
    for primitive, key in _state_keys(rule):
        have = {part.source.strip() for part in key}
        for event in rule.on:
            fields = topic_key_fields(event)
            if not fields <= have:
                return (
                    f"{primitive} keyed by [{', '.join(sorted(have))}], coarser than "
                    f"{event}'s {' + '.join(sorted(fields))}"
                )
    return None


def _reads_item(part: Any) -> bool:
    return any(path == "item" or path.startswith("item.") for path in part.paths)


def _state_keys(rule: Any) -> list[tuple[str, Any]]:
    keys: list[tuple[str, Any]] = []
    if rule.throttle is not None:
        keys.append(("throttle", rule.throttle.key or rule.key))
    if rule.window is not None:
        keys.append(("window", rule.window.key or rule.key))
    if rule.for_s is not None or rule.resolve_when is not None:
        keys.append(("for", rule.key))
    return keys
