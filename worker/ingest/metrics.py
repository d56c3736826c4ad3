"""Prometheus metrics of ingest, read from :class:`~worker.ingest.stats.IngestStats` at scrape time.

A collector rather than counters updated in the hot path: the read loop only bumps
plain integers, and the cost of building metric families is paid per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from worker.ingest.stats import LATENCY_BUCKETS, IngestStats, SubscriptionState


class IngestCollector(Collector):
    """Exports one :class:`IngestStats`."""

    def __init__(self, stats: IngestStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self.stats
        labels = ["instance", "event"]
        per_sub = {
            "frames": ("Frames received, valid and invalid", "frames"),
            "invalid_frames": ("Frames sent to the invalid topic", "invalid_frames"),
            "connects": ("Connections opened", "connects"),
            "reconnects": ("Connections that ended and were sought again", "reconnects"),
            "auth_failures": ("Handshakes refused with HTTP 401", "auth_failures"),
            "connect_failures": ("Connection attempts failed otherwise", "connect_failures"),
            "resubscribes": ("Silent subscriptions re-established", "resubscribes"),
        }
        families = {
            name: CounterMetricFamily(f"zapflow_ingest_{name}", doc, labels=labels)
            for name, (doc, _) in per_sub.items()
        }
        state = GaugeMetricFamily(
            "zapflow_ingest_subscription_state",
            "1 for the state each subscription is in",
            labels=[*labels, "state"],
        )
        for sub in stats.subscriptions.values():
            key = [sub.instance, sub.event]
            for name, (_, attr) in per_sub.items():
                families[name].add_metric(key, getattr(sub, attr))
            for option in SubscriptionState:
                state.add_metric([*key, str(option)], 1.0 if sub.state == option else 0.0)
        yield from families.values()
        yield state
        yield CounterMetricFamily(
            "zapflow_ingest_produced", "Records acknowledged by Kafka", value=stats.produced
        )
        yield CounterMetricFamily(
            "zapflow_ingest_spooled", "Records written to the disk spool", value=stats.spooled
        )
        yield CounterMetricFamily(
            "zapflow_ingest_drained", "Records sent from the spool", value=stats.drained
        )
        yield CounterMetricFamily(
            "zapflow_ingest_spool_dropped",
            "Records lost because the spool was full",
            value=stats.spool_dropped,
        )
        yield CounterMetricFamily(
            "zapflow_ingest_produce_errors", "Failed sends", value=stats.produce_errors
        )
        yield GaugeMetricFamily(
            "zapflow_ingest_spool_depth", "Records in the spool", value=stats.spool_depth
        )
        yield GaugeMetricFamily(
            "zapflow_ingest_spool_bytes", "Bytes in the spool", value=stats.spool_bytes
        )
        yield GaugeMetricFamily(
            "zapflow_ingest_kafka_direct",
            "1 while events go to Kafka directly, 0 while they are spooled",
            value=1.0 if stats.mode == "direct" else 0.0,
        )
        hist = stats.produce_latency
        cumulative = 0
        buckets = []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), hist.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "zapflow_ingest_produce_latency_seconds",
            "Time from receiving a frame to Kafka's acknowledgement",
            buckets=buckets,
            sum_value=hist.sum,
        )


def register(registry: CollectorRegistry, stats: IngestStats) -> IngestCollector:
    """Add ingest's metrics to ``registry`` (e.g. the process's ``Observability.registry``)."""
    collector = IngestCollector(stats)
    registry.register(collector)
    return collector
