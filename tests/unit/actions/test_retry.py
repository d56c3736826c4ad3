from datetime import UTC, datetime

import aiohttp
import pytest

from worker.actions.retry import (
    Failure,
    RetryPolicy,
    failure_for_exception,
    failure_for_status,
    is_retriable_status,
    parse_retry_after,
)

NOW = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "retriable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (422, False),
        (408, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (301, False),
    ],
)
def test_status_classification(status, retriable):
    assert is_retriable_status(status) is retriable


def test_failure_for_status_keeps_retry_after_only_for_429_and_503():
    assert failure_for_status(429, "Too Many Requests", "", 7.0) == Failure(
        "HTTP 429 Too Many Requests", True, 7.0
    )
    assert failure_for_status(500, "Internal Server Error", "{}", 7.0) == Failure(
        "HTTP 500 Internal Server Error: {}", True, None
    )
    assert failure_for_status(400, "Bad Request", '{"message":["x"]}') == Failure(
        'HTTP 400 Bad Request: {"message":["x"]}', False, None
    )


@pytest.mark.parametrize(
    ("exc", "error", "retriable"),
    [
        (TimeoutError(), "timed out (TimeoutError)", True),
        (aiohttp.ServerTimeoutError("read"), "timed out (ServerTimeoutError)", True),
        (
            aiohttp.ServerDisconnectedError(),
            "connection error: ServerDisconnectedError: Server disconnected",
            True,
        ),
        (
            ConnectionRefusedError(111, "refused"),
            "connection error: ConnectionRefusedError: [Errno 111] refused",
            True,
        ),
        (aiohttp.InvalidURL("https://x/secret"), "invalid URL", False),
        (ValueError("bad"), "ValueError: bad", False),
    ],
)
def test_exception_classification(exc, error, retriable):
    assert failure_for_exception(exc) == Failure(error, retriable)


def test_exception_that_says_it_is_retriable_is_retriable():
    class BrokerBusy(Exception):
        retriable = True

    assert failure_for_exception(BrokerBusy("busy")).retriable


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("12", 12.0),
        (" 0 ", 0.0),
        ("Wed, 25 Nov 2026 20:00:30 GMT", 30.0),
        ("Wed, 25 Nov 2026 19:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_parses_seconds_and_http_dates(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


def test_backoff_doubles_with_equal_jitter_and_caps():
    policy = RetryPolicy(max_attempts=10, base_delay_s=1.0, max_delay_s=8.0)
    assert [policy.delay_after(n, 0.0) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert [policy.delay_after(n, 0.999999) for n in range(1, 5)] == pytest.approx(
        [1, 2, 4, 8], rel=1e-5
    )
    assert policy.delay_after(2, 0.5) == 1.5


def test_next_delay_stops_at_max_attempts_and_on_permanent_failures():
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=60.0)
    retriable = Failure("HTTP 500", True)
    assert policy.next_delay(1, retriable, 0.0) == 0.5
    assert policy.next_delay(2, retriable, 0.0) == 1.0
    assert policy.next_delay(3, retriable, 0.0) is None
    assert policy.next_delay(1, Failure("HTTP 400", False), 0.0) is None


def test_retry_after_lengthens_but_never_shortens_the_delay_and_is_capped():
    policy = RetryPolicy(max_attempts=5, base_delay_s=4.0, max_retry_after_s=30.0)
    assert policy.next_delay(1, Failure("429", True, retry_after_s=10.0), 0.0) == 10.0
    assert policy.next_delay(1, Failure("429", True, retry_after_s=1.0), 0.0) == 2.0
    assert policy.next_delay(1, Failure("429", True, retry_after_s=3600.0), 0.0) == 30.0
