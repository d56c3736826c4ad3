"""From records to Kafka, or to the disk spool while Kafka is away.

Two modes:

* **direct**: records are gathered into one batch per partition
  (:mod:`worker.ingest.batches`) and the batches handed to one idempotent aiokafka
  producer (``acks=all``) without waiting for their acknowledgements.
* **spooling**: Kafka failed a send, or has not acknowledged anything for
  ``delivery_timeout``: new records go to the :class:`~worker.ingest.spool.Spool`.
  Records already handed to the producer stay there (they are delivered when the broker
  returns, so they are not duplicated); if they fail they join the spool. Once nothing
  is in flight, the spool drains oldest first in batches; its last partial batch is
  handed to the producer ahead of new events and the mode returns to direct (spooled
  records leave the disk only when Kafka has acknowledged them). Ingest also starts in this mode, so a spool left by a previous run drains
  before new records and a broker that is down at start costs nothing.

Every record carries an ingest sequence number, given when it was received, and the
spool is ordered by it, so records that failed in flight drain before later ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from worker.ingest.batches import OpenBatch, PartitionBatches
from worker.ingest.config import KafkaConfig
from worker.ingest.envelope import KafkaRecord
from worker.ingest.spool import Spool, SpoolFull
from worker.ingest.stats import IngestStats
from worker.stopping import StopBudget, close_producer_now
from worker.tasks import cancel_and_wait

log = logging.getLogger("zapflow.ingest")

DIRECT: Final = "direct"
SPOOLING: Final = "spooling"
#: Records waiting for the producer beyond this mean it is stuck: spool instead.
QUEUE_LIMIT: Final = 100_000
#: Records waiting for Kafka (queued and unacknowledged) above which the subscriptions pause
#: reading, and below which they resume. While Kafka acknowledges, a backlog is better left
#: in the gateway's socket buffers than spooled: spooling a live backlog costs a disk write
#: per event and, under sustained load, never catches up. A Kafka that stops acknowledging
#: still switches to the spool (delivery_timeout), which resumes reading.
HIGH_WATER: Final = 20_000
LOW_WATER: Final = 5_000
#: Spool buffer size that triggers an immediate write.
SPOOL_WRITE_BATCH: Final = 2_000
DRAIN_BATCH: Final = 2_000
TICK: Final = 0.1


def producer_settings(config: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer`` (and, minus the producer-only ones,
    for the admin client)."""
    tuning = config.producer
    settings: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": "zapflow-ingest",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": tuning.linger_ms,
        "max_batch_size": tuning.max_batch_size,
        "compression_type": None if tuning.compression == "none" else tuning.compression,
        "request_timeout_ms": int(tuning.request_timeout * 1000),
        "retry_backoff_ms": 200,
    }
    settings.update(security_settings(config))
    return settings


def security_settings(config: KafkaConfig) -> dict[str, Any]:
    """The aiokafka keyword arguments of ``kafka.security``."""
    from worker.kafka_security import client_settings

    return client_settings(config.security)


async def ensure_topics(config: KafkaConfig, topics: list[str]) -> list[str]:
    """Create the topics that are missing; returns the names created.

    Ingest keeps no state, so it does not check the partition count of existing topics.
    """
    from worker import topics as kafka_topics

    return await kafka_topics.ensure_topics(
        config.bootstrap_servers,
        topics,
        partitions=config.partitions,
        replication_factor=config.replication_factor,
        check=(),
        client={"client_id": "zapflow-ingest-admin", **security_settings(config)},
        timeout_s=config.producer.request_timeout,
    )


