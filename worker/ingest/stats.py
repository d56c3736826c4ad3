"""Counters and states of a running ingest, for the summary line, status and metrics.

Plain mutable objects written by the event loop and read by whoever reports; no locks
are needed because everything runs on one loop.
"""

from __future__ import annotations

import bisect
import enum
import time
from dataclasses import dataclass, field


class SubscriptionState(enum.StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    BACKOFF = "backoff"
    AUTH_FAILED = "auth_failed"
    STOPPED = "stopped"


@dataclass
class SubscriptionStats:
    instance: str
    event: str
    #: Where the subscription is (:attr:`state`; setting it to a new one sets :attr:`since`).
    _state: SubscriptionState = field(default=SubscriptionState.CONNECTING, init=False)
    #: Id of the open connection, if any.
    connection: str | None = None
    #: Connections opened (the first one included).
    connects: int = 0
    #: Times an open connection ended and a new one was sought.
    reconnects: int = 0
    #: Handshakes refused with 401.
    auth_failures: int = 0
    #: Connection attempts that failed for other reasons.
    connect_failures: int = 0
    #: Silent subscriptions re-established make-before-break.
    resubscribes: int = 0
    #: Failures in a row behind the current backoff (short-lived connections count).
    failures_in_a_row: int = 0
    #: Delays waited before reconnecting, most recent last (bounded).
    delays: list[float] = field(default_factory=list)
    frames: int = 0
    invalid_frames: int = 0
    #: Wall-clock time (epoch seconds) the current state began.
    since: float | None = None
    #: Wall-clock time (epoch seconds) of the last frame received.
    last_frame_at: float | None = None

    # A property rather than a __setattr__ hook: the counters above change on every frame,
    # and a hook made each of those assignments a Python call (3 % of ingest's CPU).
    @property
    def state(self) -> SubscriptionState:
        return self._state

    @state.setter
    def state(self, value: SubscriptionState) -> None:
        if value != self._state:
            self.since = time.time()
        self._state = value

    def record_delay(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) > 50:
            del self.delays[:-50]


#: Upper bounds (seconds) of the produce-latency histogram buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass
class LatencyHistogram:
    """Receive-to-acknowledgement time of produced events, in fixed buckets."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += 1
        self.sum += seconds

    def quantile(self, q: float, since: list[int] | None = None) -> float | None:
        """Upper bound of the bucket holding the q-quantile (``inf`` past the last).

        Args:
            q: the quantile, e.g. 0.99.
            since: an earlier copy of :attr:`counts`; only what was observed after it counts.
        """
        counts = self.counts
        if since is not None:
            counts = [a - b for a, b in zip(self.counts, since, strict=True)]
        total = sum(counts)
        if not total:
            return None
        target = q * total
        seen = 0
        for i, count in enumerate(counts):
            seen += count
            if seen >= target:
                return LATENCY_BUCKETS[i] if i < len(LATENCY_BUCKETS) else float("inf")
        return float("inf")


@dataclass
class IngestStats:
    """Everything the summary line and the metrics endpoint show about ingest."""

    subscriptions: dict[tuple[str, str], SubscriptionStats] = field(default_factory=dict)
    #: Frames received (valid and invalid).
    received: int = 0
    #: Records acknowledged by Kafka (events and invalid frames, direct and from the spool).
    produced: int = 0
    invalid_frames: int = 0
    #: Records written to the spool, ever.
    spooled: int = 0
    #: Records delivered from the spool.
    drained: int = 0
    #: Records lost because the spool was full.
    spool_dropped: int = 0
    spool_depth: int = 0
    spool_bytes: int = 0
    #: "direct" (events go to Kafka) or "spooling" (Kafka is away, events go to disk).
    mode: str = "spooling"
    #: Records a produce attempt failed to deliver (a record retried from the spool counts
    #: once per failed try).
    produce_errors: int = 0
    produce_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def subscription(self, instance: str, event: str) -> SubscriptionStats:
        key = (instance, event)
        stats = self.subscriptions.get(key)
        if stats is None:
            stats = self.subscriptions[key] = SubscriptionStats(instance, event)
        return stats

    def count_states(self) -> dict[SubscriptionState, int]:
        counts = dict.fromkeys(SubscriptionState, 0)
        for sub in self.subscriptions.values():
            counts[sub.state] += 1
        return counts
