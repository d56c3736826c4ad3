"""What a process holds: owned partitions and partitions it is letting go of.

Make-before-break: when a partition is taken away from a process that is still alive,
the new holder opens its sockets at once and the gateway sends only to the newest
socket per key. The old holder keeps its sockets open for a grace period, so every
event sent before the new socket opened still arrives (and is produced), and closes them
when the grace period ends. If the partition comes back in the same rebalance, as most
partitions do in an eager rebalance (every partition is revoked, then most are handed
back), the process keeps its socket and nothing happens at all. If it comes back later,
after another process held it, the kept socket is the older one and the gateway no
longer sends to it: it is replaced by a new one (``renew``).

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
    #: Releasing, and the group gave it to another process: that process's socket is
    #: newer, so the gateway sends to it and ours is starved from then on.
    given_away: bool = False
    #: Owned again after being given away: our kept socket is the starved one and must
    #: be replaced by a new one (the other process closes its own after its grace).
    renew: bool = False
    #: Newly owned: when to replace our socket once more (monotonic seconds), after any
    #: handshake the previous holder still had in flight has surely ended.
    settle_at: float | None = None


def _frozen(holds: Mapping[int, Hold]) -> Mapping[int, Hold]:
    return MappingProxyType(dict(holds))


@dataclass(frozen=True)
class Handover:
    """The partitions one process holds, and for how long the releasing ones stay."""

    grace: float
    #: Delay of the one renewal after an acquisition (0: none). A previous holder that
    #: was still opening a socket when it lost the partition completes that handshake
    #: after ours, and the gateway then sends to its socket, which it closes: ours
    #: would starve. Renewing once after ``grace`` plus the handshake timeout makes
    #: ours the newest for good.
    settle: float = 0.0
    holds: Mapping[int, Hold] = field(default_factory=lambda: _frozen({}))
    #: Partitions handed back while still releasing (socket kept), ever.
    reacquired: int = 0
    #: Partitions whose grace period ended (socket closed), ever.
    released: int = 0

    def owned(self) -> frozenset[int]:
        return frozenset(p for p, h in self.holds.items() if h.holding is Holding.OWNED)

    def releasing(self) -> frozenset[int]:
        return frozenset(p for p, h in self.holds.items() if h.holding is Holding.RELEASING)

    def claim(self) -> tuple[frozenset[int], frozenset[int]]:
        """(owned, releasing) as told to the group leader when joining.

        Rebalances are eager: every partition is revoked before the member joins again,
        so at that moment a partition owned until just now is "releasing" here. For the
        leader it is still owned (our socket is the newest); only partitions already
        given to another member are reported as releasing.
        """
        owned = {p for p, h in self.holds.items() if not h.given_away}
        releasing = {p for p, h in self.holds.items() if h.given_away}
        return frozenset(owned), frozenset(releasing)

    def held(self) -> frozenset[int]:
        """Partitions whose subscriptions should run: owned or releasing."""
        return frozenset(self.holds)

    def revoke(self, partitions: Iterable[int], now: float) -> Handover:
        """These partitions are no longer ours: keep their sockets for the grace period."""
        holds = dict(self.holds)
        for partition in partitions:
            hold = holds.get(partition)
            if hold is not None and hold.holding is Holding.OWNED:
                holds[partition] = replace(
                    hold, holding=Holding.RELEASING, release_at=now + self.grace
                )
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
        settle_at = now + self.settle if self.settle > 0 else None
        for partition in assigned:
            hold = holds.get(partition)
            if hold is None:
                holds[partition] = Hold(Holding.OWNED, settle_at=settle_at)
            elif hold.holding is Holding.RELEASING and hold.given_away:
                reacquired += 1
                holds[partition] = Hold(Holding.OWNED, renew=True, settle_at=settle_at)
            elif hold.holding is Holding.RELEASING:
                reacquired += 1
                holds[partition] = Hold(Holding.OWNED, renew=hold.renew, settle_at=hold.settle_at)
            else:
                holds[partition] = hold
        for partition, hold in holds.items():
            if hold.holding is Holding.RELEASING and not hold.given_away:
                holds[partition] = replace(hold, given_away=True)
        return replace(state, holds=_frozen(holds), reacquired=reacquired)

    def renew(self, partitions: Iterable[int]) -> Handover:
        """Another process may have a newer socket on these: ours must be replaced."""
        holds = dict(self.holds)
        for partition in partitions:
            hold = holds.get(partition)
            if hold is not None and hold.holding is Holding.OWNED:
                holds[partition] = replace(hold, renew=True)
        return replace(self, holds=_frozen(holds))

    def renewals(self) -> frozenset[int]:
        """Owned partitions whose kept sockets are starved and must be replaced."""
        return frozenset(p for p, h in self.holds.items() if h.renew)

    def renewed(self, partitions: Iterable[int]) -> Handover:
        """The sockets of these partitions have been replaced."""
        holds = dict(self.holds)
        for partition in partitions:
            hold = holds.get(partition)
            if hold is not None and hold.renew:
                holds[partition] = replace(hold, renew=False)
        return replace(self, holds=_frozen(holds))

    def expire(self, now: float) -> Handover:
        """Drop the releasing partitions whose grace period has ended; ask for the
        renewals whose time has come."""
        ended = [
            p
            for p, h in self.holds.items()
            if h.holding is Holding.RELEASING and h.release_at is not None and h.release_at <= now
        ]
        settled = [
            p
            for p, h in self.holds.items()
            if h.holding is Holding.OWNED and h.settle_at is not None and h.settle_at <= now
        ]
        if not ended and not settled:
            return self
        holds = {p: h for p, h in self.holds.items() if p not in ended}
        for partition in settled:
            holds[partition] = replace(holds[partition], renew=True, settle_at=None)
        return replace(self, holds=_frozen(holds), released=self.released + len(ended))

    def next_release(self) -> float | None:
        """When the next grace period ends or renewal is due, if any."""
        times = [
            t
            for h in self.holds.values()
            for t in (h.release_at, h.settle_at if h.holding is Holding.OWNED else None)
            if t is not None
        ]
        return min(times) if times else None