class KeyPartitions:
    """The partition of a key, exactly as aiokafka's default partitioner picks it.

    Same murmur2 hash as the Java client and Faust, so consumers that partition state by
    these keys agree with us; cached per key, because aiokafka's hash is pure Python and
    the keys (instance, chat) repeat all the time.
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def partition(self, key: bytes, count: int) -> int:
        hashed = self._hashes.get(key)
        if hashed is None:
            from aiokafka.partitioner import murmur2

            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return hashed % count


class EventPipeline:
    """Accepts records from the subscriptions and gets them into Kafka, one way or another.

    Args:
        config: the Kafka settings.
        topics: the topics to create at start.
        spool: the open spool.
        stats: counters to update.
        clock: monotonic seconds (replaceable in tests).
        spool_warn_ratio: spool fill ratio at which a warning is logged.
    """

    def __init__(
        self,
        config: KafkaConfig,
        topics: list[str],
        spool: Spool,
        stats: IngestStats,
        *,
        clock: Callable[[], float] = time.monotonic,
        spool_warn_ratio: float = 0.8,
    ) -> None:
        self._config = config
        self._topics = topics
        self._spool = spool
        self._stats = stats
        self._clock = clock
        self._mode = SPOOLING
        self._seq = spool.last_seq_at_open
        self._queue: deque[tuple[int, KafkaRecord, float]] = deque()
        self._spool_buffer: list[tuple[int, KafkaRecord]] = []
        # seq -> (record, received at, handed to the producer at)
        self._inflight: dict[int, tuple[KafkaRecord, float, float]] = {}
        self._draining: dict[int, asyncio.Future[Any]] = {}
        self._producer: Any = None
        self._wake_feeder = asyncio.Event()
        self._wake_drainer = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._spool_warned = False
        self._spool_full = False
        self._spool_failing = False
        self._spool_warn_ratio = spool_warn_ratio
        self._producer_broken = False
        self._partition_counts: dict[str, int] = {}
        # Sequence numbers of spooled records handed to the producer in direct mode
        # (the spool's tail); removed from the spool once acknowledged.
        self._in_spool: set[int] = set()
        self._acked_from_spool: list[int] = []
        self._key_partitions = KeyPartitions()
        self._batches = PartitionBatches(self._new_batch, config.producer.linger_ms / 1000, clock)
        self.kafka_ready = asyncio.Event()
        #: Set while subscriptions may read; cleared while Kafka is behind (see HIGH_WATER).
        self.room = asyncio.Event()
        self.room.set()
        stats.mode = SPOOLING
        self._sync_spool_stats()

    # --- public -----------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @property
    def inflight(self) -> int:
        return len(self._inflight) + len(self._queue) + len(self._draining)

    async def start(self, connect_timeout: float = 10.0) -> bool:
        """Start the background work; try to reach Kafka for up to ``connect_timeout``.

        Returns:
            Whether Kafka was reached (if not, records are spooled until it is).
        """
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._feed(), name="ingest-feeder"),
            loop.create_task(self._drain(), name="ingest-drainer"),
            loop.create_task(self._watch(), name="ingest-watchdog"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(connect_timeout):
                await self.kafka_ready.wait()
        return self.kafka_ready.is_set()

    def accept(self, record: KafkaRecord, received_at: float) -> None:
        """Take one record (never blocks: the subscriptions must keep reading)."""
        self._seq += 1
        if self._mode == DIRECT and not self._closing:
            self._queue.append((self._seq, record, received_at))
            if len(self._queue) + len(self._inflight) > HIGH_WATER:
                self.room.clear()
            if len(self._queue) > QUEUE_LIMIT:
                self._enter_spooling(f"more than {QUEUE_LIMIT} events wait for the producer")
            elif not self._wake_feeder.is_set():
                self._wake_feeder.set()
            return
        self._spool_buffer.append((self._seq, record))
        if len(self._spool_buffer) >= SPOOL_WRITE_BATCH:
            self._write_spool()

    async def close(self, budget: StopBudget | None = None) -> None:
        """Flush what can be flushed within ``flush_timeout``; spool the rest; stop.

        Inside ``zapflow run`` the wait for Kafka shares the worker's stop ``budget`` with the
        other stages' (:mod:`worker.stopping`): when Kafka is away, it does not take ten
        seconds here and ten more for their commits. What Kafka did not take is spooled
        either way, and then the producer is closed without waiting for it again.
        """
        self._closing = True
        self.room.set()
        self._wake_feeder.set()  # hand over the open batches now
        timeout = self._config.producer.flush_timeout
        if budget is not None:
            timeout = min(timeout, budget.remaining())
        # Not yet handed to the producer: straight to disk.
        while self._queue:
            seq, record, _ = self._queue.popleft()
            self._to_spool(seq, record)
        self._write_spool()
        deadline = self._clock() + timeout
        while (self._inflight or self._draining) and self._clock() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await cancel_and_wait(*self._tasks)
        # Drain batches already in the spool: settle what was acknowledged.
        acked = [s for s, f in self._draining.items() if f.done() and not f.exception()]
        self._settle_drained(acked)
        self._draining.clear()
        unacknowledged = bool(self._inflight)
        if unacknowledged:
            log.warning(
                "%d events were not acknowledged by Kafka within %.0fs; they are kept in "
                "the spool and sent again on the next start",
                len(self._inflight),
                timeout,
            )
            for seq, (record, _, _) in sorted(self._inflight.items()):
                self._to_spool(seq, record)
            self._inflight.clear()
            if budget is not None:
                budget.give_up("ingest's events in flight")
        self._settle_acked_from_spool()
        self._write_spool()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            if unacknowledged:
                # Everything is in the spool: do not wait for Kafka to take it again.
                await close_producer_now(producer)
            else:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5.0):
                        await producer.stop()
        self._sync_spool_stats()
        self._spool.close()

    def _to_spool(self, seq: int, record: KafkaRecord) -> None:
        """Keep a record that did not make it; one read from the spool is still there."""
        if seq in self._in_spool:
            self._in_spool.discard(seq)
        else:
            self._spool_buffer.append((seq, record))

    def _settle_acked_from_spool(self) -> None:
        if self._acked_from_spool:
            acked, self._acked_from_spool = self._acked_from_spool, []
            self._settle_drained(acked)

    # --- mode changes -----------------------------------------------------------
    def _enter_spooling(self, reason: str) -> None:
        if self._mode == SPOOLING:
            return
        self._mode = SPOOLING
        self._stats.mode = SPOOLING
        self.room.set()  # events go to disk now; the subscriptions must keep reading
        while self._queue:
            seq, record, _ = self._queue.popleft()
            self._to_spool(seq, record)
        for batch in self._batches.take_all():
            self._spool_inflight(batch.seqs)
        log.warning("Kafka unavailable (%s); spooling events to %s", reason, self._spool.path)
        self._wake_drainer.set()

    def _enter_direct(self) -> None:
        self._mode = DIRECT
        self._stats.mode = DIRECT
        self._wake_feeder.set()

    # --- spool ------------------------------------------------------------------
    def _write_spool(self) -> None:
        if not self._spool_buffer:
            return
        batch, self._spool_buffer = self._spool_buffer, []
        try:
            self._spool.append(batch)
            stored = len(batch)
            if self._spool_full:
                self._spool_full = False
                log.info("spool %s accepts events again", self._spool.path)
        except SpoolFull as exc:
            stored = len(batch) - exc.dropped
            self._stats.spool_dropped += exc.dropped
            if not self._spool_full:
                self._spool_full = True
                log.error("%s", exc)
        except sqlite3.Error as exc:
            # Disk full, file removed...: keep the records in memory (bounded) and retry
            # on the next tick rather than lose them now.
            keep = batch[-QUEUE_LIMIT:]
            self._stats.spool_dropped += len(batch) - len(keep)
            self._spool_buffer = keep + self._spool_buffer
            if not self._spool_failing:
                self._spool_failing = True
                log.error(
                    "cannot write to spool %s (%s); keeping up to %d events in memory",
                    self._spool.path,
                    exc,
                    QUEUE_LIMIT,
                )
            return
        self._spool_failing = False
        self._stats.spooled += stored
        self._sync_spool_stats()
        ratio = self._spool.fill_ratio
        warn_ratio = self._spool_warn_ratio
        if ratio >= warn_ratio and not self._spool_warned:
            self._spool_warned = True
            log.warning(
                "spool %s is %.0f%% full (%d events, %d bytes of %d)",
                self._spool.path,
                ratio * 100,
                self._spool.depth,
                self._spool.bytes,
                self._spool.max_bytes,
            )
        elif ratio < warn_ratio / 2:
            self._spool_warned = False

    def _sync_spool_stats(self) -> None:
        self._stats.spool_depth = self._spool.depth + len(self._spool_buffer)
        self._stats.spool_bytes = self._spool.bytes

    def _settle_drained(self, seqs: list[int]) -> None:
        if not seqs:
            return
        self._spool.remove(seqs)
        self._stats.drained += len(seqs)
        self._stats.produced += len(seqs)
        self._sync_spool_stats()

    # --- producer ---------------------------------------------------------------
    async def _connect(self) -> None:
        from aiokafka import AIOKafkaProducer

        from worker.batching import batch_per_broker

        if self._config.create_topics:
            created = await ensure_topics(self._config, self._topics)
            if created:
                log.info("created topics: %s", ", ".join(created))
        producer = batch_per_broker(AIOKafkaProducer(**producer_settings(self._config)))
        try:
            await producer.start()
            # Fetch every topic's partitions now, so the first events do not wait for it
            # (new topics need a moment before they have leaders).
            for topic in self._topics:
                self._partition_counts[topic] = len(await producer.partitions_for(topic))
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer
        self.kafka_ready.set()
        log.info("connected to Kafka at %s", self._config.bootstrap_servers)

    async def _discard_producer(self) -> None:
        """Replace a producer that has seen a failed send, once nothing is in flight.

        After expired or failed batches, aiokafka's idempotent producer keeps sequence
        numbers the broker never saw and answers every later send with
        OutOfOrderSequenceNumber; a new producer gets a new producer id and starts over.
        """
        producer, self._producer = self._producer, None
        self._producer_broken = False
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await producer.stop()

    def _new_batch(self) -> Any:
        return self._producer.create_batch()

    async def _partition(self, record: KafkaRecord) -> int:
        """The partition of ``record``'s key (its topic's partition count asked once)."""
        count = self._partition_counts.get(record.topic)
        if count is None:
            count = len(await self._producer.partitions_for(record.topic))
            self._partition_counts[record.topic] = count
        return self._key_partitions.partition(record.key, count)

    async def _send_batch(self, batch: OpenBatch) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = await self._producer.send_batch(
            batch.builder, batch.topic, partition=batch.partition
        )
        return fut

    async def _feed(self) -> None:
        """Direct mode: batch queued records and hand the batches over, never waiting for acks.

        A batch goes when it is full, and every open batch once the oldest has lingered
        ``linger_ms`` (at once while ingest closes).
        """
        while True:
            deadline = self._batches.deadline
            if deadline is None:
                await self._wake_feeder.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(deadline - self._clock(), 0.0)):
                        await self._wake_feeder.wait()
            self._wake_feeder.clear()
            while self._queue and self._mode == DIRECT:
                seq, record, received_at = self._queue.popleft()
                self._inflight[seq] = (record, received_at, self._clock())
                try:
                    full = self._batches.add(await self._partition(record), seq, record)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._inflight.pop(seq, None)
                    self._to_spool(seq, record)
                    self._send_failed(1, f"send failed: {type(exc).__name__}: {exc}")
                    continue
                if full is not None:
                    await self._hand_over(full)
            deadline = self._batches.deadline
            if deadline is not None and (self._closing or self._clock() >= deadline):
                for batch in self._batches.take_all():
                    if self._mode == DIRECT:
                        await self._hand_over(batch)
                    else:  # a failure since the batches were taken
                        self._spool_inflight(batch.seqs)

    async def _hand_over(self, batch: OpenBatch) -> None:
        """Give a closed batch to the producer; spool its records if it will not take it."""
        try:
            fut = await self._send_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            moved = self._spool_inflight(batch.seqs)
            self._send_failed(moved, f"send failed: {type(exc).__name__}: {exc}")
            return
        fut.add_done_callback(functools.partial(self._delivered, batch.seqs))

    def _spool_inflight(self, seqs: list[int]) -> int:
        """Move the records of ``seqs`` still in flight to the spool; returns how many."""
        moved = 0
        for seq in seqs:
            entry = self._inflight.pop(seq, None)
            if entry is not None:  # else already spooled by close()
                self._to_spool(seq, entry[0])
                moved += 1
        return moved

    def _send_failed(self, records: int, reason: str) -> None:
        self._stats.produce_errors += records
        self._producer_broken = True
        self._enter_spooling(reason)

    def _delivered(self, seqs: list[int], fut: asyncio.Future[Any]) -> None:
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is not None:
            failed = self._spool_inflight(seqs)
            if failed:
                self._send_failed(failed, f"delivery failed: {type(exc).__name__}: {exc}")
            return
        now = self._clock()
        latency = self._stats.produce_latency
        for seq in seqs:
            entry = self._inflight.pop(seq, None)
            if entry is None:  # already spooled by close()
                continue
            if seq in self._in_spool:
                self._in_spool.discard(seq)
                self._acked_from_spool.append(seq)
                continue
            self._stats.produced += 1
            latency.observe(now - entry[1])
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        if not self.room.is_set() and len(self._queue) + len(self._inflight) < LOW_WATER:
            self.room.set()

    async def _watch(self) -> None:
        """Spot a broker that stopped acknowledging; write the spool buffer to disk."""
        delivery_timeout = self._config.producer.delivery_timeout
        while True:
            await asyncio.sleep(TICK)
            if self._mode == DIRECT and self._inflight:
                _, _, sent_at = next(iter(self._inflight.values()))
                waited = self._clock() - sent_at
                if waited > delivery_timeout:
                    self._enter_spooling(f"no acknowledgement for {waited:.1f}s")
            self._settle_acked_from_spool()
            self._write_spool()
            self._maybe_resume()

    async def _drain(self) -> None:
        """Spooling mode: reach Kafka, wait for in-flight records, drain the spool."""
        while True:
            try:
                await self._drain_until_direct()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never leave ingest stuck in spooling mode because of one bad turn.
                log.exception("draining the spool failed; retrying in 5s")
                await asyncio.sleep(5.0)

    async def _drain_until_direct(self) -> None:
        retry = 0.5
        while True:
            if self._mode == DIRECT or self._closing:
                await self._wake_drainer.wait()
                self._wake_drainer.clear()
                continue
            if self._producer is not None and self._producer_broken and not self._inflight:
                await self._discard_producer()
            if self._producer is None:
                try:
                    await self._connect()
                    retry = 0.5
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Once per outage at warning level; the retries after it at debug.
                    log.log(
                        logging.WARNING if retry == 0.5 else logging.DEBUG,
                        "cannot reach Kafka at %s (%s: %s); retrying in %.1fs",
                        self._config.bootstrap_servers,
                        type(exc).__name__,
                        exc,
                        retry,
                    )
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, 5.0)
                    continue
            if self._inflight:
                await asyncio.sleep(TICK)
                continue
            self._settle_acked_from_spool()
            self._write_spool()
            batch = self._spool.oldest(DRAIN_BATCH)
            if batch and len(batch) < DRAIN_BATCH and not self._spool_buffer:
                # The tail of the spool: hand it to the producer ahead of new events and
                # go direct. Draining to empty first would never end under steady
                # traffic (new events keep arriving while a batch is in flight). The
                # records stay on disk until acknowledged.
                now = self._clock()
                for item in batch:
                    self._in_spool.add(item.seq)
                    self._queue.append((item.seq, item.record, now))
                log.info("spool drained; sending events to Kafka directly again")
                self._enter_direct()
                continue
            if not batch:
                if not self._spool_buffer and not self._inflight:
                    if self._stats.drained:
                        log.info("spool drained; sending events to Kafka directly again")
                    self._enter_direct()
                else:  # the spool could not be written: wait for the next try
                    await asyncio.sleep(TICK)
                continue
            failed = await self._drain_batch(batch)
            if failed:
                await asyncio.sleep(retry)
                retry = min(retry * 2, 5.0)
            else:
                retry = 0.5

    async def _drain_batch(self, batch: list[Any]) -> bool:
        """Send one batch from the spool; returns whether something failed."""
        failure: BaseException | None = None
        batches = PartitionBatches(self._new_batch, 0.0, self._clock)

        async def hand_over(closed: OpenBatch) -> None:
            fut = await self._send_batch(closed)
            for seq in closed.seqs:
                self._draining[seq] = fut

        try:
            for item in batch:
                full = batches.add(await self._partition(item.record), item.seq, item.record)
                if full is not None:
                    await hand_over(full)
            for closed in batches.take_all():
                await hand_over(closed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # What was not handed over stays in the spool for the next try.
            failure = exc
        if self._draining:
            await asyncio.wait(list(self._draining.values()))
        acked = []
        for seq, fut in self._draining.items():
            error = fut.exception()
            if error is None:
                acked.append(seq)
            elif failure is None:
                failure = error
        self._draining.clear()
        self._settle_drained(acked)
        if failure is not None:
            # In records, as in direct mode: each record this try did not deliver.
            self._stats.produce_errors += len(batch) - len(acked)
            self._producer_broken = True
            log.warning(
                "sending spooled events failed (%s: %s); %d left in the spool",
                type(failure).__name__,
                failure,
                self._spool.depth,
            )
            return True
        return False
