import pytest

from worker.actions.limits import Rate, SendLimiter, TokenBucket


def test_bucket_allows_a_burst_then_spaces_sends_at_the_rate():
    bucket = TokenBucket(Rate(per_second=2.0, burst=3), now=0.0)
    waits = []
    for _ in range(6):
        at = bucket.available_at(0.0)
        bucket.take(at)
        waits.append(at)
    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


def test_bucket_refills_over_time_up_to_the_burst():
    bucket = TokenBucket(Rate(per_second=1.0, burst=2), now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.available_at(0.5) == 1.0
    assert bucket.available_at(100.0) == 100.0
    bucket.take(100.0)
    bucket.take(100.0)
    assert bucket.available_at(100.0) == 101.0


def test_chat_bucket_spaces_sends_in_one_chat_only():
    limiter = SendLimiter(per_instance=Rate(10.0, 10), per_chat=Rate(1.0, 1))
    assert limiter.reserve_chat("shop", "a", now=0.0) == 0.0
    assert limiter.reserve_chat("shop", "a", now=0.0) == 1.0
    assert limiter.reserve_chat("shop", "b", now=0.0) == 0.0
    assert limiter.reserve_chat("other", "a", now=0.0) == 0.0


def test_instance_is_charged_only_when_the_chat_lets_the_send_go():
    limiter = SendLimiter(per_instance=Rate(1.0, 1), per_chat=Rate(0.1, 1))
    # chat a queues a send 10 s ahead; the instance bucket is untouched meanwhile
    assert limiter.reserve_chat("shop", "a", now=0.0) == 0.0
    assert limiter.reserve_instance("shop", now=0.0) == 0.0
    assert limiter.reserve_chat("shop", "a", now=0.0) == 10.0
    assert limiter.reserve_chat("shop", "b", now=0.5) == 0.0
    assert limiter.reserve_instance("shop", now=0.5) == 0.5


def test_limiter_never_drops_reservations_pile_up_in_order():
    limiter = SendLimiter(per_instance=Rate(5.0, 1), per_chat=None)
    waits = [limiter.reserve_instance("shop", now=0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert limiter.reserve_chat("shop", "x", now=0.0) == 0.0


def test_unlimited_limiter_never_waits():
    limiter = SendLimiter(per_instance=None, per_chat=None)
    waits = [limiter.reserve_chat("a", "x", now=0.0) + limiter.reserve_instance("a", 0.0)]
    assert waits * 3 == [0.0, 0.0, 0.0]


def test_idle_buckets_are_forgotten_busy_ones_kept():
    limiter = SendLimiter(per_instance=Rate(1.0, 2), per_chat=Rate(1.0, 1))
    limiter.reserve_instance("a", now=0.0)
    limiter.reserve_chat("a", "x", now=0.0)
    limiter.reserve_chat("a", "x", now=0.0)  # chat x reserved for t=1.0
    assert limiter.forget_idle(now=0.5) == 0
    assert limiter.forget_idle(now=10.0) == 2


@pytest.mark.parametrize(
    ("per_second", "burst", "message"),
    [
        (0.0, 1, "rate must be positive, got 0.0 per second"),
        (1.0, 0.5, "burst must be at least 1, got 0.5"),
    ],
)
def test_rate_rejects_nonsense(per_second, burst, message):
    with pytest.raises(ValueError) as info:
        Rate(per_second, burst)
    assert str(info.value) == message


def test_reserve_if_free_takes_from_both_buckets_only_when_neither_makes_the_send_wait():
    limiter = SendLimiter(per_instance=Rate(1.0, 2), per_chat=Rate(1.0, 1))
    assert limiter.reserve_if_free("shop", "a", now=0.0)
    # chat a is empty now: nothing is reserved, so the instance keeps its second token
    assert not limiter.reserve_if_free("shop", "a", now=0.0)
    assert limiter.reserve_if_free("shop", "b", now=0.0)
    # the instance is empty too: chat c's bucket must stay untouched
    assert not limiter.reserve_if_free("shop", "c", now=0.0)
    assert limiter.reserve_chat("shop", "c", now=0.0) == 0.0
    # the queued way still sees the fast way's reservations
    assert limiter.reserve_instance("shop", now=0.0) == 1.0


def test_reserve_if_free_without_limits_or_chat():
    assert SendLimiter(per_instance=None, per_chat=None).reserve_if_free("shop", "a", now=0.0)
    limiter = SendLimiter(per_instance=Rate(1.0, 1), per_chat=Rate(0.1, 1))
    assert limiter.reserve_if_free("shop", None, now=0.0)
    assert not limiter.reserve_if_free("shop", None, now=0.5)
    assert limiter.reserve_if_free("shop", None, now=1.0)
