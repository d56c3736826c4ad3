"""Which failures are worth retrying, and when to retry them.

Pure: callers pass the clock reading and the random draw, so the schedule is testable exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import aiohttp

#: 4xx codes that mean "try again later" rather than "this request is wrong".
_RETRIABLE_4XX: Final = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Failure:
    """Why one attempt at an action failed."""

    #: One line for people (and for the dead-letter record); never holds a secret.
    error: str
    #: True if the same request may succeed later (timeouts, 5xx, 429, connection errors).
    retriable: bool
    #: Delay the far side asked for (``Retry-After``), in seconds, if any.
    retry_after_s: float | None = None


def is_retriable_status(status: int) -> bool:
    """5xx, 408, 425 and 429 are retriable; every other non-2xx status is permanent."""
    return status >= 500 or status in _RETRIABLE_4XX


def failure_for_status(
    status: int, reason: str, body_excerpt: str, retry_after_s: float | None = None
) -> Failure:
    """A :class:`Failure` for a non-2xx HTTP answer."""
    detail = f": {body_excerpt}" if body_excerpt else ""
    return Failure(
        error=f"HTTP {status} {reason}{detail}".rstrip(),
        retriable=is_retriable_status(status),
        retry_after_s=retry_after_s if status in (429, 503) else None,
    )


def failure_for_exception(exc: BaseException) -> Failure:
    """Classify an exception raised while calling the far side.

    Timeouts and connection-level errors are retriable (the request may not have arrived, or
    the answer was lost). Malformed URLs and other programming or configuration errors are
    permanent: retrying cannot fix them.
    """
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):
        return Failure(error=f"timed out ({name})", retriable=True)
    if isinstance(exc, aiohttp.InvalidURL):
        # The URL may hold a resolved secret, so it is not repeated here; callers name the
        # request by its unresolved form.
        return Failure(error="invalid URL", retriable=False)
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return Failure(error=f"connection error: {name}: {exc}".rstrip(": "), retriable=True)
    if isinstance(exc, ConnectionError):
        return Failure(error=f"connection error: {name}: {exc}".rstrip(": "), retriable=True)
    retriable = bool(getattr(exc, "retriable", False))  # aiokafka errors say it themselves
    return Failure(error=f"{name}: {exc}".rstrip(": "), retriable=retriable)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns ``None`` for a missing or unreadable header; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in attempts and in delay."""

    #: Attempts in all, the first one included; 1 means never retry.
    max_attempts: int = 5
    #: Delay before the second attempt, before jitter, in seconds.
    base_delay_s: float = 0.5
    #: Upper bound of the exponential part, in seconds.
    max_delay_s: float = 60.0
    #: Upper bound of a ``Retry-After`` we honour, in seconds; longer asks are capped.
    max_retry_after_s: float = 300.0

    def delay_after(self, attempt: int, random_draw: float) -> float:
        """Delay before attempt ``attempt + 1``, after attempt number ``attempt`` (1-based) failed.

        "Equal jitter": half the exponential delay is fixed, the other half scaled by
        ``random_draw`` in [0, 1), so retries of many records spread out without any being
        retried immediately.
        """
        exponential = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return exponential / 2 + exponential / 2 * random_draw

    def next_delay(self, attempt: int, failure: Failure, random_draw: float) -> float | None:
        """Seconds to wait before retrying, or ``None`` when the action has failed for good."""
        if not failure.retriable or attempt >= self.max_attempts:
            return None
        delay = self.delay_after(attempt, random_draw)
        if failure.retry_after_s is not None:
            delay = max(delay, min(failure.retry_after_s, self.max_retry_after_s))
        return delay
