"""The Faust app of the processing stage: three agents, two tables, a tick and a reload loop.

- ``evaluate_events`` reads the event topics the rules listen to and emits action records,
  and sends the events of rekeyed rules on to the ``<app id>-rekeyed`` topic, keyed by the
  rule's key (see :mod:`worker.process.keys`);
- ``evaluate_rekeyed`` reads that topic and evaluates the rekeyed rules, with the same state
  table, and emits their action records;
- ``fire_timers`` reads one tick per partition per second from the ``<app id>-ticks`` topic,
  so due ``for`` / ``resolve_when`` deadlines fire with no new event, from inside an event of
  the right partition (a Faust table can only be written from inside a stream, and its
  RocksDB store writes to the partition of the current event);
- ``rule-state`` holds the engine's state, ``seen-messages`` the recently delivered gateway
  message ids; both are backed by compacted changelog topics and co-partitioned with the
  event topics (``instance:chat``, ``instance:group``, ``instance``) and with the repartition
  topic, so a key's state is always written from the partition that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import faust

from worker.batching import use_broker_batching
from worker.consumer import use_gapless_consumer
from worker.events import actions_topic, event_topic
from worker.process.acks import DeliveryAcks
from worker.process.batches import EventBatch, handle_in_batches
from worker.process.engine import ActionRecordLike, RulesEngine
from worker.process.forward import Forward, rekeyed_topic_name
from worker.process.reload import RulesWatcher
from worker.process.runtime import EventProcessor, StateNotWritten
from worker.process.settings import ProcessSettings
from worker.streaming import QuietMonitor

log = logging.getLogger("zapflow.process")

#: Backoff before evaluating again an event whose state could not be written.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


def tick_topic_name(app_id: str) -> str:
    """The worker's own topic of timer ticks, one partition per state partition."""
    return f"{app_id}-ticks"


def unsubscribed(events: frozenset[str], subscribed: Sequence[str]) -> list[str]:
    """Events a reloaded bundle listens to that this worker does not consume."""
    return sorted(events - set(subscribed))


