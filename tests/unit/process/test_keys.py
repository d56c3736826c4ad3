from __future__ import annotations

from pathlib import Path

import pytest

from worker.process.engine import BundleEngine, rule_digests
from worker.process.keys import topic_key_fields
from worker.rules import RuleLoadError

HEADER = "rules:\n"


def write(directory: Path, body: str, name: str = "rules.yaml") -> Path:
    path = directory / name
    path.write_text(HEADER + body)
    return path


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        ("messages.upsert", {"instance", "msg.chat"}),
        ("chats.update", {"instance", "chat.id"}),
        ("presence.update", {"instance", "presence.chat"}),
        ("group-participants.update", {"instance", "group.id"}),
        ("connection.update", {"instance"}),
        ("call.upsert", {"instance"}),
    ],
)
def test_topic_key_fields_follow_the_kafka_keys(event: str, fields: set[str]) -> None:
    assert topic_key_fields(event) == fields


def test_rules_keyed_by_their_topic_key_or_finer_load(tmp_path: Path) -> None:
    write(
        tmp_path,
        "  - id: reply\n    on: messages.upsert\n"
        "    throttle: {key: [instance, msg.chat, msg.sender], once_within: 1h}\n"
        "    actions: [{log: {message: hi}}]\n"
        "  - id: flapping\n    on: connection.update\n"
        "    window: {count: 3, within: 10m}\n"
        "    actions: [{log: {message: flap}}]\n"
        "  - id: welcome\n    on: group-participants.update\n    throttle: 1m\n"
        "    actions: [{log: {message: hi}}]\n",
    )
    assert BundleEngine().load(tmp_path).events == {
        "messages.upsert",
        "connection.update",
        "group-participants.update",
    }


def test_state_coarser_than_the_topic_key_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: reply\n    on: messages.upsert\n"
        "    throttle: {key: [instance], once_within: 1h}\n"
        "    actions: [{log: {message: hi}}]\n",
    )
    with pytest.raises(RuleLoadError) as raised:
        BundleEngine().load(tmp_path)
    assert str(raised.value) == (
        f'{path}:2:1: rule "reply": throttle keyed by [instance] spans partitions of '
        "messages.upsert (keyed by instance + msg.chat); add msg.chat to its key"
    )


def test_inhibition_across_key_spaces_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - id: down\n    on: connection.update\n    for: 2m\n"
        "    actions: [{log: {message: down}}]\n"
        "  - id: reply\n    on: messages.upsert\n    inhibited_by: [down]\n"
        "    actions: [{log: {message: hi}}]\n",
    )
    with pytest.raises(RuleLoadError) as raised:
        BundleEngine().load(tmp_path)
    assert str(raised.value) == (
        f"{path}:6:1: rule \"reply\": inhibited by rule 'down', whose events are keyed "
        "differently (connection.update vs messages.upsert); inhibition only works between "
        "rules on events with the same key"
    )


def test_digests_change_only_for_the_rule_that_changed(tmp_path: Path) -> None:
    rules = (
        "  - id: a\n    on: messages.upsert\n    actions: [{log: {message: a}}]\n"
        "  - id: b\n    on: messages.upsert\n    actions: [{log: {message: %s}}]\n"
    )
    write(tmp_path, rules % "b1")
    before = rule_digests(tmp_path)
    write(tmp_path, rules % "b2")
    after = rule_digests(tmp_path)
    assert before["a"] == after["a"]
    assert before["b"] != after["b"]
    (tmp_path / "shared.yaml").write_text("vars: {x: 1}\n")
    assert rule_digests(tmp_path)["a"] != after["a"]
