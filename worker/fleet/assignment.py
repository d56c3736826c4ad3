"""Which partition of the control topic stands for a subscription, and who holds it.

Every (instance, event) hashes to one partition of ``<prefix>subscriptions``; the process
that the consumer group assigns a partition to owns every subscription hashing to it.
The hash must be the same in every process and every Python run, hence CRC-32 of
``"instance|event"`` rather than :func:`hash` (which is salted per process).

:func:`plan_assignment` is what the group leader runs at each rebalance. It balances
the number of *subscriptions* (not partitions: 280 keys over 64 partitions give
partitions of 0 to 10 keys) and is sticky: a partition stays with its previous holder
while that keeps the holder within its fair share, so a process joining or leaving moves
only the subscriptions it must.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping

#: A subscription: (instance name, event name).
SubscriptionKey = tuple[str, str]


def subscription_partition(instance: str, event: str, partitions: int) -> int:
    """The control-topic partition that stands for this subscription."""
    return zlib.crc32(f"{instance}|{event}".encode()) % partitions


def partition_weights(keys: Iterable[SubscriptionKey], partitions: int) -> dict[int, int]:
    """How many of ``keys`` each partition stands for (every partition listed, 0 included)."""
    weights = dict.fromkeys(range(partitions), 0)
    for instance, event in keys:
        weights[subscription_partition(instance, event, partitions)] += 1
    return weights


def plan_assignment(
    weights: Mapping[int, int],
    members: Iterable[str],
    previous: Mapping[str, Iterable[int]] | None = None,
) -> dict[str, frozenset[int]]:
    """Give every partition to exactly one member, balancing subscriptions, keeping holders.

    Args:
        weights: every partition and the number of subscriptions it stands for.
        members: the members of the group (any order; the result does not depend on it).
        previous: what each member held before this rebalance, as it reported.

    Returns:
        Each member's partitions. Balance: the heaviest member carries at most one
        partition's weight more than the lightest, except where keeping a holder's
        partitions is worth it (never past its fair share, rounded up).
    """
    names = sorted(set(members))
    if not names:
        return {}
    previous = previous or {}
    total = sum(weights.values())
    fair = math.ceil(total / len(names))
    fair_count = math.ceil(len(weights) / len(names))
    # The holder of a partition before: the first (by name) of the members that claim it,
    # so two members claiming one partition (a stale report) cannot both keep it.
    holder: dict[int, str] = {}
    for name in names:
        for partition in sorted(previous.get(name, ())):
            if partition in weights:
                holder.setdefault(partition, name)

    load = dict.fromkeys(names, 0)
    count = dict.fromkeys(names, 0)
    plan: dict[str, set[int]] = {name: set() for name in names}
    # Heaviest first: the placement of big partitions decides the balance.
    order = sorted(weights, key=lambda p: (-weights[p], p))
    rest: list[int] = []
    for partition in order:
        weight = weights[partition]
        kept = holder.get(partition)
        if kept is not None and (
            load[kept] + weight <= fair if weight else count[kept] < fair_count
        ):
            plan[kept].add(partition)
            load[kept] += weight
            count[kept] += 1
        else:
            rest.append(partition)
    for partition in rest:
        name = min(names, key=lambda n: (load[n], count[n], n))
        plan[name].add(partition)
        load[name] += weights[partition]
        count[name] += 1
    return {name: frozenset(parts) for name, parts in plan.items()}


def contested(
    plan: Mapping[str, Iterable[int]],
    owned: Mapping[str, Iterable[int]],
    releasing: Mapping[str, Iterable[int]] | None = None,
) -> dict[str, frozenset[int]]:
    """Per member, the planned partitions whose socket it must replace with a new one.

    ``owned`` and ``releasing`` are what each member reported holding when it joined.
    The gateway sends to the newest socket of a key, so the planned holder must open a
    new socket (even if it kept one) when:

    * another member also reported owning the partition (a member that missed a
      generation and still believes it owns it: whose socket is newer is unknown); or
    * the planned holder did not own it and another member still has a socket open for
      it (the planned holder's kept socket, if any, may be the older one).

    A member that owned a partition and keeps it renews nothing because of members that
    are only releasing it: their sockets are older than its own.
    """
    releasing = releasing or {}
    owners: dict[int, set[str]] = {}
    holders: dict[int, set[str]] = {}
    for name, parts in owned.items():
        for partition in parts:
            owners.setdefault(partition, set()).add(name)
            holders.setdefault(partition, set()).add(name)
    for name, parts in releasing.items():
        for partition in parts:
            holders.setdefault(partition, set()).add(name)
    result = {}
    for name, parts in plan.items():
        mine = set(owned.get(name, ()))
        result[name] = frozenset(
            p
            for p in parts
            if owners.get(p, set()) - {name} or (p not in mine and holders.get(p, set()) - {name})
        )
    return result


def owned_keys(
    keys: Iterable[SubscriptionKey], partitions: Iterable[int], partition_count: int
) -> set[SubscriptionKey]:
    """The subscriptions among ``keys`` that the given partitions stand for."""
    held = set(partitions)
    return {
        (instance, event)
        for instance, event in keys
        if subscription_partition(instance, event, partition_count) in held
    }
