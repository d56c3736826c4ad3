"""Reconnect delays: exponential backoff with full jitter, reset after a stable connection.

Pure: the caller passes the random number and the measured uptime, so the schedule can
be tested exactly. Full jitter (delay uniform in [0, min(cap, first * factor**n)])
spreads thousands of subscriptions that lost the gateway at the same moment.

The websockets client's own reconnect iterator resets its backoff whenever a connection
opens, and raises on a 401, so a gateway that accepts and drops at once would be hit in
a tight loop and a bad token would end the subscription; this policy counts a short-lived
connection as a failure instead, and handles 401 with its own slow retry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a subscription waits between connection attempts."""

    #: Upper bound of the first delay (the gateway's own docs suggest 5 s).
    first_delay: float = 5.0
    #: No delay is ever longer than this.
    max_delay: float = 60.0
    #: Growth of the upper bound per consecutive failure.
    factor: float = 2.0
    #: A connection that stayed up this long resets the schedule.
    stable_after: float = 30.0

    def bound(self, failures: int) -> float:
        """Upper bound of the delay after ``failures`` consecutive failures (1-based)."""
        exponent = max(failures - 1, 0)
        # Avoid float overflow for subscriptions that have failed for days.
        if exponent > 64:
            return self.max_delay
        return min(self.max_delay, self.first_delay * self.factor**exponent)

    def delay(self, failures: int, random: float) -> float:
        """Full-jitter delay: ``random`` (in [0, 1)) times the bound."""
        return self.bound(failures) * random

    def auth_delay(self, random: float) -> float:
        """Delay after a refused handshake (401): near the cap, a tenth of it jittered.

        A refused token will not fix itself in seconds; retrying slowly keeps the log
        and the gateway quiet while still picking up a token fixed on the gateway side.
        """
        return self.max_delay * (0.9 + 0.1 * random)


@dataclass(frozen=True)
class BackoffState:
    """Consecutive failures of one subscription."""

    failures: int = 0

    def after_failure(self) -> BackoffState:
        """A connection attempt failed (refused, timed out, network error)."""
        return BackoffState(self.failures + 1)

    def after_connection(self, uptime: float, policy: ReconnectPolicy) -> BackoffState:
        """A connection that opened has ended after ``uptime`` seconds.

        Short-lived connections count as failures, so a gateway that accepts and drops
        at once is retried with growing delays rather than in a tight loop.
        """
        if uptime >= policy.stable_after:
            return BackoffState(1)
        return BackoffState(self.failures + 1)
