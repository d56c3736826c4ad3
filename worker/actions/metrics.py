"""``zapflow_actions_*`` Prometheus metrics, read from the executor's counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.actions.stats import ExecutorStats


class ExecutorLike(Protocol):
    @property
    def stats(self) -> ExecutorStats: ...

    @property
    def pending(self) -> int: ...

    @property
    def in_flight(self) -> int: ...


class ActionsCollector(Collector):
    """Register with ``registry.register(ActionsCollector(executor))``."""

    def __init__(self, executor: ExecutorLike) -> None:
        self.executor = executor

    def collect(self) -> Iterator[Metric]:
        stats = self.executor.stats
        performed = CounterMetricFamily(
            "zapflow_actions_performed", "Actions performed successfully.", labels=["kind"]
        )
        for kind, n in sorted(stats.performed.items()):
            performed.add_metric([kind], n)
        yield performed
        dead = CounterMetricFamily(
            "zapflow_actions_dead_letters",
            "Actions written to the dead-letter topic; retriable=true means retries ran out.",
            labels=["kind", "retriable"],
        )
        for (kind, retriable), n in sorted(stats.dead_lettered.items()):
            dead.add_metric([kind, "true" if retriable else "false"], n)
        yield dead
        retries = CounterMetricFamily(
            "zapflow_actions_retries", "Failed attempts scheduled for a retry.", labels=["kind"]
        )
        for kind, n in sorted(stats.retries.items()):
            retries.add_metric([kind], n)
        yield retries
        simple = {
            "zapflow_actions_duplicates_skipped": (
                "Records whose idempotency key was already done or failed.",
                stats.duplicates_skipped,
            ),
            "zapflow_actions_resumed": (
                "Pending actions resumed from the table after a restart or rebalance.",
                stats.resumed,
            ),
            "zapflow_actions_invalid_records": (
                "Records on the actions topic that were not valid action records.",
                stats.invalid_records,
            ),
            "zapflow_actions_send_limit_waits": (
                "WhatsApp sends that waited for a per-instance or per-chat limit.",
                stats.send_limit_waits,
            ),
            "zapflow_actions_send_limit_wait_seconds": (
                "Time sends spent waiting for send limits.",
                stats.send_limit_wait_seconds,
            ),
        }
        for name, (doc, value) in simple.items():
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "zapflow_actions_pending",
            "Actions accepted and not finished (in flight, waiting to retry or for a limit).",
            value=self.executor.pending,
        )
        yield GaugeMetricFamily(
            "zapflow_actions_in_flight", "Requests on the wire.", value=self.executor.in_flight
        )
