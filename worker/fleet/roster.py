"""Which subscriptions this process runs, kept in step with ownership and configuration.

Without ownership (the default) that is every configured (instance, event). With
``ingest.ownership: kafka`` it is those whose control-topic partition this process owns,
plus those it is releasing (socket kept for the grace period, not reconnected). The
roster compares that with what runs and starts or stops the difference whenever the
group rebalances, a grace period ends, or the configuration is reloaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any, Protocol

from worker.fleet.assignment import SubscriptionKey, partition_weights, subscription_partition
from worker.fleet.config import OwnershipConfig
from worker.fleet.ownership import KafkaOwnership
from worker.ingest.config import IngestConfig, InstanceConfig
from worker.ingest.stats import SubscriptionState, SubscriptionStats

log = logging.getLogger("zapflow.fleet")

#: How long the host waits for a stopping subscription before cancelling it.
STOP_TIMEOUT = 5.0
#: How often releasing subscriptions are checked for a closed connection.
RELEASE_CHECK_INTERVAL = 0.05


class RunningSubscription(Protocol):
    #: Shared by the subscriptions of one key.
    stats: SubscriptionStats
    #: The order of its newest socket's handshake among the process's (0: none yet).
    opened: int
    #: Waiting for its turn to handshake, or handshaking.
    handshaking: bool


class SubscriptionHost(Protocol):
    """What the roster needs from the ingest service."""

    config: IngestConfig

    def start_subscription(self, instance: InstanceConfig, event: str) -> RunningSubscription: ...

    async def stop_subscription(
        self, key: SubscriptionKey, which: RunningSubscription | None = None
    ) -> None:
        """Stop ``which``, or the oldest subscription of ``key`` when it is None."""

    def running_subscriptions(self) -> Mapping[SubscriptionKey, RunningSubscription]: ...


async def _polled(condition: Callable[[], bool], within: float) -> None:
    """Wait until ``condition()`` holds, for at most ``within`` seconds.

    What the roster waits on (a subscription's handshake) changes without an event to wait
    on, so it looks every 20 ms.
    """
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


class SubscriptionRoster:
    """Starts and stops the host's subscriptions so that exactly the right ones run."""

    def __init__(self, host: SubscriptionHost, ownership: OwnershipConfig) -> None:
        self._host = host
        self.ownership: KafkaOwnership | None = None
        if ownership.enabled:
            # A stray handshake of a previous holder ends within its grace period plus
            # the stop timeout of a subscription (at most the open timeout, 5s floor).
            settle = ownership.grace + max(host.config.open_timeout, STOP_TIMEOUT) + 1.0
            self.ownership = KafkaOwnership(
                host.config.kafka, ownership, self._weights, self.reconcile, settle=settle
            )
        self._stopping: set[asyncio.Task[None]] = set()
        #: Keys between the start of their new socket and the stop of the old one.
        self._renewing: set[SubscriptionKey] = set()
        self._watch: asyncio.Task[None] | None = None
        self._left = False

    def _weights(self, partitions: int) -> dict[int, int]:
        keys = [(i.name, e) for i, e in self._host.config.subscriptions()]
        return partition_weights(keys, partitions)

    async def start(self) -> None:
        if self.ownership is None:
            self.reconcile()
            return
        await self.ownership.start()
        self._watch = asyncio.get_running_loop().create_task(self._watch_releasing())

    # --- what should run ------------------------------------------------------------
    def wanted(self) -> tuple[set[SubscriptionKey], set[SubscriptionKey]]:
        """(keys to run and keep reconnecting, keys to keep only while their socket is open)."""
        keys = {(i.name, e) for i, e in self._host.config.subscriptions()}
        own = self.ownership
        if own is None:
            return keys, set()
        owned, releasing = own.state.owned(), own.state.releasing()
        run, keep = set(), set()
        for key in keys:
            partition = subscription_partition(*key, own.partitions)
            if partition in owned:
                run.add(key)
            elif partition in releasing:
                keep.add(key)
        return run, keep

    def reconcile(self) -> None:
        """Start what should run and does not; stop what runs and should not."""
        run, keep = self.wanted()
        running = self._host.running_subscriptions()
        if self._left:
            run, keep = set(), keep | (run & set(running))
        instances = {i.name: i for i in self._host.config.instances}
        started = 0
        for key in sorted(run - set(running)):
            self._host.start_subscription(instances[key[0]], key[1])
            started += 1
        stop = [key for key in running if key not in run and key not in keep]
        for key in stop:
            self._stop(key)
        for key in self._take_renewals(running):
            if key not in self._renewing:
                self._renewing.add(key)
                self._spawn(self._renew(key, running[key]))
        if started or stop:
            log.info(
                "subscriptions: %d started, %d stopped, %d running, %d releasing",
                started,
                len(stop),
                len(running) + started - len(stop),
                len(keep & set(running)),
            )

    def _take_renewals(self, running: Mapping[SubscriptionKey, Any]) -> list[SubscriptionKey]:
        """Running keys whose sockets are starved (ours again after another process's)."""
        own = self.ownership
        if own is None or not own.state.renewals():
            return []
        renew = own.state.renewals()
        own.state = own.state.renewed(renew)
        keys = [k for k in running if subscription_partition(*k, own.partitions) in renew]
        if keys:
            log.info(
                "renewing %d subscriptions (new socket, then the old one closed) so that no "
                "earlier holder's socket stays the live one",
                len(keys),
            )
        return keys

    def _stop(self, key: SubscriptionKey) -> None:
        self._spawn(self._host.stop_subscription(key))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _renew(self, key: SubscriptionKey, old: RunningSubscription) -> None:
        """Make-before-break: open a new socket for the key, then close the older of the two."""
        try:
            await self._replace(key, old)
        finally:
            self._renewing.discard(key)

    async def _replace(self, key: SubscriptionKey, old: RunningSubscription) -> None:
        instances = {i.name: i for i in self._host.config.instances}
        if key[0] not in instances:
            return
        stats = old.stats
        state_now = stats.state  # a local: the state changes while this waits below
        if state_now != SubscriptionState.OPEN:
            # Reconnecting (the gateway restarted, say): its next socket will be the newest,
            # so the live one. A second socket now would race it: whichever of the two
            # handshakes ends last is live, and stopping the old one mid-handshake could
            # close the live socket and leave the new one starved.
            return
        # Open the new socket, then close one of the two: the older. Normally that is the
        # old subscription's. But if the gateway restarted meanwhile, the old one may have
        # reconnected after the new one opened; its socket is then the newest, so the
        # live one, and closing it would leave the key with a starved socket.
        new = self._host.start_subscription(instances[key[0]], key[1])
        within = self._host.config.open_timeout + 1.0
        await _polled(lambda: bool(new.opened), within)
        # One in mid-handshake could be the newest socket once done: let it finish.
        await _polled(lambda: not old.handshaking, within)
        if new.opened and old.opened > new.opened:
            log.info("%s/%s reconnected during its renewal; keeping that socket", *key)
            await self._host.stop_subscription(key, new)
        else:
            await self._host.stop_subscription(key, old)
        if stats.state == SubscriptionState.STOPPED and key in self._host.running_subscriptions():
            # Both share the key's counters; the stopped one's end is not the key's state.
            stats.state = SubscriptionState.OPEN

    async def _watch_releasing(self) -> None:
        """A releasing socket that closes is not reopened: that would take the key back."""
        while True:
            await asyncio.sleep(RELEASE_CHECK_INTERVAL)
            if self.ownership is None or not (self.ownership.state.releasing() or self._left):
                continue
            _, keep = self.wanted()
            if self._left:
                keep = set(self._host.running_subscriptions())
            for key, sub in list(self._host.running_subscriptions().items()):
                if key in self._renewing:
                    continue  # two sockets share the key's counters; _renew decides
                if key in keep and sub.stats.state != SubscriptionState.OPEN:
                    self._stop(key)

    # --- configuration ----------------------------------------------------------------
    def reload(self, config: IngestConfig) -> tuple[list[str], list[str]]:
        """Take the new instance list; returns the instance names (added, removed).

        Only ``instances`` (and their events and tokens) change at runtime; gateway and
        Kafka settings need a restart. A token that changed restarts that instance's
        subscriptions.
        """
        old = {i.name: i for i in self._host.config.instances}
        new = {i.name: i for i in config.instances}
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        changed = [n for n in new if n in old and new[n].token != old[n].token]
        self._host.config = replace(self._host.config, instances=config.instances)
        for key, sub in self._host.running_subscriptions().items():
            if key[0] in changed and key not in self._renewing:
                # A new socket with the new token first, then the old one closed.
                self._renewing.add(key)
                self._spawn(self._renew(key, sub))
        self.reconcile()
        return added, removed

    # --- shutdown -----------------------------------------------------------------------
    async def leave(self) -> None:
        """Hand everything over: leave the group, keep the sockets for the grace period."""
        self._left = True
        if self.ownership is None:
            return
        await self.ownership.leave()
        await self.ownership.wait_released()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.ownership is not None:
            await self.ownership.close()
        if self._stopping:
            await asyncio.wait(set(self._stopping))

    # --- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The ``ownership`` section of ``zapflow status``: who owns every subscription."""
        own = self.ownership
        running = self._host.running_subscriptions()
        keys = sorted((i.name, e) for i, e in self._host.config.subscriptions())
        if own is None:
            return {
                "mode": "none",
                "member": "this process",
                "subscriptions": [
                    {"instance": i, "event": e, "owner": "this process", "here": "owned"}
                    for i, e in keys
                ],
            }
        owned, releasing = own.state.owned(), own.state.releasing()
        rows = []
        for instance, event in keys:
            partition = subscription_partition(instance, event, own.partitions)
            here = "owned" if partition in owned else "releasing" if partition in releasing else "-"
            rows.append(
                {
                    "instance": instance,
                    "event": event,
                    "partition": partition,
                    "owner": own.owner_of(partition) or "?",
                    "here": here,
                    "running": (instance, event) in running,
                }
            )
        return {
            "mode": "kafka",
            "member": own.member,
            "group": own.group,
            "topic": own.topic,
            "members": len(own.fleet),
            "owned_partitions": len(owned),
            "releasing_partitions": len(releasing),
            "owned_subscriptions": sum(1 for r in rows if r["here"] == "owned"),
            "rebalances": own.rebalances,
            "reacquired": own.state.reacquired,
            "released": own.state.released,
            "subscriptions": rows,
        }


def ownership_status(service: Any) -> dict[str, Any]:
    """The ``ownership`` status section of a (possibly not yet started) ingest service."""
    roster = getattr(service, "roster", None)
    if roster is None:
        return {"mode": service.config.ownership.mode, "subscriptions": []}
    status: dict[str, Any] = roster.status()
    return status
