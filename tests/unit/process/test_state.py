from __future__ import annotations

from typing import Any

import pytest

from worker.process.state import (
    EngineState,
    PartitionView,
    apply_changes,
    is_expired,
    keys_of_rules,
    partition_state,
    remember,
    rule_id_of,
    seen_before,
)


def test_changes_are_stored_with_the_partition_of_the_event_and_none_deletes() -> None:
    table: dict[str, Any] = {"a|x": [1, 5], "b|x": [1, {"n": 1}]}
    apply_changes(table, {"a|x": None, "b|x": {"n": 2}, "c|y": [1, 2], "gone|z": None}, 3)
    assert table == {"b|x": [3, {"n": 2}], "c|y": [3, [1, 2]]}


def test_a_partition_view_walks_its_keys_and_looks_up_the_rest_of_the_partition() -> None:
    table: dict[str, Any] = {
        "timer|a": [2, {"due": 1}],
        "other|t|a": [2, {"until": 9}],
        "elsewhere|t|a": [5, {"until": 9}],
    }
    view = PartitionView({"timer|a": {"due": 1}}, table, 2)
    assert list(view.items()) == [("timer|a", {"due": 1})]
    assert view.get("other|t|a") == {"until": 9}
    assert view.get("elsewhere|t|a") is None  # another partition's
    assert view.get("missing") is None
    assert "other|t|a" in view and len(view) == 1


def test_engine_sees_bare_values_read_only() -> None:
    view = EngineState({"a|x": [0, 5], "b|y": [2, None]})
    assert view["a|x"] == 5
    assert view.get("missing") is None
    assert "b|y" in view
    assert sorted(view) == ["a|x", "b|y"]
    assert len(view) == 2
    assert dict(view.items()) == {"a|x": 5, "b|y": None}
    with pytest.raises(KeyError):
        view["missing"]


def test_partition_state_keeps_only_that_partition() -> None:
    items = [("a|1", [0, 1]), ("a|2", [1, 2]), ("b|3", [0, 3])]
    assert partition_state(items, 0) == {"a|1": 1, "b|3": 3}
    assert partition_state(items, 5) == {}


@pytest.mark.parametrize(
    ("key", "rule_id"), [("after-hours|shop|123@s", "after-hours"), ("plain", "plain")]
)
def test_rule_id_is_the_part_before_the_first_bar(key: str, rule_id: str) -> None:
    assert rule_id_of(key) == rule_id


def test_keys_of_rules_selects_by_rule_and_partition() -> None:
    items = [("a|1", [0, 1]), ("a|2", [1, 2]), ("b|3", [0, 3]), ("ab|4", [0, 4])]
    assert keys_of_rules(items, 0, frozenset({"a"})) == ["a|1"]
    assert keys_of_rules(items, 0, frozenset()) == []


def test_another_envelope_with_a_remembered_message_is_a_duplicate_within_ttl() -> None:
    seen: dict[str, Any] = {}
    assert not seen_before(seen, "k", "ev1", now_s=100.0, ttl_s=60.0)
    remember(seen, "k", "ev1", 2, 100.0)
    assert seen == {"k": [2, 100.0, "ev1"]}
    assert seen_before(seen, "k", "ev2", now_s=150.0, ttl_s=60.0)
    assert not seen_before(seen, "k", "ev3", now_s=160.0, ttl_s=60.0)  # expired: new


def test_redelivery_of_the_same_envelope_is_not_a_duplicate() -> None:
    seen: dict[str, Any] = {"k": [0, 100.0, "ev1"]}
    assert not seen_before(seen, "k", "ev1", now_s=101.0, ttl_s=60.0)


def test_expired_entries_are_those_of_the_partition_older_than_ttl() -> None:
    assert is_expired([0, 10.0, "e"], 0, 70.0, 60.0)
    assert not is_expired([0, 50.0, "e"], 0, 70.0, 60.0)
    assert not is_expired([1, 10.0, "e"], 0, 70.0, 60.0)
