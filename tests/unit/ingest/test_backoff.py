from __future__ import annotations

import pytest

from worker.ingest.backoff import BackoffState, ReconnectPolicy

POLICY = ReconnectPolicy(first_delay=5.0, max_delay=60.0, factor=2.0, stable_after=30.0)


@pytest.mark.parametrize(
    ("failures", "bound"),
    [(0, 5.0), (1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (6, 60.0), (1000, 60.0)],
)
def test_bound_doubles_from_the_first_delay_up_to_the_cap(failures: int, bound: float) -> None:
    assert POLICY.bound(failures) == bound


@pytest.mark.parametrize(("random", "delay"), [(0.0, 0.0), (0.5, 10.0), (0.999, 19.98)])
def test_delay_is_full_jitter_over_the_bound(random: float, delay: float) -> None:
    assert POLICY.delay(3, random) == pytest.approx(delay)


def test_auth_delay_stays_near_the_cap() -> None:
    assert POLICY.auth_delay(0.0) == pytest.approx(54.0)
    assert POLICY.auth_delay(0.999) == pytest.approx(59.994)


def test_failed_attempts_grow_the_schedule() -> None:
    state = BackoffState()
    bounds = []
    for _ in range(6):
        state = state.after_failure()
        bounds.append(POLICY.bound(state.failures))
    assert bounds == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_a_stable_connection_resets_the_schedule_to_the_first_delay() -> None:
    state = BackoffState(failures=4)
    state = state.after_connection(uptime=31.0, policy=POLICY)
    assert state.failures == 1
    assert POLICY.bound(state.failures) == 5.0


def test_a_connection_dropped_right_after_opening_counts_as_a_failure() -> None:
    # No tight loop: accept-and-drop grows the delay like a refused connection.
    state = BackoffState()
    bounds = []
    for _ in range(5):
        state = state.after_connection(uptime=0.01, policy=POLICY)
        bounds.append(POLICY.bound(state.failures))
    assert bounds == [5.0, 10.0, 20.0, 40.0, 60.0]


def test_huge_failure_counts_do_not_overflow() -> None:
    assert POLICY.delay(10**6, 0.5) == 30.0
