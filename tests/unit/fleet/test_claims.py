from __future__ import annotations

from worker.fleet.ownership import (
    MemberClaim,
    MemberPlan,
    decode_member,
    decode_plan,
    encode_member,
    encode_plan,
)


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
