"""The executor: a Faust agent on the actions topic that performs each record at most once.

The agent itself only claims: for a batch of records it records each new key as ``pending`` in
a changelog-backed table, waits until Kafka has those claims, and hands each record to a task;
only then does it move on (which acks the batch). Tasks wait for send limits and retry delays,
perform, and write ``done`` or ``failed``; a record that can be sent at once has its first
attempt counted in its claim, so its task sends without another write. Slow endpoints,
retries and send limits therefore never hold up the agent, and a crash loses no record:
whatever was claimed but not finished is resumed from the table when its partition is assigned
again. :mod:`worker.actions.ledger` lists the crash windows.

Faust facts this relies on (faust-streaming 0.15.3):

- an exception inside an agent acks the record and restarts the agent, so every record is
  handled inside ``try`` and failures go to the dead-letter topic;
- table stores take the partition from "the current event"; tasks write from outside the
  stream, so they set a stand-in event for the key's partition (see :func:`_on_partition`);
- the executor writes the table's changelog itself, with its own idempotent producer, so each
  write can be awaited alone and all writes of a key stay in order (Faust's
  ``send_and_wait`` was seen to hang on a dead letter under concurrent sends);
- the actions topic must exist with the table's partition count before the worker starts
  (:func:`worker.topics.ensure_topics`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import logging
import os
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import faust
import orjson
from aiokafka import AIOKafkaProducer
from faust.streams import _current_event
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from worker.actions import ledger
from worker.actions.ledger import LedgerEntry
from worker.actions.limits import SendLimiter
from worker.actions.perform import send_request
from worker.actions.record import ActionRecord, InvalidActionRecord, dlq_value
from worker.actions.requests import (
    InvalidParams,
    OutboundRequest,
    SendLimitKey,
    build_request,
    gateway_destination,
)
from worker.actions.retry import Failure, failure_for_exception
from worker.actions.secrets import BadSecretReference, SecretNotSet
from worker.actions.settings import ExecutorSettings
from worker.actions.slots import Held, Slots
from worker.actions.stats import ExecutorStats
from worker.batching import batch_per_broker
from worker.events import actions_topic, dlq_topic
from worker.stopping import stop_budget, stop_producer
from worker.tables import PacedWalks

log = logging.getLogger("worker.actions")

#: The idempotency key of the action the current task works on; every log line written
#: meanwhile carries it as a field (``idempotency_key``), so JSON logs can be filtered by it.
_current_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zapflow_action_key", default=None
)


class _ActionKeyFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        key = _current_key.get()
        if key is not None and not hasattr(record, "idempotency_key"):
            record.idempotency_key = key
        return True


log.addFilter(_ActionKeyFilter())
#: Where ``log`` actions write, so ops can route rule output apart from executor diagnostics.
action_log = logging.getLogger("worker.actions.log")

#: At most this many records are claimed together (one round trip to Kafka for all their
#: claims). A batch is what has arrived by the time the last one was handled: a lone record
#: waits for nothing, and under load the batches grow by themselves.
_CLAIM_BATCH: Final = 500

_LOG_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class _Attempt:
    """An attempt counted in its key's entry, with its slots held: it is performed next."""

    request: OutboundRequest | None
    slots: Held


@dataclass(frozen=True)
class _Message:
    topic: str
    partition: int


@dataclass(frozen=True)
class _PartitionEvent:
    """Stand-in for a Faust event: what table writes read from "the current event"."""

    message: _Message


@contextlib.contextmanager
def _on_partition(topic: str, partition: int) -> Iterator[None]:
    """Make Faust table writes in this task go to ``partition``.

    Faust tables (and its RocksDB store) take the changelog partition from the event being
    processed; a task resuming or finishing an action runs outside any stream, so it sets a
    stand-in event for the key's own partition of the actions topic. Faust keeps the current
    event in a private context variable; this can go if Faust gains a public way to write a key
    to a given partition.
    """
    stand_in = _PartitionEvent(_Message(topic, partition))
    token = _current_event.set(weakref.ref(stand_in))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


