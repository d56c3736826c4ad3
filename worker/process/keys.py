"""Why the process stage needs no repartition, and the rules it refuses for that reason.

Every event topic is keyed by what its events are about (contracts §1): ``instance:chat`` for
messages, chats, sends and presence, ``instance:group`` for group events, ``instance`` for the
rest. All events of one chat (group, instance) are therefore on one partition, and so is any
state keyed by that chat plus anything finer (``[instance, msg.chat, msg.sender]``): the
state table is co-partitioned with the topics and every read and write of a key happens on
the partition that holds it. The engine's default keys are exactly these.

A rule that keys state more coarsely than its topic (a throttle per instance on
``messages.upsert``) would see its state split over partitions: each partition would throttle
on its own, and with the RocksDB store (which reads only the current event's partition) or
several workers the count would silently be wrong. Repartitioning every such rule's events by
its own key would cost an extra topic hop per event and per rule; none of the shipped rules
needs it, so such a bundle is refused at load, saying which key to add. The same holds for
inhibition: the inhibiting rule's state must live in the same key space as the muted rule's.
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


def key_space_problems(rules: Iterable[Any]) -> list[tuple[Any, str]]:
    """(rule, message) for each stateful rule whose state would not follow its topic key."""
    rules = list(rules)
    by_id = {rule.id: rule for rule in rules}
    problems: list[tuple[Any, str]] = []
    for rule in rules:
        if getattr(rule, "mode", "active") == "disabled":
            continue
        for primitive, key in _state_keys(rule):
            have = {part.source.strip() for part in key}
            for event in rule.on:
                missing = sorted(topic_key_fields(event) - have)
                if missing:
                    problems.append(
                        (
                            rule,
                            f"{primitive} keyed by [{', '.join(sorted(have))}] spans partitions "
                            f"of {event} (keyed by {' + '.join(sorted(topic_key_fields(event)))});"
                            f" add {', '.join(missing)} to its key",
                        )
                    )
                    break
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
    return problems


def _state_keys(rule: Any) -> list[tuple[str, Any]]:
    keys: list[tuple[str, Any]] = []
    if rule.throttle is not None:
        keys.append(("throttle", rule.throttle.key or rule.key))
    if rule.window is not None:
        keys.append(("window", rule.window.key or rule.key))
    if rule.for_s is not None or rule.resolve_when is not None:
        keys.append(("for", rule.key))
    return keys
