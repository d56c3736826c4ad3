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


def test_limiter_waits_for_the_slower_of_instance_and_chat():
    limiter = SendLimiter(per_instance=Rate(10.0, 1), per_chat=Rate(1.0, 1))
    assert limiter.reserve("shop", "a", now=0.0) == 0.0
    # instance has a token again after 0.1 s, chat "a" only after 1 s
    assert limiter.reserve("shop", "a", now=0.0) == pytest.approx(1.0)
    # another chat only waits for the instance bucket, which was charged at t=1.0 above
    assert limiter.reserve("shop", "b", now=0.0) == pytest.approx(1.1)


def test_limiter_never_drops_reservations_pile_up_in_order():
    limiter = SendLimiter(per_instance=Rate(5.0, 1), per_chat=None)
    waits = [limiter.reserve("shop", None, now=0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_instances_do_not_share_buckets():
    limiter = SendLimiter(per_instance=Rate(1.0, 1), per_chat=Rate(1.0, 1))
    assert limiter.reserve("a", "x", now=0.0) == 0.0
    assert limiter.reserve("b", "x", now=0.0) == 0.0


def test_unlimited_limiter_never_waits():
    limiter = SendLimiter(per_instance=None, per_chat=None)
    assert [limiter.reserve("a", "x", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_idle_buckets_are_forgotten_busy_ones_kept():
    limiter = SendLimiter(per_instance=Rate(1.0, 2), per_chat=Rate(1.0, 1))
    limiter.reserve("a", "x", now=0.0)
    limiter.reserve("a", "x", now=0.0)  # chat x reserved for t=1.0
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
