from __future__ import annotations

import asyncio

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from worker.fleet.config import OwnershipConfig
from worker.fleet.ownership import (
    KafkaOwnership,
    MemberClaim,
    MemberPlan,
    SubscriptionAssignor,
    decode_member,
    decode_plan,
    encode_member,
    encode_plan,
)
from worker.ingest.config import KafkaConfig


def test_a_member_claim_round_trips() -> None:
    claim = MemberClaim("host:42", frozenset({1, 2}), frozenset({7}))
    assert decode_member(encode_member(claim)) == claim


def test_unreadable_member_metadata_is_no_claim() -> None:
    assert decode_member(b"") is None
    assert decode_member(b'{"owned": [1]}') is None


def test_the_leader_plan_round_trips() -> None:
    plan = MemberPlan({"a:1": frozenset({0, 2}), "b:2": frozenset({1})}, frozenset({2}))
    assert decode_plan(encode_plan(plan)) == plan


def test_an_unreadable_plan_is_empty() -> None:
    assert decode_plan(b"") == MemberPlan({})


class FakeCluster:
    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


def ownership(member: str = "me:1") -> KafkaOwnership:
    config = OwnershipConfig(mode="kafka", partitions=4, member_name=member)
    return KafkaOwnership(
        KafkaConfig(topic_prefix="p."), config, lambda n: dict.fromkeys(range(n), 1), lambda: None
    )


def metadata(claim: MemberClaim) -> ConsumerProtocolMemberMetadata:
    return ConsumerProtocolMemberMetadata(0, ["p.subscriptions"], encode_member(claim))


def test_the_leader_keeps_owners_and_tells_everyone_the_whole_plan() -> None:
    assignor = SubscriptionAssignor(ownership())
    members = {
        "m-a": metadata(MemberClaim("a:1", owned=frozenset({0, 1}))),
        "m-b": metadata(MemberClaim("b:2", owned=frozenset({2, 3}))),
    }
    result = assignor.assign(FakeCluster(4), members)
    assert {m: sorted(a.partitions()) for m, a in result.items()} == {
        "m-a": [("p.subscriptions", 0), ("p.subscriptions", 1)],
        "m-b": [("p.subscriptions", 2), ("p.subscriptions", 3)],
    }
    plan = decode_plan(result["m-a"].user_data)
    assert plan == MemberPlan({"a:1": frozenset({0, 1}), "b:2": frozenset({2, 3})})


def test_an_owner_wins_over_a_member_still_releasing_and_the_taker_renews() -> None:
    assignor = SubscriptionAssignor(ownership())
    members = {
        # a gave 0 and 1 away and still has their sockets; b owns them now.
        "m-a": metadata(MemberClaim("a:1", owned=frozenset({2, 3}), releasing=frozenset({0, 1}))),
        "m-b": metadata(MemberClaim("b:2", owned=frozenset({0, 1}))),
        "m-c": metadata(MemberClaim("c:3")),
    }
    result = assignor.assign(FakeCluster(4), members)
    plans = {m: decode_plan(a.user_data) for m, a in result.items()}
    held = {m: {tp.partition for tp in a.partitions()} for m, a in result.items()}
    assert held["m-b"] <= {0, 1}
    # Whoever gets 0 or 1 other than b must replace a's (older, maybe live) socket.
    for member, parts in held.items():
        contested_here = parts & {0, 1} if member != "m-b" else set()
        assert plans[member].renew == frozenset(contested_here)
    assert plans["m-b"].renew == frozenset()


def test_the_assignment_reaches_the_handover_state() -> None:
    own = ownership()
    assignor = SubscriptionAssignor(own)
    own.leader_renew = frozenset()
    assignment = assignor.assign(
        FakeCluster(4), {"m": metadata(MemberClaim("me:1", owned=frozenset({0})))}
    )["m"]
    assignor.on_assignment(assignment)
    own.assigned([tp.partition for tp in assignment.partitions()])
    assert own.state.owned() == {0, 1, 2, 3}
    assert own.owner_of(2) == "me:1"


async def test_close_ends_the_grace_timer_woken_in_the_same_turn() -> None:
    # close() revokes everything, which wakes the grace timer, and cancels the timer in the
    # same turn. asyncio.wait_for (Python 3.11) returned the wake-up and lost the
    # cancellation: the timer waited forever, and so did `zapflow run`'s stop.
    own = ownership()
    own.assigned([0, 1])
    own.revoked([0])  # 0 is releasing: the timer waits for its grace deadline
    release = asyncio.get_running_loop().create_task(own._release_loop())
    own._release_task = release
    await asyncio.sleep(0)  # one turn: the timer is now waiting
    assert own.state.next_release() is not None and not release.done()
    closing = asyncio.get_running_loop().create_task(own.close())
    done, _ = await asyncio.wait([closing], timeout=5)
    assert closing in done, "close() still waits for the grace timer"
    assert release.cancelled()
