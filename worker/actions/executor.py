"""The executor: a Faust agent on the actions topic that performs each record at most once.

The agent itself only claims: it records the key as ``pending`` in a changelog-backed table,
flushes the changelog, and hands the record to a task; only then does it move on (which acks the
record). Tasks wait for send limits and retry delays, perform, and write ``done`` or ``failed``.
Slow endpoints, retries and send limits therefore never hold up the agent, and a crash loses no
record: whatever was claimed but not finished is resumed from the table when its partition is
assigned again. :mod:`worker.actions.ledger` lists the crash windows.

Faust facts this relies on (faust-streaming 0.15.3):

- an exception inside an agent acks the record and restarts the agent, so every record is
  handled inside ``try`` and failures go to the dead-letter topic;
- table writes need the partition of "the current event"; tasks write from outside the stream,
  so they set a stand-in event for the key's partition (see :func:`_on_partition`);
- the actions topic must exist with the table's partition count before the worker starts
  (:func:`worker.actions.topics.ensure_topics`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import faust
import orjson
from faust.streams import _current_event

from worker.actions import ledger
from worker.actions.ledger import LedgerEntry
from worker.actions.limits import SendLimiter
from worker.actions.perform import send_request
from worker.actions.record import ActionRecord, InvalidActionRecord, dlq_value
from worker.actions.requests import InvalidParams, OutboundRequest, SendLimitKey, build_request
from worker.actions.retry import Failure, failure_for_exception
from worker.actions.secrets import BadSecretReference, SecretNotSet
from worker.actions.settings import ExecutorSettings
from worker.events import actions_topic, dlq_topic

log = logging.getLogger("worker.actions")
#: Where ``log`` actions write, so ops can route rule output apart from executor diagnostics.
action_log = logging.getLogger("worker.actions.log")

_LOG_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Keys whose request is on the wire right now (shutdown lets these finish).
        self._in_request: set[str] = set()
        self._limiter_swept = monotonic()
        self._room = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._all_slots: asyncio.Semaphore | None = None
        self._destination_slots: dict[str, asyncio.Semaphore] = {}
        self.agent = app.agent(self.topic, name=f"{settings.table_name}-executor")(self._consume)
        self.table.on_recover(self._resume_pending)
        app.on_partitions_revoked.connect(self._on_partitions_revoked)
        app.on_before_shutdown.connect(self._on_shutdown)
        app.timer(settings.prune_interval_s, name=f"{settings.table_name}-prune")(self._prune)

    # -- the agent: claim and hand over -------------------------------------------------------

    async def _consume(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                await self._accept(event.value, event.message.partition)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let one record kill the agent: Faust would ack it and move on anyway.
                log.exception("action record at %s failed in the executor", _where(event))

    async def _accept(self, raw: bytes, partition: int) -> None:
        try:
            record = ActionRecord.from_json(raw)
        except InvalidActionRecord as exc:
            await self._dead_letter_raw(raw, str(exc))
            return
        key = record.idempotency_key
        stored = self.table.get(key)
        if stored is not None:
            entry = LedgerEntry.from_dict(stored)
            if entry.finished:
                log.info("action %s already %s; skipping the redelivery", key, entry.state)
            elif key not in self._tasks:
                self._start(key, entry)
            return
        while len(self._tasks) >= self.settings.max_pending:
            self._room.clear()
            await self._room.wait()
        entry = ledger.claimed(record.to_dict(), partition, self._wall_clock())
        # No flush here: the task flushes before it sends anything, and Faust flushes the
        # producer before it commits this record's offset, so the claim is durable before
        # either could matter - and the agent never waits for Kafka per record.
        await self._write(key, entry, wait=False)
        self._start(key, entry)

    # -- tasks: wait, perform, retry, finish --------------------------------------------------

    def _start(self, key: str, entry: LedgerEntry) -> None:
        task = asyncio.create_task(self._run(key, entry), name=f"action {key}")
        self._tasks[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is done:
                del self._tasks[key]
            self._room.set()

        task.add_done_callback(forget)

    async def _run(self, key: str, entry: LedgerEntry) -> None:
        record_data = entry.record or {}
        try:
            record = ActionRecord.from_dict(record_data)
            await self._attempt_until_finished(key, record, entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("action %s failed unexpectedly", key)
            failure = failure_for_exception(exc)
            await self._give_up(key, record_data, entry, Failure(failure.error, retriable=False))

    async def _attempt_until_finished(
        self, key: str, record: ActionRecord, entry: LedgerEntry
    ) -> None:
        policy = self.settings.retry
        while True:
            if entry.next_at is not None:
                await asyncio.sleep(max(0.0, entry.next_at - self._wall_clock()))
            if entry.attempts >= policy.max_attempts:
                # Only after a restart: the last attempt was cut short by the crash.
                error = entry.error or "the last attempt was interrupted by a restart"
                await self._give_up(key, record.to_dict(), entry, Failure(error, retriable=True))
                return
            try:
                request = self._request_for(record)
            except (InvalidParams, SecretNotSet, BadSecretReference) as exc:
                await self._give_up(key, record.to_dict(), entry, Failure(str(exc), False))
                return
            if request is not None and request.send_limit is not None:
                await self._wait_for_send_limit(key, request.send_limit)
            async with self._slots(request.destination if request is not None else None):
                # Counted only once a slot is held: records queued behind a slow endpoint have
                # not been attempted, and a crash must not use up their attempts.
                entry = ledger.attempt_started(entry, self._wall_clock())
                await self._write(key, entry)
                self._in_request.add(key)
                try:
                    failure = await self._perform(record, request)
                finally:
                    self._in_request.discard(key)
            if failure is None:
                # Not waited for: waiting would not make the write land any sooner (the crash
                # window between the request and this write stays what it is), it would only
                # hold the task. Faust flushes what is left before it commits or stops.
                entry = ledger.completed(entry, self._wall_clock())
                await self._write(key, entry, wait=False)
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
            now = self._wall_clock()
            entry = ledger.retry_scheduled(entry, failure.error, now + delay, now)
            await self._write(key, entry, wait=False)

    async def _wait_for_send_limit(self, key: str, limit: SendLimitKey) -> None:
        now = self._monotonic()
        if now - self._limiter_swept > 60.0:
            self.limiter.forget_idle(now)
            self._limiter_swept = now
        wait = self.limiter.reserve_chat(limit.instance, limit.chat, self._monotonic())
        if wait > 0:
            log.info("action %s waits %.2fs for the send limit of chat %s", key, wait, limit.chat)
            await asyncio.sleep(wait)
        wait = self.limiter.reserve_instance(limit.instance, self._monotonic())
        if wait > 0:
            log.info("action %s waits %.2fs for the send limit of %s", key, wait, limit.instance)
            await asyncio.sleep(wait)

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
            await self.app.producer.send_and_wait(
                topic, key.encode() if key is not None else None, value, None, None, headers
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

        Waits for this record only (a producer-wide flush would, under load, wait for every
        other task's writes too). Kafka being away is not the action's fault: keep trying
        rather than dead-lettering the action.
        """
        value = entry.to_dict()
        with _on_partition(self.topic_name, entry.partition):
            self.table.data[key] = value
        if not wait:
            self.table.send_changelog(entry.partition, key, value)
            return

        async def send() -> None:
            sent = await self.table.changelog_topic.send(
                key=key,
                value=value,
                partition=entry.partition,
                key_serializer=self.table.key_serializer,
                value_serializer=self.table.value_serializer,
            )
            await sent

        await self._until_kafka_takes(send, f"the table entry of {key}")

    async def _send_to_dlq(self, key: bytes | None, value: Mapping[str, Any]) -> None:
        payload = orjson.dumps(value)

        async def send() -> None:
            await self.app.producer.send_and_wait(
                self.dlq_topic_name, key, payload, None, None, None
            )

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
        ours = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.topic_name
        }
        resumed = 0
        for key, stored in list(self.table.items()):
            entry = LedgerEntry.from_dict(stored)
            if not entry.finished and entry.partition in ours and key not in self._tasks:
                self._start(key, entry)
                resumed += 1
        if resumed:
            log.info("resumed %d pending action(s) after recovery", resumed)

    async def _prune(self) -> None:
        """Forget finished keys older than ``ledger_retention_s`` so the table stays bounded.

        A record replayed after its key was forgotten would be performed again; keep the
        retention longer than any replay you would do (the actions topic's retention is a
        natural choice).
        """
        ours = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.topic_name
        }
        cutoff = self._wall_clock() - self.settings.ledger_retention_s
        expired = []
        for key, stored in list(self.table.items()):
            entry = LedgerEntry.from_dict(stored)
            if entry.finished and entry.updated_at < cutoff and entry.partition in ours:
                expired.append((key, entry.partition))
        for key, partition in expired:
            with _on_partition(self.topic_name, partition):
                del self.table[key]
        if expired:
            await self.app.producer.flush()
            log.info("forgot %d finished action key(s) older than the retention", len(expired))

    async def _on_partitions_revoked(self, sender: Any, revoked: Any, **_: Any) -> None:
        """Stop work on keys whose partition moves away; the new owner resumes them."""
        lost = {tp.partition for tp in revoked if tp.topic == self.topic_name}
        if not lost:
            return
        stopping = []
        for key, task in list(self._tasks.items()):
            stored = self.table.data.get(key)
            partition = LedgerEntry.from_dict(stored).partition if stored is not None else None
            if partition is None or partition in lost:
                task.cancel()
                stopping.append(task)
        await asyncio.gather(*stopping, return_exceptions=True)

    async def _on_shutdown(self, sender: Any, **_: Any) -> None:
        """Let requests on the wire finish (briefly), stop the rest; all resume from the table.

        A request cut off here would be repeated after the restart (same idempotency key), so
        a warm shutdown waits up to ``shutdown_grace_s`` for them; tasks that are only waiting
        (retry delay, send limit) are stopped at once.
        """
        in_request = [t for k, t in self._tasks.items() if k in self._in_request]
        for key, task in list(self._tasks.items()):
            if key not in self._in_request:
                task.cancel()
        if in_request:
            await asyncio.wait(in_request, timeout=self.settings.shutdown_grace_s)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- I/O resources ----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.concurrency)
            )
        return self._session

    @contextlib.asynccontextmanager
    async def _slots(self, destination: str | None) -> AsyncIterator[None]:
        """Hold a slot of the global limit and, for HTTP, one of the destination's limit."""
        if self._all_slots is None:
            self._all_slots = asyncio.Semaphore(self.settings.concurrency)
        if destination is None:
            async with self._all_slots:
                yield
            return
        per_destination = self._destination_slots.get(destination)
        if per_destination is None:
            per_destination = asyncio.Semaphore(self.settings.per_destination_concurrency)
            self._destination_slots[destination] = per_destination
        async with per_destination, self._all_slots:
            yield

    @property
    def pending(self) -> int:
        """Records accepted and not finished (in flight, waiting to retry or for a send limit)."""
        return len(self._tasks)


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
