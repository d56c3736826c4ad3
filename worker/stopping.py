"""Stopping a Faust worker in bounded time while Kafka is away.

A Faust worker that stops waits for Kafka more than once: for the agents' last commit
(aiokafka retries a commit until the group coordinator answers) and for the producer's last
records (a flush, and a producer's stop, wait until every record is acknowledged or has
expired). With Kafka away, each wait lasts as long as the outage, and so did the stop.

All of these waits share one :class:`StopBudget` of :data:`STOP_KAFKA_TIMEOUT_S`. Once it is
spent, the rest of the stop does not wait for Kafka, and what Kafka has not taken is left as
a crash leaves it: the events after the last commit are read again on the next start, and
their duplicates are recognised downstream (message ids, idempotency keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

log = logging.getLogger("zapflow.kafka")

#: How long, in all, a stopping worker waits for Kafka.
STOP_KAFKA_TIMEOUT_S = 10.0


class StopBudget:
    """One deadline, started by the first wait, for every wait on Kafka during a stop."""

    def __init__(self, timeout: float = STOP_KAFKA_TIMEOUT_S) -> None:
        self.timeout = timeout
        self._deadline: float | None = None
        #: The waits given up on, in order.
        self.abandoned: list[str] = []

    def remaining(self) -> float:
        """Seconds left (the budget starts now if nothing has used it yet); 0 once given up."""
        deadline = self._started()
        return 0.0 if self.abandoned else max(0.0, deadline - asyncio.get_running_loop().time())

    def _started(self) -> float:
        """The deadline, set by the first use."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.timeout
        return self._deadline

    def give_up(self, what: str) -> None:
        """Note that ``what`` did not make it to Kafka: the rest of the stop does not wait."""
        if what not in self.abandoned:
            self.abandoned.append(what)

    async def wait(self, what: str, work: Coroutine[Any, Any, Any]) -> bool:
        """Run ``work`` within what is left of the budget; ``False`` if it was given up."""
        deadline = self._started()
        if self.abandoned:
            work.close()  # Kafka did not answer before: do not wait for it again
            if what not in self.abandoned:
                log.info("stopping without %s too", what)
            self.give_up(what)
            return False
        try:
            async with asyncio.timeout_at(deadline):
                await work
        except TimeoutError:
            self.give_up(what)
            self._warn(what)
            return False
        return True

    def _warn(self, what: str) -> None:
        log.warning(
            "stopping without %s: Kafka did not take it within %g s of the stop (is it "
            "reachable?); the events after the last commit are read again on the next start "
            "and their duplicates are recognised",
            what,
            self.timeout,
        )


async def stop_producer(producer: AIOKafkaProducer, budget: StopBudget, what: str) -> None:
    """Stop an aiokafka producer within ``budget``; past it, drop what Kafka has not taken."""
    if not await budget.wait(what, producer.stop()):
        await close_producer_now(producer)


async def close_producer_now(producer: AIOKafkaProducer) -> None:
    """Close an aiokafka producer's sender and connections, dropping what Kafka has not taken.

    aiokafka's ``stop()`` waits until every batch is delivered or has expired, and offers no
    way to give up on them: this is the way out.
    """
    producer._closed = True  # stopped, as far as aiokafka's bookkeeping goes
    try:
        if producer._sender is not None:
            await producer._sender.close()
        await producer.client.close()
    except asyncio.CancelledError:
        if cancelling():
            raise  # not the sender's own cancellation
    except Exception as exc:
        log.debug("closing the producer left: %r", exc)


def cancelling() -> bool:
    """Whether the running task itself has been asked to stop (not a task it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_consumer(
    consumer: AIOKafkaConsumer, stopping: Coroutine[Any, Any, Any] | None = None
) -> None:
    """aiokafka's ``consumer.stop()``, without the stray cancellation it can raise.

    Its fetcher re-raises the cancellation of its own fetch requests when it closes
    (aiokafka#647; with Kafka away, a request waiting out its retry backoff). That
    ``CancelledError`` is not the caller's: passed on, it would abort the caller's own stop
    half-way (ingest's, say, before the events in flight reach the spool). The consumer's
    connections, which ``stop()`` did not get to, are closed here.

    ``stopping`` is what stops the consumer when that is more than ``consumer.stop()``.
    """
    try:
        await (consumer.stop() if stopping is None else stopping)
    except asyncio.CancelledError:
        if cancelling():
            raise
        with contextlib.suppress(Exception):
            await consumer._client.close()


def stop_budget(app: Any) -> StopBudget:
    """The budget of ``app``'s stop (one per app, made on first use)."""
    budget: StopBudget | None = getattr(app, "_zapflow_stop_budget", None)
    if budget is None:
        budget = StopBudget()
        app._zapflow_stop_budget = budget
    return budget