class Executor:
    """Performs action records; built and attached to a Faust app by :func:`register_executor`."""

    def __init__(
        self,
        app: Any,
        settings: ExecutorSettings,
        *,
        env: Mapping[str, str] | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        random_draw: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self.settings = settings
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._random = random_draw
        self.topic_name = actions_topic(settings.topic_prefix)
        self.dlq_topic_name = dlq_topic(settings.topic_prefix)
        self.topic = app.topic(
            self.topic_name,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.table = app.Table(
            settings.table_name,
            partitions=settings.partitions,
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        )
        self.limiter = SendLimiter(settings.send_rate_per_instance, settings.send_rate_per_chat)
        self.stats = ExecutorStats()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Keys whose request is on the wire right now (shutdown lets these finish).
        self._in_request: set[str] = set()
        self._limiter_swept = monotonic()
        self._room = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._changelog_topic = f"{app.conf.id}-{settings.table_name}-changelog"
        self._slots = Slots(
            settings.concurrency,
            settings.per_destination_concurrency,
            caps={gateway_destination(settings.gateway): settings.gateway_concurrency},
        )
        self.agent = app.agent(self.topic, name=f"{settings.table_name}-executor")(self._consume)
        self.table.on_recover(self._resume_pending)
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_before_shutdown.connect(self._on_shutdown)
        prune_tick = min(1.0, settings.prune_interval_s)
        self._pruning = PacedWalks(prune_tick)
        app.timer(prune_tick, name=f"{settings.table_name}-prune")(self._prune)

    # -- the agent: claim and hand over -------------------------------------------------------

    async def _consume(self, stream: Any) -> None:
        # The agent only reads: records go to a queue that ``_handle_arrivals`` empties a
        # batch at a time, so the claims of many records cost one round trip to Kafka. A
        # batch is acked only once it is handled: a record whose claim never reached Kafka
        # (the agent cancelled while claims are on their way, a SIGTERM) is not committed,
        # and Kafka delivers it again. Faust's ``take_events`` acks a batch in a ``finally``,
        # cancellation included, and waits a fixed window to fill it (waking as often when
        # idle), so the stream is read without Faust's acks.
        #
        # Reading and handling are two tasks so that no record read is ever held back to
        # wait for the next one: Faust skips records that come while its flow is suspended
        # (a rebalance, a stop), so the next one may never come, and a stop waits for every
        # record read to be acked.
        stream = stream.noack()
        arrived: asyncio.Queue[Any] = asyncio.Queue(maxsize=_CLAIM_BATCH)
        fetched = getattr(stream.channel, "queue", None)
        handler = asyncio.create_task(
            self._handle_arrivals(stream, arrived, fetched), name=f"{self.topic_name} claims"
        )
        try:
            async for event in stream.events():
                if handler.done():
                    handler.result()  # it failed: raise here, and Faust restarts the agent
                await arrived.put(event)
            await arrived.join()  # the stream ended: handle what it gave first
        finally:
            handler.cancel()
            await asyncio.gather(handler, return_exceptions=True)

    async def _handle_arrivals(
        self, stream: Any, arrived: asyncio.Queue[Any], fetched: asyncio.Queue[Any] | None
    ) -> None:
        """Claim and ack the records read (``arrived``), a burst at a time.

        ``fetched`` is the stream's channel queue: what Faust has fetched and the agent has
        not read yet.
        """
        while True:
            batch = [await arrived.get()]
            # A burst is claimed together: the agent gets the turns it needs to read what
            # Faust holds already, as long as each turn brings a record (one Faust skips
            # brings none, and then the batch goes as it is).
            while fetched is not None and not fetched.empty() and not arrived.full():
                before = arrived.qsize()
                await asyncio.sleep(0)
                if arrived.qsize() == before:
                    break
            while len(batch) < _CLAIM_BATCH and not arrived.empty():
                batch.append(arrived.get_nowait())
            try:
                await self._accept_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let a record stop the claims: log the batch and ack it below, so its
                # partition does not stall behind it.
                log.exception("action records at %s failed in the executor", _where(batch[0]))
            try:
                for handled in batch:
                    await stream.ack(handled)
            finally:
                for _ in batch:
                    arrived.task_done()

    async def _accept_batch(self, events: list[Any]) -> None:
        """Claim the batch's new keys, wait until Kafka has the claims, then start them.

        Waiting before the batch is acked is what makes a record impossible to lose: either
        its claim is in the table's changelog, or its offset is not committed and Kafka
        delivers it again. A record whose first attempt can go at once (slots free, no send
        limit to wait for) has that attempt counted in its claim, and its task performs it
        without another write.
        """
        accepted: list[tuple[str, LedgerEntry, ActionRecord]] = []
        claimed_now: set[str] = set()
        # All waiting for room happens here, before any slot is held: tasks waiting for a
        # slot make room only when they get one.
        for event in events:
            claim = await self._accept(event.value, event.message.partition, claimed_now)
            if claim is not None:
                claimed_now.add(claim[0])
                accepted.append(claim)
        claims: list[
            tuple[str, LedgerEntry, ActionRecord, _Attempt | None, asyncio.Future[Any]]
        ] = []
        started = 0
        try:
            for key, claimed, record in accepted:
                attempt = await self._attempt_at_once(record)
                entry = (
                    claimed
                    if attempt is None
                    else ledger.attempt_started(claimed, self._wall_clock())
                )
                claims.append((key, entry, record, attempt, await self._send_entry(key, entry)))
            for key, entry, record, attempt, sent in claims:
                try:
                    await sent
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "claim of %s failed to reach Kafka (%r); writing it again", key, exc
                    )
                    await self._write(key, entry)
                self._start(key, entry, attempt, record)
                started += 1
        finally:
            for _, _, _, attempt, _ in claims[started:]:
                if attempt is not None:
                    attempt.slots.release()

    async def _accept(
        self, raw: bytes, partition: int, claimed_now: set[str]
    ) -> tuple[str, LedgerEntry, ActionRecord] | None:
        """The claim to make for one record, or ``None`` when there is nothing to claim."""
        try:
            record = ActionRecord.from_json(raw)
        except InvalidActionRecord as exc:
            self.stats.invalid_records += 1
            await self._dead_letter_raw(raw, str(exc))
            return None
        key = record.idempotency_key
        if key in claimed_now:
            return None
        # Looked up in the key's own partition: in a batch, Faust's "current event" (which
        # the RocksDB store would consult) may be another record's.
        with _on_partition(self.topic_name, partition):
            stored = self.table.data.get(key)
        if stored is not None:
            entry = LedgerEntry.from_dict(stored)
            if entry.finished:
                self.stats.duplicates_skipped += 1
                log.info("action %s already %s; skipping the redelivery", key, entry.state)
            elif key not in self._tasks:
                self._start(key, entry)
            return None
        while len(self._tasks) >= self.settings.max_pending:
            self._room.clear()
            await self._room.wait()
        return key, ledger.claimed(record.to_dict(), partition, self._wall_clock()), record

    async def _attempt_at_once(self, record: ActionRecord) -> _Attempt | None:
        """The first attempt of a new record, if nothing would make it wait; else ``None``.

        Nothing waits when its slots are free and its send limit (if any) has room now; the
        limit is reserved only then. Records that must wait, or whose request cannot be built
        (their task dead-letters them), take the usual way through their task.
        """
        try:
            request = self._request_for(record)
        except (InvalidParams, SecretNotSet, BadSecretReference):
            return None
        destination, lane = _slot_keys(request)
        if not self._slots.free(destination, lane):
            return None
        if request is not None and request.send_limit is not None:
            limit = request.send_limit
            now = self._monotonic()
            self._sweep_limiter(now)
            if not self.limiter.reserve_if_free(limit.instance, limit.chat, now):
                return None
        # Free, so this returns at once: nothing can take the slots in between.
        return _Attempt(request, await self._slots.hold(destination, lane))

    # -- tasks: wait, perform, retry, finish --------------------------------------------------

    def _start(
        self,
        key: str,
        entry: LedgerEntry,
        attempt: _Attempt | None = None,
        record: ActionRecord | None = None,
    ) -> None:
        """Run ``key``'s task; with ``attempt``, its first step is to perform that attempt.

        ``record`` is ``entry``'s record when the caller has parsed it already.
        """
        task = asyncio.create_task(self._run(key, entry, attempt, record), name=f"action {key}")
        self._tasks[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if attempt is not None:
                # A task cancelled before it ran never reached its own release.
                attempt.slots.release()
            if self._tasks.get(key) is done:
                del self._tasks[key]
            self._room.set()

        task.add_done_callback(forget)

    async def _run(
        self,
        key: str,
        entry: LedgerEntry,
        attempt: _Attempt | None,
        record: ActionRecord | None,
    ) -> None:
        _current_key.set(key)  # this task's own context: only its log lines get the key
        record_data = entry.record or {}
        try:
            if record is None:  # resumed from the table
                record = ActionRecord.from_dict(record_data)
            await self._attempt_until_finished(key, record, entry, attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("action %s failed unexpectedly", key)
            failure = failure_for_exception(exc)
            await self._give_up(key, record_data, entry, Failure(failure.error, retriable=False))

    async def _attempt_until_finished(
        self, key: str, record: ActionRecord, entry: LedgerEntry, attempt: _Attempt | None
    ) -> None:
        policy = self.settings.retry
        while True:
            if attempt is None:
                begun = await self._begin_attempt(key, record, entry)
                if begun is None:
                    return
                entry, attempt = begun
            self._in_request.add(key)
            try:
                failure = await self._perform(record, attempt.request)
            finally:
                self._in_request.discard(key)
                attempt.slots.release()
                attempt = None
            if failure is None:
                # Not waited for: waiting would not make the write land any sooner (the crash
                # window between the request and this write stays what it is), it would only
                # hold the task. Faust flushes what is left before it commits or stops.
                entry = ledger.completed(entry, self._wall_clock())
                await self._write(key, entry, wait=False)
                self.stats.performed[record.kind] += 1
                log.info(
                    "action %s (%s) done after %d attempt(s)", key, record.kind, entry.attempts
                )
                return
            delay = policy.next_delay(entry.attempts, failure, self._random())
            if delay is None:
                await self._give_up(key, record.to_dict(), entry, failure)
                return
            log.warning(
                "action %s attempt %d failed (%s); retrying in %.2fs",
                key,
                entry.attempts,
                failure.error,
                delay,
            )
            self.stats.retries[record.kind] += 1
            now = self._wall_clock()
            entry = ledger.retry_scheduled(entry, failure.error, now + delay, now)
            await self._write(key, entry, wait=False)

    async def _begin_attempt(
        self, key: str, record: ActionRecord, entry: LedgerEntry
    ) -> tuple[LedgerEntry, _Attempt] | None:
        """Wait for the next attempt's turn, hold its slots and count it in the table.

        Returns the entry with the attempt counted, or ``None`` once the record is given up.
        """
        if entry.next_at is not None:
            await asyncio.sleep(max(0.0, entry.next_at - self._wall_clock()))
        if entry.attempts >= self.settings.retry.max_attempts:
            # Only after a restart: the last attempt was cut short by the crash.
            error = entry.error or "the last attempt was interrupted by a restart"
            await self._give_up(key, record.to_dict(), entry, Failure(error, retriable=True))
            return None
        try:
            request = self._request_for(record)
        except (InvalidParams, SecretNotSet, BadSecretReference) as exc:
            await self._give_up(key, record.to_dict(), entry, Failure(str(exc), False))
            return None
        if request is not None and request.send_limit is not None:
            await self._wait_for_send_limit(key, request.send_limit)
        slots = await self._slots.hold(*_slot_keys(request))
        try:
            # Counted only once a slot is held: records queued behind a slow endpoint have not
            # been attempted, and a crash must not use up their attempts.
            entry = ledger.attempt_started(entry, self._wall_clock())
            await self._write(key, entry)
        except BaseException:
            slots.release()
            raise
        return entry, _Attempt(request, slots)

    def _sweep_limiter(self, now: float) -> None:
        """Forget idle send-limit buckets, at most once a minute."""
        if now - self._limiter_swept > 60.0:
            self.limiter.forget_idle(now)
            self._limiter_swept = now

    async def _wait_for_send_limit(self, key: str, limit: SendLimitKey) -> None:
        self._sweep_limiter(self._monotonic())
        chat_wait = self.limiter.reserve_chat(limit.instance, limit.chat, self._monotonic())
        if chat_wait > 0:
            log.info(
                "action %s waits %.2fs for the send limit of chat %s", key, chat_wait, limit.chat
            )
            await asyncio.sleep(chat_wait)
        wait = self.limiter.reserve_instance(limit.instance, self._monotonic())
        if wait > 0:
            log.info("action %s waits %.2fs for the send limit of %s", key, wait, limit.instance)
            await asyncio.sleep(wait)
        if chat_wait > 0 or wait > 0:
            self.stats.send_limit_waits += 1
            self.stats.send_limit_wait_seconds += chat_wait + max(wait, 0.0)

    def _request_for(self, record: ActionRecord) -> OutboundRequest | None:
        if record.kind in ("kafka.produce", "log"):
            return None
        return build_request(
            record, self.settings.gateway, self.env, self.settings.request_timeout_s
        )

    async def _perform(
        self, record: ActionRecord, request: OutboundRequest | None
    ) -> Failure | None:
        if request is not None:
            return await send_request(self._http(), request)
        if record.kind == "log":
            return self._log(record)
        return await self._produce(record)

    def _log(self, record: ActionRecord) -> Failure | None:
        level = record.params.get("level", "info")
        message = record.params.get("message")
        if level not in _LOG_LEVELS or not isinstance(message, str):
            return Failure(
                "log: params need level (info, warning or error) and a message string", False
            )
        action_log.log(
            _LOG_LEVELS[level],
            "%s",
            message,
            extra={"rule_id": record.rule_id, "instance": record.instance},
        )
        return None

    async def _produce(self, record: ActionRecord) -> Failure | None:
        topic = record.params.get("topic")
        key = record.params.get("key")
        if (
            not isinstance(topic, str)
            or not topic
            or (key is not None and not isinstance(key, str))
        ):
            return Failure(
                "kafka.produce: params need a topic string and a key string or null", False
            )
        value = orjson.dumps(record.params.get("value"))
        headers = [("idempotency-key", record.idempotency_key.encode())]
        try:
            producer = await self._kafka()
            await producer.send_and_wait(
                topic, value, key=key.encode() if key is not None else None, headers=headers
            )
        except Exception as exc:
            failure = failure_for_exception(exc)
            return Failure(f"kafka.produce to {topic}: {failure.error}", failure.retriable)
        return None

    async def _give_up(
        self, key: str, record: Mapping[str, Any], entry: LedgerEntry, failure: Failure
    ) -> None:
        """Dead-letter the record, then mark the key failed so it is never attempted again."""
        value = dlq_value(
            record,
            error=failure.error,
            retriable=failure.retriable,
            # Failures found before anything was sent (bad params, missing secret) count as one.
            attempts=max(1, entry.attempts),
            failed_at=datetime.fromtimestamp(self._wall_clock(), tz=UTC),
        )
        await self._send_to_dlq(key.encode(), value)
        self.stats.dead_lettered[(str(record.get("kind", "")), failure.retriable)] += 1
        log.error(
            "action %s failed for good after %d attempt(s): %s", key, entry.attempts, failure.error
        )
        entry = ledger.dead_lettered(entry, failure.error, self._wall_clock())
        await self._write(key, entry, wait=False)

    async def _dead_letter_raw(self, raw: bytes, error: str) -> None:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        record = data if isinstance(data, dict) else {"raw_base64": base64.b64encode(raw).decode()}
        value = dlq_value(
            record,
            error=error,
            retriable=False,
            attempts=1,
            failed_at=datetime.fromtimestamp(self._wall_clock(), tz=UTC),
        )
        key = record.get("idempotency_key")
        await self._send_to_dlq(key.encode() if isinstance(key, str) else None, value)
        log.error("invalid action record sent to %s: %s", self.dlq_topic_name, error)

    # -- the table ------------------------------------------------------------------------------

    async def _write(self, key: str, entry: LedgerEntry, *, wait: bool = True) -> None:
        """Store ``entry`` and send its changelog record; with ``wait``, until Kafka has it.

        Kafka being away is not the action's fault: keep trying rather than dead-lettering.
        """
        if not wait:
            sent = await self._send_entry(key, entry)
            sent.add_done_callback(lambda f: _log_lost_write(key, f))
            return

        async def send() -> None:
            await (await self._send_entry(key, entry))

        await self._until_kafka_takes(send, f"the table entry of {key}")

    async def _send_entry(self, key: str, entry: LedgerEntry) -> asyncio.Future[Any]:
        """Update the local table and queue the changelog record; returns its delivery future.

        The executor writes the table's changelog itself, through its own producer, in the
        format Faust reads back on recovery (JSON key and value, the key's own partition): one
        producer keeps every write of a key in order, and each write can be awaited alone
        (a producer-wide flush would, under load, wait for every other task's writes too).
        """
        value = entry.to_dict()
        with _on_partition(self.topic_name, entry.partition):
            self.table.data[key] = value
        producer = await self._kafka()
        future: asyncio.Future[Any] = await producer.send(
            self._changelog_topic,
            orjson.dumps(value),
            key=orjson.dumps(key),
            partition=entry.partition,
        )
        return future

    async def _forget(self, key: str, partition: int) -> None:
        """Drop ``key`` from the table (a tombstone in the changelog)."""
        with _on_partition(self.topic_name, partition):
            self.table.data.pop(key, None)
        producer = await self._kafka()
        await producer.send(self._changelog_topic, None, key=orjson.dumps(key), partition=partition)

    async def _send_to_dlq(self, key: bytes | None, value: Mapping[str, Any]) -> None:
        payload = orjson.dumps(value)

        async def send() -> None:
            producer = await self._kafka()
            await producer.send_and_wait(self.dlq_topic_name, payload, key=key)

        await self._until_kafka_takes(send, f"a record for {self.dlq_topic_name}")

    async def _until_kafka_takes(self, write: Callable[[], Awaitable[None]], what: str) -> None:
        delay = 0.5
        while True:
            try:
                await write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cannot write %s to Kafka (%r); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                return

    async def _resume_pending(self) -> None:
        """After table recovery: restart every claimed-not-finished key of our partitions."""
        ours = self._our_partitions()
        resumed = 0
        for key, stored in list(self.table.items()):
            entry = LedgerEntry.from_dict(stored)
            if not entry.finished and entry.partition in ours and key not in self._tasks:
                self._start(key, entry)
                resumed += 1
        self.stats.resumed += resumed
        if resumed:
            log.info("resumed %d pending action(s) after recovery", resumed)

    async def _prune(self) -> None:
        """Forget finished keys older than ``ledger_retention_s`` so the table stays bounded.

        A record replayed after its key was forgotten would be performed again; keep the
        retention longer than any replay you would do (the actions topic's retention is a
        natural choice).

        The table holds every key of the retention (a week by default), so it is not walked
        whole at once: runs every second, and a pass over each partition begins every tenth
        of ``ledger_retention_s`` (or every ``prune_interval_s``, if longer), each run walking
        its share
        (:class:`worker.tables.PacedWalks`). A key is forgotten within that period after its
        retention ends. Actions keep flowing meanwhile; a partition taken away mid-pass is
        left to its next owner.
        """
        now = self._wall_clock()
        settings = self.settings
        period = PacedWalks.period(settings.ledger_retention_s, settings.prune_interval_s)
        cutoff = now - settings.ledger_retention_s

        def expired(stored: Any, partition: int) -> bool:
            entry = LedgerEntry.from_dict(stored)
            return entry.finished and entry.updated_at < cutoff and entry.partition == partition

        forgotten = 0
        for partition in sorted(self._our_partitions()):

            def still_ours(partition: int = partition) -> bool:
                return partition in self._our_partitions()

            walk = self._pruning.share(self.table, partition, now, period, still_ours)
            async for items in walk:
                for key, stored in items:
                    if not expired(stored, partition):
                        continue
                    # Forgetting awaits Kafka: the key may have been claimed again meanwhile.
                    current = self.table.data.get(key)
                    if current is None or not still_ours() or not expired(current, partition):
                        continue
                    await self._forget(key, partition)
                    forgotten += 1
        if forgotten:
            await (await self._kafka()).flush()
            log.info("forgot %d finished action key(s) older than the retention", forgotten)

    def _our_partitions(self) -> set[int]:
        """Partitions of the actions topic (and so of the table) assigned to this worker."""
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.topic_name
        }

    async def _on_partitions_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        """Stop work on keys of revoked partitions; whoever gets them next resumes them.

        Faust rebalances eagerly: every partition is revoked and then assigned again, often to
        the same worker. Requests on the wire get ``shutdown_grace_s`` to finish, so a rebalance
        does not repeat them; work that was only waiting restarts from the table afterwards.
        """
        lost = {tp.partition for tp in revoked if tp.topic == self.topic_name}
        if not lost:
            return

        def on_lost_partition(key: str) -> bool:
            stored = self.table.data.get(key)
            return stored is None or LedgerEntry.from_dict(stored).partition in lost

        stopped = await self._stop_tasks(on_lost_partition)
        if stopped:
            log.info("stopped %d action(s) of revoked partitions %s", stopped, sorted(lost))
        # What they wrote must be in Kafka before the partitions' next owner reads the table.
        if self._producer is not None:
            await self._producer.flush()

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        """Let requests on the wire finish (briefly), stop the rest; all resume from the table."""
        await self._stop_tasks(lambda key: True)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            # Its last ledger writes; bounded while Kafka is away (worker.stopping).
            await stop_producer(
                producer, stop_budget(self.app), "the executor's last ledger writes"
            )
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _stop_tasks(self, selected: Callable[[str], bool]) -> int:
        """Stop the selected tasks; returns how many.

        A request cut off here would be repeated later (same idempotency key), so tasks with a
        request on the wire get up to ``shutdown_grace_s`` to finish it; tasks that are only
        waiting (retry delay, send limit, a free slot) are stopped at once.
        """
        chosen = {key: task for key, task in self._tasks.items() if selected(key)}
        in_request = [t for k, t in chosen.items() if k in self._in_request]
        for key, task in chosen.items():
            if key not in self._in_request:
                task.cancel()
        if in_request:
            await asyncio.wait(in_request, timeout=self.settings.shutdown_grace_s)
        for task in chosen.values():
            task.cancel()
        await asyncio.gather(*chosen.values(), return_exceptions=True)
        return len(chosen)

    # -- I/O resources ----------------------------------------------------------------------------

    async def _kafka(self) -> AIOKafkaProducer:
        """The executor's own producer (started on first use, in the worker's event loop)."""
        if self._producer is None:
            async with self._producer_lock:
                if self._producer is None:
                    producer = batch_per_broker(
                        AIOKafkaProducer(
                            bootstrap_servers=_bootstrap_servers(self.app),
                            acks="all",
                            enable_idempotence=True,
                            linger_ms=1,
                            # The app's own security settings (kafka.security under zapflow run).
                            **credentials_to_aiokafka_auth(self.app.conf.broker_credentials),
                        )
                    )
                    await producer.start()
                    self._producer = producer
        return self._producer

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.concurrency)
            )
        return self._session

    @property
    def in_flight(self) -> int:
        """Requests on the wire right now."""
        return len(self._in_request)

    @property
    def pending(self) -> int:
        """Records accepted and not finished (in flight, waiting to retry or for a send limit)."""
        return len(self._tasks)


def _bootstrap_servers(app: Any) -> str:
    """``host:port,...`` from the app's ``kafka://`` broker URLs."""
    return ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker)


def _slot_keys(request: OutboundRequest | None) -> tuple[str | None, str | None]:
    """The destination and lane whose slots an attempt holds (none but the global one for
    actions that make no request)."""
    if request is None:
        return None, None
    return request.destination, request.lane


def _log_lost_write(key: str, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning(
            "table write of %s did not reach Kafka (%r); after a restart the action may be "
            "resumed from an older entry",
            key,
            future.exception(),
        )


def _where(event: Any) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"


def register_executor(
    app: Any, settings: ExecutorSettings, *, env: Mapping[str, str] | None = None
) -> Executor:
    """Add the executor (agent, idempotency table, hooks) to a Faust ``app`` and return it.

    The app may hold other agents (the rule stage's); the executor only needs the actions topic
    created with ``settings.partitions`` partitions before the worker starts.
    """
    return Executor(app, settings, env=env)
