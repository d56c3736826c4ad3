"""The roster against a stand-in host: which subscriptions it starts, keeps and stops."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from tests.helpers import wait_for
from worker.config import Secret
from worker.fleet.assignment import subscription_partition
from worker.fleet.config import OwnershipConfig
from worker.fleet.roster import SubscriptionRoster
from worker.ingest.config import IngestConfig, InstanceConfig
from worker.ingest.stats import SubscriptionState, SubscriptionStats

EVENTS = ("messages.upsert", "connection.update")


def instance(name: str, token: str = "t") -> InstanceConfig:
    return InstanceConfig(name, Secret(token, "${env:T}"), EVENTS)


@dataclass
class FakeSub:
    stats: SubscriptionStats
    opened: int = 0
    handshaking: bool = False


@dataclass
class FakeHost:
    """Like IngestService: one counters object per key, newest subscription wins in
    ``running_subscriptions``, ``stop_subscription`` stops the oldest of a key."""

    config: IngestConfig
    subs: list[tuple[tuple[str, str], FakeSub]] = field(default_factory=list)
    stats: dict[tuple[str, str], SubscriptionStats] = field(default_factory=dict)
    started: list[tuple[str, str]] = field(default_factory=list)
    stopped: list[tuple[str, str]] = field(default_factory=list)

    handshakes: int = 0

    def start_subscription(self, inst: InstanceConfig, event: str) -> FakeSub:
        """A subscription whose first socket opens at once."""
        key = (inst.name, event)
        self.started.append(key)
        stats = self.stats.setdefault(key, SubscriptionStats(*key))
        stats.state = SubscriptionState.OPEN
        stats.connects += 1
        sub = FakeSub(stats, opened=self.handshake())
        self.subs.append((key, sub))
        return sub

    def handshake(self) -> int:
        self.handshakes += 1
        return self.handshakes

    async def stop_subscription(self, key: tuple[str, str], which: Any = None) -> None:
        for i, (k, sub) in enumerate(self.subs):
            if k == key and (which is None or which is sub):
                del self.subs[i]
                self.stopped.append(key)
                return

    def running_subscriptions(self) -> dict[tuple[str, str], Any]:
        return dict(self.subs)

    @property
    def running(self) -> dict[tuple[str, str], Any]:
        return self.running_subscriptions()


def host(*names: str) -> FakeHost:
    return FakeHost(IngestConfig("ws://gw/ws/events", tuple(instance(n) for n in names)))


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_without_ownership_everything_configured_runs() -> None:
    h = host("a", "b")
    roster = SubscriptionRoster(h, OwnershipConfig())
    await roster.start()
    assert sorted(h.running) == sorted((n, e) for n in "ab" for e in EVENTS)
    assert roster.status()["subscriptions"][0]["owner"] == "this process"


async def test_with_ownership_only_the_owned_partitions_run() -> None:
    h = host("a", "b", "c")
    roster = SubscriptionRoster(h, OwnershipConfig(mode="kafka", partitions=4))
    own = roster.ownership
    assert own is not None
    mine = subscription_partition("a", "messages.upsert", 4)
    own.assigned([mine])
    expected = {(n, e) for n in "abc" for e in EVENTS if subscription_partition(n, e, 4) == mine}
    assert set(h.running) == expected
    rows = {(r["instance"], r["event"]): r["here"] for r in roster.status()["subscriptions"]}
    assert {k for k, here in rows.items() if here == "owned"} == expected


async def test_a_revoked_partition_keeps_running_until_its_grace_ends() -> None:
    h = host("a", "b", "c")
    roster = SubscriptionRoster(h, OwnershipConfig(mode="kafka", partitions=4, grace=5.0))
    own = roster.ownership
    assert own is not None
    own.assigned([0, 1, 2, 3])
    everything = set(h.running)
    own.revoked([0, 1, 2, 3])
    own.assigned([0, 1])
    await settle()
    assert set(h.running) == everything  # releasing: sockets kept
    own.state = own.state.expire(10**9)
    roster.reconcile()
    await settle()
    assert set(h.running) == {k for k in everything if subscription_partition(*k, 4) in (0, 1)}


async def test_reload_starts_new_instances_and_stops_removed_ones() -> None:
    h = host("a", "b")
    roster = SubscriptionRoster(h, OwnershipConfig())
    await roster.start()
    added, removed = roster.reload(replace(h.config, instances=(instance("b"), instance("c"))))
    await settle()
    assert (added, removed) == (["c"], ["a"])
    assert sorted(h.running) == sorted((n, e) for n in "bc" for e in EVENTS)


async def test_a_changed_token_restarts_that_instance() -> None:
    h = host("a", "b")
    roster = SubscriptionRoster(h, OwnershipConfig())
    await roster.start()
    roster.reload(replace(h.config, instances=(instance("a", "new"), instance("b"))))
    await settle()
    assert sorted(h.stopped) == [("a", e) for e in sorted(EVENTS)]
    assert sorted(h.running) == sorted((n, e) for n in "ab" for e in EVENTS)
    assert h.started.count(("a", "messages.upsert")) == 2


async def test_a_renewal_replaces_an_open_subscription_and_skips_a_reconnecting_one() -> None:
    h = host("a")
    roster = SubscriptionRoster(h, OwnershipConfig())
    await roster.start()
    key = ("a", EVENTS[0])
    old = h.running[key]

    old.stats.state = SubscriptionState.BACKOFF  # its next socket will be the newest anyway
    await roster._replace(key, old)
    assert h.started.count(key) == 1 and key not in h.stopped

    old.stats.state = SubscriptionState.OPEN
    await roster._replace(key, old)
    assert h.started.count(key) == 2 and h.stopped == [key]
    assert h.running[key] is not old


RENEWED = ("a", EVENTS[0])


async def renew_during_a_handshake(reconnects: bool) -> tuple[FakeHost, FakeSub]:
    """Renew a key whose old subscription is handshaking (the gateway restarted); the
    handshake ends once the new subscription has started, with a socket if ``reconnects``.
    Returns the host and the old subscription."""
    h = host("a")
    roster = SubscriptionRoster(h, OwnershipConfig())
    await roster.start()
    key = RENEWED
    old = h.running[key]
    old.handshaking = True

    async def end_handshake() -> None:
        await wait_for(lambda: h.started.count(key) == 2, timeout=5)
        if reconnects:
            old.opened = h.handshake()
        old.handshaking = False

    later = asyncio.create_task(end_handshake())
    await roster._replace(key, old)
    await later
    assert h.stopped == [key]
    return h, old


async def test_a_renewal_keeps_the_old_socket_when_it_reconnected_after_the_new_one() -> None:
    # The old subscription's handshake ended after the new one's: the old socket is the
    # newest, so the live one.
    h, old = await renew_during_a_handshake(reconnects=True)
    assert h.started.count(RENEWED) == 2
    assert h.running[RENEWED] is old, "the newest socket was closed"


async def test_a_renewal_closes_the_old_socket_when_its_reconnect_failed() -> None:
    h, old = await renew_during_a_handshake(reconnects=False)
    assert h.running[RENEWED] is not old
