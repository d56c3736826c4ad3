"""Ingest as one running thing: subscriptions, pipeline and spool, started and stopped together.

``zapflow ingest`` runs it alone; ``zapflow run`` will run it beside the other stages
(construct :class:`IngestService`, ``await start()``, later ``await stop()``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from worker.fleet.roster import RunningSubscription, SubscriptionRoster
from worker.ingest.config import IngestConfig, InstanceConfig
from worker.ingest.discovery import discover
from worker.ingest.envelope import Subscriber
from worker.ingest.ids import UlidGenerator
from worker.ingest.producer import EventPipeline
from worker.ingest.spool import Spool
from worker.ingest.stats import IngestStats, SubscriptionState
from worker.ingest.subscription import Subscription, subscription_options, subscription_url
from worker.stopping import StopBudget
from worker.tasks import cancel_and_wait, end_within

log = logging.getLogger("zapflow.ingest")

#: How long a stopped subscription may read on until the gateway answers its close frame.
CLOSE_GRACE_S = 5.0


def status_line(config: IngestConfig, kafka_reached: bool, spool_depth: int) -> str:
    """The line printed at start: what is subscribed, where it goes."""
    subs = len(config.subscriptions())
    broker = config.kafka.bootstrap_servers + ("" if kafka_reached else " (not reachable yet)")
    spool = f", {spool_depth} events in the spool to send first" if spool_depth else ""
    return (
        f"ingest: {subs} subscriptions ({len(config.instances)} instances) to "
        f"{config.gateway_url}; Kafka {broker}; topics {config.kafka.topic_prefix}* "
        f"({len(config.topics())}){spool}"
    )


def summary_line(
    stats: IngestStats,
    received_before: int,
    interval: float,
    latency_before: list[int] | None = None,
) -> str:
    """The periodic one-line summary (rate and latency over the last interval)."""
    counts = stats.count_states()
    rate = (stats.received - received_before) / interval if interval > 0 else 0.0
    p99 = stats.produce_latency.quantile(0.99, since=latency_before)
    latency = f", p99 produce {p99 * 1000:.0f}ms" if p99 is not None and p99 != float("inf") else ""
    return (
        f"ingest: {rate:.0f} events/s; subscriptions {counts[SubscriptionState.OPEN]} open, "
        f"{counts[SubscriptionState.CONNECTING]} connecting, {counts[SubscriptionState.BACKOFF]} "
        f"in backoff, {counts[SubscriptionState.AUTH_FAILED]} auth-failed; "
        f"{stats.produced} produced, {stats.invalid_frames} invalid; "
        f"Kafka {stats.mode}, spool {stats.spool_depth}{latency}"
    )


class IngestService:
    """All subscriptions of one configuration, feeding one pipeline."""

    def __init__(
        self,
        config: IngestConfig,
        stats: IngestStats | None = None,
        output: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.stats = stats or IngestStats()
        self._output = output
        self._ids = UlidGenerator()
        self._spool: Spool | None = None
        self.pipeline: EventPipeline | None = None
        self.subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._summary_task: asyncio.Task[None] | None = None
        self._count_frames_task: asyncio.Task[None] | None = None
        self._handshake_locks: dict[str, asyncio.Lock] = {}
        self.roster: SubscriptionRoster | None = None

    async def start(self, kafka_timeout: float = 10.0) -> None:
        """Open the spool, reach Kafka (or start spooling), start every subscription.

        Raises:
            worker.ingest.discovery.DiscoveryError: ``gateway.discover`` is on and the
                gateway did not list its instances.
        """
        self.config = config = await discover(self.config)
        self._spool = Spool(config.spool.path, config.spool.max_bytes)
        if self._spool.depth:
            log.info(
                "spool %s holds %d events from a previous run; they are sent first",
                config.spool.path,
                self._spool.depth,
            )
        self.pipeline = EventPipeline(
            config.kafka,
            config.topics(),
            self._spool,
            self.stats,
            spool_warn_ratio=config.spool.warn_ratio,
        )
        reached = await self.pipeline.start(connect_timeout=kafka_timeout)
        if self._output is not None:
            self._output(status_line(config, reached, self.stats.spool_depth))
        # Which subscriptions run is the roster's call (all of them, unless
        # ingest.ownership shares them out among several processes).
        self.roster = SubscriptionRoster(self, config.ownership)
        await self.roster.start()
        loop = asyncio.get_running_loop()
        self._count_frames_task = loop.create_task(self._count_frames())
        if self._output is not None:
            self._summary_task = loop.create_task(self._summaries())

    # --- the roster's hooks (worker/fleet/roster.py decides which subscriptions run) ---
    def start_subscription(self, instance: InstanceConfig, event: str) -> Subscription:
        assert self.pipeline is not None
        config = self.config
        subscriber = Subscriber(
            instance.name, event, config.gateway_host, config.kafka.topic_prefix
        )
        sub = Subscription(
            subscriber,
            subscription_url(config.gateway_url, event, instance.token.reveal()),
            self.pipeline.accept,
            self.stats.subscription(instance.name, event),
            handshake_lock=self._handshake_locks.setdefault(instance.name, asyncio.Lock()),
            policy=config.reconnect,
            ids=self._ids,
            room=self.pipeline.room,
            **subscription_options(config),
        )
        self.subscriptions.append(sub)
        task = asyncio.get_running_loop().create_task(sub.run(), name=f"subscription {sub.name}")
        self._tasks.append(task)
        return sub

    def running_subscriptions(self) -> dict[tuple[str, str], Subscription]:
        return {
            (sub.subscriber.instance, sub.subscriber.event): sub
            for sub, task in zip(self.subscriptions, self._tasks, strict=True)
            if not task.done()
        }

    async def stop_subscription(
        self, key: tuple[str, str], which: RunningSubscription | None = None
    ) -> None:
        for i, sub in enumerate(self.subscriptions):
            if (sub.subscriber.instance, sub.subscriber.event) == key and (
                which is None or which is sub
            ):
                task = self._tasks[i]
                del self.subscriptions[i], self._tasks[i]
                sub.stop()  # reads what the gateway sent until it answers the close
                await end_within(CLOSE_GRACE_S, task)
                return

    def reload(self, config: IngestConfig) -> tuple[list[str], list[str]]:
        """Take a re-read configuration's instances; returns the names (added, removed)."""
        assert self.roster is not None
        return self.roster.reload(config)

    # --- end of the roster's hooks ---

    async def _count_frames(self) -> None:
        # The totals are sums over subscriptions; keep them current for readers.
        while True:
            await asyncio.sleep(0.2)
            self._sync_totals()

    def _sync_totals(self) -> None:
        subs = self.stats.subscriptions.values()
        self.stats.received = sum(s.frames for s in subs)
        self.stats.invalid_frames = sum(s.invalid_frames for s in subs)

    async def _summaries(self) -> None:
        interval = self.config.summary_interval
        before = self.stats.received
        latency_before = list(self.stats.produce_latency.counts)
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            self._sync_totals()
            if self._output is not None:
                self._output(summary_line(self.stats, before, now - last, latency_before))
            before, last = self.stats.received, now
            latency_before = list(self.stats.produce_latency.counts)

    async def stop(self, budget: StopBudget | None = None) -> None:
        """Stop reading, flush to Kafka, spool what is still in flight.

        ``budget``: the worker's wait for Kafka during its stop, shared with the other stages
        (``zapflow run``; see :meth:`EventPipeline.close`).
        """
        if self.roster is not None:
            # With ownership: leave the group first and keep reading for the grace
            # period, so the processes taking over have opened their sockets.
            await self.roster.leave()
            await self.roster.close()
        for sub in self.subscriptions:
            sub.stop()
        # Each subscription reads until the gateway has answered its close frame.
        await end_within(CLOSE_GRACE_S, *self._tasks)
        self._tasks.clear()
        extras = (self._summary_task, self._count_frames_task)
        await cancel_and_wait(*(extra for extra in extras if extra is not None), reraise=True)
        self._sync_totals()
        if self.pipeline is not None:
            await self.pipeline.close(budget)
        log.info(
            "ingest stopped: %d received, %d produced, %d in the spool",
            self.stats.received,
            self.stats.produced,
            self.stats.spool_depth,
        )