def faust_settings(settings: ProcessSettings) -> dict[str, Any]:
    """The ``faust.App`` keyword arguments for these settings."""
    brokers = [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")]
    return {
        "broker": brokers,
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_disable_leader": True,
        "web_enabled": False,
        "consumer_auto_offset_reset": "earliest",
        # No standby replicas: a partition promoted from standby to active could hang its
        # recovery for good ("No event received for active tp ... since recovery start"),
        # found by the fleet chaos test in a rolling restart. A new owner replays the
        # (compacted) changelog instead.
        "table_standby_replicas": 0,
        # Every message event writes at least one changelog record (the message id) and
        # often a state change and an action: batch them (kafka-and-faust.md §5).
        "producer_linger": 0.005,
        "producer_max_batch_size": 262_144,
        "Monitor": QuietMonitor,
        **settings.faust,
    }


@dataclass(frozen=True)
class ProcessApp:
    """The app and its parts, for the worker command and for tests."""

    app: faust.App
    processor: EventProcessor
    #: The events whose topics are consumed.
    subscribed: tuple[str, ...]
    evaluate_events: Any
    evaluate_rekeyed: Any
    fire_timers: Any
    state: Any
    seen: Any
    actions: Any
    ticks: Any
    rekeyed: Any
    #: Reload the rules directory now, changed or not (what SIGHUP does).
    request_reload: Callable[[], None]


def build_app(
    settings: ProcessSettings,
    watcher: RulesWatcher,
    engine: RulesEngine,
    *,
    events: Sequence[str] | None = None,
    sighup: bool = True,
) -> ProcessApp:
    """Build the app for the bundle in force; ``events`` overrides the subscribed events.

    The events consumed are fixed for the life of the worker: a reloaded bundle that listens
    to an event this worker does not consume is accepted, and a warning says to restart.
    With ``sighup`` the app takes SIGHUP for a forced rules reload; ``zapflow run`` takes
    the signal itself (it also re-reads instances) and calls ``request_reload``.
    """
    app = faust.App(settings.app_id, **faust_settings(settings))
    use_broker_batching(use_gapless_consumer(app))
    processor = EventProcessor(
        watcher,
        engine,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        tick_interval_s=settings.tick_interval_s,
    )
    subscribed = tuple(sorted(events if events is not None else watcher.current.bundle.events))
    partitions = settings.partitions
    #: Set to reload the rules now (SIGHUP).
    forced = asyncio.Event()
    #: The acking of each agent (see :mod:`worker.process.acks`), once it runs.
    delivery: dict[str, DeliveryAcks] = {}
    #: The events each agent has read ahead (see :mod:`worker.process.batches`).
    batches: dict[str, EventBatch] = {}

    state = app.Table("rule-state", partitions=partitions)
    seen = app.Table("seen-messages", partitions=partitions)
    source = app.topic(
        *(event_topic(name, settings.topic_prefix) for name in subscribed),
        key_serializer="raw",
        value_serializer="raw",
    )
    ticks = app.topic(
        tick_topic_name(settings.app_id),
        partitions=partitions,
        internal=True,
        key_serializer="raw",
        value_serializer="raw",
    )
    # Created even when no rule is rekeyed, so that a reload may bring one in.
    rekeyed = app.topic(
        rekeyed_topic_name(settings.app_id),
        partitions=partitions,
        internal=True,
        key_serializer="raw",
        value_serializer="raw",
    )
    actions = app.topic(
        actions_topic(settings.topic_prefix), key_serializer="raw", value_serializer="raw"
    )

    async def send(record: ActionRecordLike | Forward) -> Any:
        if isinstance(record, Forward):
            # Kafka's partitioner puts every record of one key on one partition.
            return await rekeyed.send(key=record.key.encode(), value=record.to_json())
        return await actions.send(key=record.idempotency_key.encode(), value=record.to_json())

    def failed(record: ActionRecordLike | Forward, exc: BaseException) -> None:
        processor.counters.emit_errors += 1
        if isinstance(record, Forward):
            log.error("%s not produced: Kafka refuses it (%r)", record, exc)
        else:
            log.error("action %s not produced: Kafka refuses it (%r)", record.idempotency_key, exc)

    def acking(stream: Any) -> DeliveryAcks:
        async def ack(events: Sequence[Any]) -> None:
            for event in events:
                await stream.ack(event)

        return DeliveryAcks(send, ack, failed)

    async def until_written(evaluate: Callable[[datetime], Sequence[Any]]) -> Sequence[Any]:
        """``evaluate(now)``, again with backoff for as long as its state cannot be written."""
        delay = RETRY_FIRST_S
        while True:
            try:
                return evaluate(datetime.now(UTC))
            except StateNotWritten as exc:
                processor.counters.state_retries += 1
                log.warning("%s; evaluating it again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def consume(
        stream: Any, kind: str, evaluate: Callable[[Any], Awaitable[Sequence[Any]]]
    ) -> None:
        """Evaluate each event of ``stream`` and emit its records; ack after delivery.

        The events already waiting are read ahead and evaluated in a row
        (:mod:`worker.process.batches`).
        """
        stream = stream.noack()
        acks = delivery[kind] = acking(stream)
        batch = batches[kind] = EventBatch()
        waiting = stream.channel.queue  # the events Faust has handed over, not yet read

        async def handle(event: Any) -> None:
            # Faust's tables (the RocksDB store, the changelog's partition) route by the
            # current event; the stream has read ahead, so it is set to the one in hand.
            stream._set_current_event(event)
            await acks.emit(event.message.tp, event, await evaluate(event))

        try:
            await handle_in_batches(stream.events(), lambda: not waiting.empty(), handle, batch)
        finally:
            await acks.stop()

    @app.agent(source, name="evaluate-events")
    async def evaluate_events(stream: Any) -> None:
        async def evaluate(event: Any) -> Sequence[Any]:
            partition = event.message.partition
            return await until_written(
                partial(processor.process, event.value, partition, state, seen)
            )

        await consume(stream, "events", evaluate)

    @app.agent(rekeyed, name="evaluate-rekeyed")
    async def evaluate_rekeyed(stream: Any) -> None:
        async def evaluate(event: Any) -> Sequence[Any]:
            partition = event.message.partition
            return await until_written(
                partial(processor.process_rekeyed, event.value, partition, state)
            )

        await consume(stream, "rekeyed", evaluate)

    @app.agent(ticks, name="fire-timers")
    async def fire_timers(stream: Any) -> None:
        async def evaluate(event: Any) -> Sequence[Any]:
            tp, now = event.message.tp, datetime.now(UTC)

            def still_ours() -> bool:
                return tp in app.assignor.assigned_actives()

            actions = await processor.tick(tp.partition, state, now, still_ours)
            await processor.forget_old_messages(tp.partition, seen, now.timestamp(), still_ours)
            return actions

        await consume(stream, "ticks", evaluate)

    async def send_ticks() -> None:
        name = ticks.get_topic_name()
        for tp in app.assignor.assigned_actives():
            if tp.topic == name:
                await ticks.send(value=b"", partition=tp.partition)

    async def watch_rules() -> None:
        log.info(
            "rules version %s from %s; consuming %s",
            watcher.current.bundle.version,
            watcher.directory,
            ", ".join(event_topic(name, settings.topic_prefix) for name in subscribed),
        )
        if sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, forced.set)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.reload_interval_s):
                    await forced.wait()
            force = forced.is_set()
            forced.clear()
            if force:
                log.info("SIGHUP: reloading rules from %s", watcher.directory)
            outcome = await asyncio.to_thread(watcher.check, force)
            processor.reloaded(outcome)
            if outcome.status == "swapped":
                missing = unsubscribed(watcher.current.bundle.events, subscribed)
                if missing:
                    log.warning(
                        "rules now listen to %s, which this worker does not consume; "
                        "restart it to subscribe",
                        ", ".join(missing),
                    )

    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        processor.forget_partitions()

    async def on_partitions_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        for acks in delivery.values():
            acks.revoked(revoked)
        for batch in batches.values():
            batch.drop(revoked)

    # mode's signal stubs want a positional-only sender; the call is the documented one.
    app.on_rebalance_complete.connect(cast(Any, on_rebalance_complete))
    app.on_partitions_revoked.connect(cast(Any, on_partitions_revoked))
    app.timer(interval=settings.tick_interval_s)(send_ticks)
    app.task(watch_rules)
    return ProcessApp(
        app,
        processor,
        subscribed,
        evaluate_events,
        evaluate_rekeyed,
        fire_timers,
        state,
        seen,
        actions,
        ticks,
        rekeyed,
        request_reload=forced.set,
    )
