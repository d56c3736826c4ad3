"""Prometheus metrics of a running zapflow process, read from each stage's own counters.

The stages keep plain counters (``IngestStats``, ``ProcessCounters`` …) and know nothing of
Prometheus; the collectors here turn them into metric families when ``/metrics`` is scraped,
so a scrape costs nothing on the hot path. Names follow Prometheus conventions:
``zapflow_<stage>_<what>_total`` for counters, base units (``_seconds``, ``_bytes``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.ingest.stats import LATENCY_BUCKETS, IngestStats, SubscriptionState
from worker.process.engine import BundleEngine, BundleLike, EvaluationLike


class RuleTally:
    """Per-rule outcome counts, taken from the traces the engine returns."""

    def __init__(self) -> None:
        #: (rule id, outcome, reason) -> count
        self.counts: Counter[tuple[str, str, str]] = Counter()
        #: rule id -> action records produced
        self.fires: Counter[str] = Counter()

    def add(self, evaluation: EvaluationLike) -> None:
        # outcomes() reads the trace without building its entries (cheap on every event).
        for rule_id, outcome, reason in evaluation.outcomes():  # type: ignore[attr-defined]
            self.counts[(rule_id, outcome, reason or "")] += 1
        for record in evaluation.actions:
            self.fires[record.rule_id] += 1  # type: ignore[attr-defined]

    def per_rule(self) -> dict[str, dict[str, int]]:
        """Rule id -> {evaluations, matches, fires, suppressions, errors} (for status)."""
        rows: dict[str, dict[str, int]] = {}
        for (rule, outcome, _reason), n in self.counts.items():
            row = rows.setdefault(
                rule, {"evaluations": 0, "matches": 0, "fires": 0, "suppressions": 0, "errors": 0}
            )
            row["evaluations"] += n
            if outcome in ("matched", "pending", "resolved"):
                row["matches"] += n
            elif outcome == "suppressed":
                row["suppressions"] += n
            elif outcome == "error":
                row["errors"] += n
        for rule, n in self.fires.items():
            rows.setdefault(
                rule, {"evaluations": 0, "matches": 0, "fires": 0, "suppressions": 0, "errors": 0}
            )["fires"] = n
        return rows


class TallyingEngine(BundleEngine):
    """The real engine, counting each rule's outcomes for metrics as it evaluates."""

    def __init__(self, tally: RuleTally) -> None:
        super().__init__()
        self.tally = tally

    def evaluate(
        self,
        bundle: BundleLike,
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike:
        result = super().evaluate(bundle, state, envelope, now)
        self.tally.add(result)
        return result

    def evaluate_rekeyed(
        self,
        bundle: BundleLike,
        rule_ids: Collection[str],
        state: Mapping[str, Any],
        envelope: Mapping[str, Any],
        now: datetime,
    ) -> EvaluationLike:
        result = super().evaluate_rekeyed(bundle, rule_ids, state, envelope, now)
        self.tally.add(result)
        return result

    def fire_due(
        self, bundle: BundleLike, state: Mapping[str, Any], now: datetime
    ) -> EvaluationLike:
        result = super().fire_due(bundle, state, now)
        self.tally.add(result)
        return result


class IngestCollector(Collector):
    """``zapflow_ingest_*`` from :class:`IngestStats`."""

    def __init__(self, stats: IngestStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        subs = list(stats.subscriptions.values())
        labels = ["instance", "event"]
        events = CounterMetricFamily(
            "zapflow_ingest_events", "Frames received from the gateway.", labels=labels
        )
        reconnects = CounterMetricFamily(
            "zapflow_ingest_reconnects",
            "Connections that ended and were sought again.",
            labels=labels,
        )
        auth = CounterMetricFamily(
            "zapflow_ingest_auth_failures",
            "Handshakes the gateway refused with 401.",
            labels=labels,
        )
        invalid = CounterMetricFamily(
            "zapflow_ingest_invalid_frames",
            "Frames set aside to the invalid topic (not JSON, binary, too large).",
            labels=labels,
        )
        resubscribes = CounterMetricFamily(
            "zapflow_ingest_resubscribes",
            "Silent subscriptions re-established make-before-break.",
            labels=labels,
        )
        for sub in subs:
            key = [sub.instance, sub.event]
            events.add_metric(key, sub.frames)
            reconnects.add_metric(key, sub.reconnects)
            auth.add_metric(key, sub.auth_failures)
            invalid.add_metric(key, sub.invalid_frames)
            resubscribes.add_metric(key, sub.resubscribes)
        yield from (events, reconnects, auth, invalid, resubscribes)

        states = GaugeMetricFamily(
            "zapflow_ingest_subscriptions", "Subscriptions by state.", labels=["state"]
        )
        counts = stats.count_states()
        for state in SubscriptionState:
            states.add_metric([state.value], counts[state])
        yield states

        yield CounterMetricFamily(
            "zapflow_ingest_produced", "Records acknowledged by Kafka.", value=stats.produced
        )
        yield CounterMetricFamily(
            "zapflow_ingest_produce_errors",
            "Records a produce attempt failed to deliver.",
            value=stats.produce_errors,
        )
        yield CounterMetricFamily(
            "zapflow_ingest_spooled", "Records written to the disk spool.", value=stats.spooled
        )
        yield CounterMetricFamily(
            "zapflow_ingest_spool_drained", "Records sent from the spool.", value=stats.drained
        )
        yield CounterMetricFamily(
            "zapflow_ingest_spool_dropped",
            "Records lost because the spool was full.",
            value=stats.spool_dropped,
        )
        yield GaugeMetricFamily(
            "zapflow_ingest_spool_records", "Records waiting in the spool.", value=stats.spool_depth
        )
        yield GaugeMetricFamily(
            "zapflow_ingest_spool_bytes", "Size of the spool.", value=stats.spool_bytes
        )
        yield GaugeMetricFamily(
            "zapflow_ingest_kafka_direct",
            "1 while events go straight to Kafka, 0 while they are spooled.",
            value=1 if stats.mode == "direct" else 0,
        )
        hist = stats.produce_latency
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip([*LATENCY_BUCKETS, float("inf")], hist.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        latency = HistogramMetricFamily(
            "zapflow_ingest_produce_latency_seconds",
            "Time from receiving a frame to Kafka acknowledging it.",
        )
        latency.add_metric([], buckets, sum_value=hist.sum)
        yield latency


class ProcessCollector(Collector):
    """``zapflow_rules_*`` from the processing stage's counters and the per-rule tally."""

    def __init__(self, counters: Any, tally: RuleTally, bundle_version: Callable[[], str]) -> None:
        self.counters = counters
        self.tally = tally
        self.bundle_version = bundle_version

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        simple = {
            "zapflow_rules_events": ("Envelopes read from the event topics.", c.events),
            "zapflow_rules_events_evaluated": ("Envelopes evaluated by the rules.", c.evaluated),
            "zapflow_rules_events_skipped_echo": (
                "Gateway echoes of our own sends, never evaluated.",
                c.echoes,
            ),
            "zapflow_rules_events_skipped_duplicate": (
                "Second deliveries of a gateway message that would have acted again, dropped.",
                c.duplicates,
            ),
            "zapflow_rules_event_errors": ("Envelopes that could not be evaluated.", c.errors),
            "zapflow_rules_events_forwarded": (
                "Envelopes sent on to the repartition topic for rekeyed rules (one per key).",
                c.forwarded,
            ),
            "zapflow_rules_state_retries": (
                "Events evaluated again because their state could not be written.",
                c.state_retries,
            ),
            "zapflow_rules_actions": (
                "Action records produced (events and timers).",
                c.actions + c.timer_actions,
            ),
            "zapflow_rules_reloads": ("Rule bundles swapped in by a reload.", c.reloads),
            "zapflow_rules_reload_failures": (
                "Reloads refused; the old bundle stayed.",
                c.reload_failures,
            ),
        }
        for name, (doc, value) in simple.items():
            yield CounterMetricFamily(name, doc, value=value)

        info = InfoMetricFamily("zapflow_rules_bundle", "The rule bundle in force.")
        info.add_metric([], {"version": self.bundle_version()})
        yield info

        evaluations = CounterMetricFamily(
            "zapflow_rules_evaluations", "Rule evaluations.", labels=["rule"]
        )
        matches = CounterMetricFamily(
            "zapflow_rules_matches", "Evaluations whose condition held.", labels=["rule"]
        )
        fires = CounterMetricFamily(
            "zapflow_rules_fires", "Actions a rule produced.", labels=["rule"]
        )
        errors = CounterMetricFamily(
            "zapflow_rules_errors", "Evaluations that failed with an error.", labels=["rule"]
        )
        suppressed = CounterMetricFamily(
            "zapflow_rules_suppressions",
            "Matches that did not act, by reason (throttle, window, quiet_hours, inhibited, shadow…).",
            labels=["rule", "reason"],
        )
        for rule, row in sorted(self.tally.per_rule().items()):
            evaluations.add_metric([rule], row["evaluations"])
            matches.add_metric([rule], row["matches"])
            fires.add_metric([rule], row["fires"])
            errors.add_metric([rule], row["errors"])
        for (rule, outcome, reason), n in sorted(self.tally.counts.items()):
            if outcome == "suppressed":
                suppressed.add_metric([rule, reason], n)
        yield from (evaluations, matches, fires, errors, suppressed)
