from __future__ import annotations

import pytest

from worker.events import STREAMED_EVENTS
from worker.fleet.assignment import (
    contested,
    owned_keys,
    partition_weights,
    plan_assignment,
    subscription_partition,
)

KEYS = [(f"inst-{i:02d}", event) for i in range(20) for event in STREAMED_EVENTS]


def loads(plan: dict[str, frozenset[int]], weights: dict[int, int]) -> dict[str, int]:
    return {name: sum(weights[p] for p in parts) for name, parts in plan.items()}


def test_partition_of_a_key_is_stable_across_runs() -> None:
    # CRC-32 of "instance|event": the same in every process and every Python run.
    assert subscription_partition("shop-bot", "messages.upsert", 64) == 349287891 % 64 == 19
    assert subscription_partition("shop-bot", "messages.upsert", 1) == 0


def test_every_key_maps_into_the_partition_range() -> None:
    assert all(0 <= subscription_partition(i, e, 64) < 64 for i, e in KEYS)


def test_weights_list_every_partition_and_count_every_key() -> None:
    weights = partition_weights(KEYS, 64)
    assert sorted(weights) == list(range(64))
    assert sum(weights.values()) == 280


@pytest.mark.parametrize("members", [1, 2, 3, 4, 5])
def test_every_partition_has_exactly_one_holder_and_keys_balance(members: int) -> None:
    weights = partition_weights(KEYS, 64)
    names = [f"host:{100 + m}" for m in range(members)]
    plan = plan_assignment(weights, names)
    held = [p for parts in plan.values() for p in parts]
    assert sorted(held) == list(range(64))
    load = loads(plan, weights)
    assert sum(load.values()) == 280
    # Partitions are indivisible: the spread is at most one partition's weight.
    assert max(load.values()) - min(load.values()) <= max(weights.values()), load
    assert max(load.values()) <= -(-280 // members) + max(weights.values()) - 1, load


def test_plan_does_not_depend_on_member_order() -> None:
    weights = partition_weights(KEYS, 64)
    assert plan_assignment(weights, ["b", "a", "c"]) == plan_assignment(weights, ["c", "b", "a"])


def test_no_members_no_plan() -> None:
    assert plan_assignment({0: 1}, []) == {}


def test_a_joining_member_takes_only_its_share_from_the_others() -> None:
    weights = partition_weights(KEYS, 64)
    before = plan_assignment(weights, ["a", "b"])
    after = plan_assignment(weights, ["a", "b", "c"], previous=before)
    moved = {p for name in ("a", "b") for p in before[name] - after[name]}
    moved_keys = sum(weights[p] for p in moved)
    assert moved == set(after["c"])
    # c's fair share is a third of 280; it gets no more than one partition more.
    assert moved_keys <= 94 + max(weights.values()), moved_keys


def test_a_leaving_member_moves_only_its_own_partitions() -> None:
    weights = partition_weights(KEYS, 64)
    before = plan_assignment(weights, ["a", "b", "c"])
    after = plan_assignment(weights, ["a", "c"], previous=before)
    assert before["a"] <= after["a"]
    assert before["c"] <= after["c"]
    assert after["a"] | after["c"] == frozenset(range(64))


def test_same_members_again_keep_everything() -> None:
    weights = partition_weights(KEYS, 64)
    before = plan_assignment(weights, ["a", "b", "c"])
    assert plan_assignment(weights, ["a", "b", "c"], previous=before) == before


def test_a_partition_claimed_twice_goes_to_one_member() -> None:
    weights = {0: 5, 1: 5}
    plan = plan_assignment(weights, ["a", "b"], previous={"a": [0], "b": [0, 1]})
    assert plan == {"a": frozenset({0}), "b": frozenset({1})}


def test_partitions_without_keys_are_spread_too() -> None:
    weights = dict.fromkeys(range(8), 0)
    plan = plan_assignment(weights, ["a", "b"])
    assert {len(parts) for parts in plan.values()} == {4}


def test_owned_keys_are_those_of_the_held_partitions() -> None:
    mine = owned_keys(KEYS, [0, 1, 2], 64)
    assert mine == {k for k in KEYS if subscription_partition(*k, 64) in {0, 1, 2}}
    assert owned_keys(KEYS, range(64), 64) == set(KEYS)


def test_a_partition_someone_else_still_holds_is_renewed_by_its_new_owner() -> None:
    plan = {"a": [1, 2], "b": [3]}
    owned = {"a": [1], "b": [2, 3]}
    releasing = {"c": [3]}
    # a takes 2 from its owner b; b keeps 3 although c still has an (older) socket on it.
    assert contested(plan, owned, releasing) == {"a": frozenset({2}), "b": frozenset()}


def test_two_members_owning_one_partition_means_a_renewal() -> None:
    # One of them missed a generation; whose socket is newer is unknown.
    assert contested({"a": [1]}, {"a": [1], "b": [1]}) == {"a": frozenset({1})}


def test_taking_a_partition_only_released_elsewhere_is_a_renewal() -> None:
    assert contested({"a": [1]}, {"a": []}, {"b": [1]}) == {"a": frozenset({1})}


def test_nothing_is_contested_when_each_member_keeps_its_own() -> None:
    assert contested({"a": [1], "b": [2]}, {"a": [1], "b": [2]}) == {
        "a": frozenset(),
        "b": frozenset(),
    }
