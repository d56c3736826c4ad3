from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from worker.process.engine import BundleEngine, SplitBundle, rule_digests
from worker.process.keys import repartition_keys, topic_key_fields
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


REKEYED = (
    "  - id: per-instance\n    on: messages.upsert\n"
    "    throttle: {key: [instance], once_within: 10m}\n"
    "    actions: [{log: {message: hi}}]\n"
    "  - id: per-sender\n    on: [messages.upsert, send.message]\n"
    "    window: {key: [msg.sender, instance], count: 3, within: 1m}\n"
    "    throttle: {key: [instance, msg.sender, msg.chat], once_within: 1h}\n"
    "    actions: [{log: {message: hi}}]\n"
    "  - id: quiet\n    on: messages.upsert\n    key: [instance]\n    for: 5m\n"
    "    actions: [{log: {message: quiet}}]\n"
    "  - id: welcome-once\n    on: group-participants.update\n    for_each: group.participants\n"
    "    throttle: {key: [instance, item.phone], once_within: 1d}\n"
    "    actions: [{log: {message: hi}}]\n"
    "  - id: reply\n    on: messages.upsert\n"
    "    throttle: {key: [instance, msg.chat], once_within: 1h}\n"
    "    actions: [{log: {message: hi}}]\n"
    "  - id: stateless\n    on: messages.upsert\n    key: [instance]\n"
    "    actions: [{log: {message: hi}}]\n"
)


def test_rules_keyed_more_coarsely_than_their_topic_load_split_off_with_their_key(
    tmp_path: Path,
) -> None:
    write(tmp_path, REKEYED)
    split = BundleEngine().load(tmp_path)
    assert isinstance(split, SplitBundle)
    assert {
        rule_id: [part.source for part in parts] for rule_id, parts in split.rekeyed.items()
    } == {
        "per-instance": ["instance"],
        "per-sender": ["instance", "msg.sender"],
        "quiet": ["instance"],
        "welcome-once": ["instance"],
    }
    assert [r.id for r in split.local.by_event["messages.upsert"]] == ["reply", "stateless"]
    assert split.local.by_event["group-participants.update"] == ()
    assert split.events == {"messages.upsert", "send.message", "group-participants.update"}


def test_rules_keyed_by_their_topic_key_are_not_rekeyed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "  - id: reply\n    on: messages.upsert\n    throttle: 1h\n"
        "    actions: [{log: {message: hi}}]\n",
    )
    split = BundleEngine().load(tmp_path)
    assert isinstance(split, SplitBundle)
    assert split.rekeyed == {}
    assert split.local is split.whole


def test_disabled_rules_are_not_rekeyed() -> None:
    rule = SimpleNamespace(
        id="off",
        mode="disabled",
        on=("messages.upsert",),
        throttle=None,
        window=None,
        for_s=60.0,
        resolve_when=None,
        key=(),
    )
    assert repartition_keys([rule]) == {}


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


@pytest.mark.parametrize(
    ("muted", "inhibitor", "subject"),
    [
        ("throttle: {key: [instance], once_within: 1h}", "throttle: 1h", "this rule"),
        ("throttle: 1h", "throttle: {key: [instance], once_within: 1h}", "rule 'down'"),
    ],
)
def test_inhibition_with_a_rekeyed_rule_is_refused(
    tmp_path: Path, muted: str, inhibitor: str, subject: str
) -> None:
    path = write(
        tmp_path,
        f"  - id: down\n    on: messages.upsert\n    {inhibitor}\n"
        "    actions: [{log: {message: down}}]\n"
        f"  - id: reply\n    on: messages.upsert\n    inhibited_by: [down]\n    {muted}\n"
        "    actions: [{log: {message: hi}}]\n",
    )
    with pytest.raises(RuleLoadError) as raised:
        BundleEngine().load(tmp_path)
    assert str(raised.value) == (
        f"{path}:6:1: rule \"reply\": inhibited by rule 'down', but {subject} has its events "
        "repartitioned (throttle keyed by [instance], coarser than messages.upsert's "
        "instance + msg.chat); inhibition only works between rules whose state follows their "
        "events' key"
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


def test_the_engine_evaluates_each_rule_on_its_own_side_of_the_split(tmp_path: Path) -> None:
    write(tmp_path, REKEYED)
    engine = BundleEngine()
    split = engine.load(tmp_path)
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    text = {
        "id": "01JA",
        "instance": "shop-bot",
        "event": "messages.upsert",
        "received_at": "2026-11-25T20:00:00.000Z",
        "source": {"gateway": "test", "connection": "c", "seq": 1},
        "data": {"keyId": "K1", "keyFromMe": False, "keyRemoteJid": "5511@s.whatsapp.net"},
    }
    here = engine.evaluate(split, {}, text, now)
    assert sorted(a.rule_id for a in here.actions) == ["reply", "stateless"]
    assert engine.route(split, text) == [
        ("shop-bot", ("per-instance", "quiet")),
        (
            "shop-bot|5511@s.whatsapp.net",
            ("per-sender",),
        ),
    ]
    # A record naming a rule that is not rekeyed (any more) does not evaluate it there.
    there = engine.evaluate_rekeyed(split, ["reply", "per-instance"], {}, text, now)
    assert [a.rule_id for a in there.actions] == ["per-instance"]
