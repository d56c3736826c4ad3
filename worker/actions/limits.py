"""Outbound send limits per gateway instance and per chat (token buckets).

WhatsApp bans numbers that send too fast and a rule loop can send without end, so every gateway
send takes a token from its instance's bucket and from its chat's bucket. A send over the limit
is not dropped: it gets a reservation in the future and waits until then. Reservations may drive
a bucket below zero; that is what keeps the order of waiting sends fair.

Pure: the caller passes ``now`` (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

_K = TypeVar("_K")


@dataclass(frozen=True)
class Rate:
    """A sustained rate with a burst allowance."""

    #: Tokens added per second.
    per_second: float
    #: Bucket size: how many sends may go out at once after a quiet spell.
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0:
            raise ValueError(f"rate must be positive, got {self.per_second} per second")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")


class TokenBucket:
    """One bucket. ``reserve`` returns how long to wait before using the reserved token."""

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = rate.burst
        self._updated = now

    def _tokens_at(self, moment: float) -> float:
        if moment <= self._updated:
            return self._tokens
        return min(self.rate.burst, self._tokens + (moment - self._updated) * self.rate.per_second)

    def available_at(self, now: float) -> float:
        """Earliest time a token is free, given the reservations already made."""
        start = max(now, self._updated)
        tokens = self._tokens_at(start)
        if tokens >= 1:
            return start
        return start + (1 - tokens) / self.rate.per_second

    def take(self, at: float) -> None:
        """Reserve one token for time ``at`` (not before :meth:`available_at`).

        The balance may go negative: that is a queued reservation.
        """
        moment = max(at, self._updated)
        self._tokens = self._tokens_at(moment) - 1
        self._updated = moment

    def is_idle(self, now: float) -> bool:
        """True when the bucket is full again, so forgetting it changes nothing."""
        return now >= self._updated and self._tokens_at(now) >= self.rate.burst


class SendLimiter:
    """Buckets per instance and per (instance, chat), created on first use.

    A send waits for its chat's bucket, then for its instance's bucket.
    """

    def __init__(self, per_instance: Rate | None, per_chat: Rate | None) -> None:
        self.per_instance = per_instance
        self.per_chat = per_chat
        self._instances: dict[str, TokenBucket] = {}
        self._chats: dict[tuple[str, str], TokenBucket] = {}

    def reserve_chat(self, instance: str, chat: str | None, now: float) -> float:
        """Reserve a send in ``chat`` of ``instance``; returns the wait in seconds.

        Callers wait for the chat first and only then call :meth:`reserve_instance`: a
        reservation moves a bucket's clock to the reserved moment, so charging the instance
        bucket for a send queued behind a busy chat would hold up every other chat.
        """
        if self.per_chat is None or chat is None:
            return 0.0
        return self._reserve(self._bucket(self._chats, (instance, chat), self.per_chat, now), now)

    def reserve_instance(self, instance: str, now: float) -> float:
        """Reserve a send for ``instance``; returns the wait in seconds."""
        if self.per_instance is None:
            return 0.0
        bucket = self._bucket(self._instances, instance, self.per_instance, now)
        return self._reserve(bucket, now)

    def reserve_if_free(self, instance: str, chat: str | None, now: float) -> bool:
        """Reserve a send in ``chat`` of ``instance`` if neither bucket makes it wait.

        Returns False, reserving nothing, when either would: the caller then queues as usual
        with :meth:`reserve_chat` and :meth:`reserve_instance`.
        """
        buckets: list[TokenBucket] = []
        if self.per_chat is not None and chat is not None:
            buckets.append(self._bucket(self._chats, (instance, chat), self.per_chat, now))
        if self.per_instance is not None:
            buckets.append(self._bucket(self._instances, instance, self.per_instance, now))
        if any(bucket.available_at(now) > now for bucket in buckets):
            return False
        for bucket in buckets:
            bucket.take(now)
        return True

    @staticmethod
    def _reserve(bucket: TokenBucket, now: float) -> float:
        at = bucket.available_at(now)
        bucket.take(at)
        return at - now

    def forget_idle(self, now: float) -> int:
        """Drop full buckets (they would behave exactly like new ones); returns how many."""
        dropped = 0
        for name in [k for k, b in self._instances.items() if b.is_idle(now)]:
            del self._instances[name]
            dropped += 1
        for chat in [k for k, b in self._chats.items() if b.is_idle(now)]:
            del self._chats[chat]
            dropped += 1
        return dropped

    @staticmethod
    def _bucket(table: dict[_K, TokenBucket], key: _K, rate: Rate, now: float) -> TokenBucket:
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(rate, now)
        return bucket
