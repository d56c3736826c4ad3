"""What a process holds: owned partitions and partitions it is letting go of.

Make-before-break: when a partition is taken away from a process that is still alive,
the new holder opens its sockets at once and the gateway sends only to the newest
socket per key. The old holder keeps its sockets open for a grace period, so every
event sent before the new socket opened still arrives (and is produced), and closes them
when the grace period ends. If the partition comes back within the grace period, as it
does for most partitions in an eager rebalance (every partition is revoked, then most are
handed back), the process keeps its socket and nothing happens at all.

The state is a frozen value; each transition returns a new one. Time is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType


class Holding(enum.StrEnum):
    OWNED = "owned"
    #: No longer ours; the socket stays open until the grace period ends.
    RELEASING = "releasing"


@dataclass(frozen=True)
class Hold:
    holding: Holding
    #: When the socket of a releasing partition is closed (monotonic seconds).
    release_at: float | None = None


def _frozen(holds: Mapping[int, Hold]) -> Mapping[int, Hold]:
    return MappingProxyType(dict(holds))


@dataclass(frozen=True)
class Handover:
    """The partitions one process holds, and for how long the releasing ones stay."""

    grace: float
    holds: Mapping[int, Hold] = field(default_factory=lambda: _frozen({}))
    #: Partitions handed back while still releasing (socket kept), ever.
    reacquired: int = 0
    #: Partitions whose grace period ended (socket closed), ever.
    released: int = 0

    def owned(self) -> frozenset[int]:
        return frozenset(p for p, h in self.holds.items() if h.holding is Holding.OWNED)

    def releasing(self) -> frozenset[int]:
        return frozenset(p for p, h in self.holds.items() if h.holding is Holding.RELEASING)

    def held(self) -> frozenset[int]:
        """Partitions whose subscriptions should run: owned or releasing."""
        return frozenset(self.holds)

    def revoke(self, partitions: Iterable[int], now: float) -> Handover:
        """These partitions are no longer ours: keep their sockets for the grace period."""
        holds = dict(self.holds)
        for partition in partitions:
            hold = holds.get(partition)
            if hold is not None and hold.holding is Holding.OWNED:
                holds[partition] = Hold(Holding.RELEASING, now + self.grace)
        return replace(self, holds=_frozen(holds))

    def revoke_all(self, now: float) -> Handover:
        """Leaving the group (shutdown): everything owned starts its grace period."""
        return self.revoke(self.owned(), now)

    def assign(self, partitions: Iterable[int], now: float) -> Handover:
        """The group's new assignment for this process, complete.

        Owned partitions missing from it are revoked (the group may say so without a
        separate revocation); releasing ones in it are ours again, socket kept.
        """
        assigned = frozenset(partitions)
        state = self.revoke(self.owned() - assigned, now)
        holds = dict(state.holds)
        reacquired = state.reacquired
        for partition in assigned:
            hold = holds.get(partition)
            if hold is not None and hold.holding is Holding.RELEASING:
                reacquired += 1
            holds[partition] = Hold(Holding.OWNED)
        return replace(state, holds=_frozen(holds), reacquired=reacquired)

    def expire(self, now: float) -> Handover:
        """Drop the releasing partitions whose grace period has ended."""
        ended = [
            p
            for p, h in self.holds.items()
            if h.holding is Holding.RELEASING and h.release_at is not None and h.release_at <= now
        ]
        if not ended:
            return self
        holds = {p: h for p, h in self.holds.items() if p not in ended}
        return replace(self, holds=_frozen(holds), released=self.released + len(ended))

    def next_release(self) -> float | None:
        """When the next grace period ends, if any partition is releasing."""
        times = [h.release_at for h in self.holds.values() if h.release_at is not None]
        return min(times) if times else None
