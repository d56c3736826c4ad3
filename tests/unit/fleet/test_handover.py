from __future__ import annotations

from worker.fleet.handover import Handover, Hold, Holding


def test_assigned_partitions_are_owned() -> None:
    state = Handover(grace=10.0).assign([1, 2], now=0.0)
    assert state.owned() == {1, 2}
    assert state.releasing() == frozenset()
    assert state.held() == {1, 2}


def test_revoked_partitions_keep_their_sockets_for_the_grace_period() -> None:
    state = Handover(grace=10.0).assign([1, 2], now=0.0).revoke([2], now=5.0)
    assert state.owned() == {1}
    assert state.releasing() == {2}
    assert state.held() == {1, 2}
    assert state.holds[2] == Hold(Holding.RELEASING, 15.0)
    assert state.next_release() == 15.0


def test_grace_period_ends_and_the_partition_is_let_go() -> None:
    state = Handover(grace=10.0).assign([1, 2], now=0.0).revoke([2], now=5.0)
    assert state.expire(14.9) is state
    after = state.expire(15.0)
    assert after.held() == {1}
    assert after.released == 1
    assert after.next_release() is None


def test_reassigned_within_the_grace_period_keeps_the_socket() -> None:
    # An eager rebalance revokes everything and hands most of it back.
    state = Handover(grace=10.0).assign([1, 2, 3], now=0.0).revoke([1, 2, 3], now=1.0)
    state = state.assign([1, 3], now=1.5)
    assert state.owned() == {1, 3}
    assert state.releasing() == {2}
    assert state.reacquired == 2
    assert state.expire(11.0).held() == {1, 3}


def test_an_assignment_without_a_partition_revokes_it() -> None:
    state = Handover(grace=4.0).assign([1, 2], now=0.0).assign([2, 3], now=1.0)
    assert state.owned() == {2, 3}
    assert state.releasing() == {1}
    assert state.holds[1].release_at == 5.0


def test_revoking_twice_keeps_the_first_deadline() -> None:
    state = Handover(grace=10.0).assign([1], now=0.0).revoke([1], now=1.0).revoke([1], now=8.0)
    assert state.holds[1].release_at == 11.0


def test_revoking_what_was_never_held_changes_nothing() -> None:
    state = Handover(grace=10.0).revoke([7], now=0.0)
    assert state.held() == frozenset()


def test_leaving_releases_everything_after_the_grace_period() -> None:
    state = Handover(grace=3.0).assign([1, 2], now=0.0).revoke_all(now=10.0)
    assert state.owned() == frozenset()
    assert state.releasing() == {1, 2}
    assert state.expire(13.0).held() == frozenset()


def test_zero_grace_lets_go_at_once() -> None:
    state = Handover(grace=0.0).assign([1], now=0.0).revoke([1], now=2.0)
    assert state.expire(2.0).held() == frozenset()


def test_partitions_left_out_of_an_assignment_were_given_away() -> None:
    state = Handover(grace=10.0).assign([1, 2], now=0.0).revoke([1, 2], now=1.0)
    state = state.assign([1], now=1.2)
    assert state.holds[2].given_away
    assert not state.holds[1].renew


def test_back_after_another_process_held_it_means_a_new_socket() -> None:
    # Ours, given to another process (which opened the newer, live socket), then ours
    # again within the grace period: the socket we kept is starved and must be replaced.
    state = Handover(grace=10.0).assign([1, 2], now=0.0)
    state = state.revoke([1, 2], now=1.0).assign([1], now=1.1)
    state = state.revoke([1], now=3.0).assign([1, 2], now=3.1)
    assert state.owned() == {1, 2}
    assert state.renewals() == {2}
    assert state.renewed([2]).renewals() == frozenset()


def test_a_renewal_survives_another_rebalance_until_done() -> None:
    state = Handover(grace=10.0).assign([2], now=0.0).revoke([2], now=1.0).assign([], now=1.1)
    state = state.assign([2], now=2.0).revoke([2], now=2.5).assign([2], now=2.6)
    assert state.renewals() == {2}


def test_a_new_partition_is_renewed_once_after_the_settle_delay() -> None:
    state = Handover(grace=3.0, settle=9.0).assign([1], now=0.0)
    assert state.next_release() == 9.0
    assert state.expire(8.9).renewals() == frozenset()
    due = state.expire(9.0)
    assert due.renewals() == {1}
    done = due.renewed([1])
    assert done.renewals() == frozenset()
    assert done.next_release() is None


def test_kept_through_a_rebalance_is_not_renewed_again() -> None:
    state = Handover(grace=3.0, settle=9.0).assign([1], now=0.0).expire(9.0).renewed([1])
    state = state.revoke([1], now=20.0).assign([1], now=20.1)
    assert state.next_release() is None
    assert state.renewals() == frozenset()


def test_back_after_being_given_away_is_renewed_now_and_after_settling() -> None:
    state = Handover(grace=3.0, settle=9.0).assign([1], now=0.0).expire(9.0).renewed([1])
    state = state.revoke([1], now=20.0).assign([], now=20.1).assign([1], now=21.0)
    assert state.renewals() == {1}
    assert state.renewed([1]).expire(30.0).renewals() == {1}


def test_the_claim_counts_what_was_owned_until_this_rebalance_as_owned() -> None:
    state = Handover(grace=10.0).assign([1, 2, 3], now=0.0)
    state = state.revoke([1, 2, 3], now=1.0).assign([1, 2], now=1.1)  # 3 given away
    state = state.revoke([1, 2], now=2.0)  # the next rebalance begins
    assert state.claim() == (frozenset({1, 2}), frozenset({3}))
