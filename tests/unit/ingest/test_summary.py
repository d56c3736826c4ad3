from __future__ import annotations

import pytest

from worker.config import Secret
from worker.ingest import stats as stats_module
from worker.ingest.config import IngestConfig, InstanceConfig
from worker.ingest.service import status_line, summary_line
from worker.ingest.stats import IngestStats, LatencyHistogram, SubscriptionState


def test_status_line_names_subscriptions_broker_and_topics() -> None:
    config = IngestConfig(
        gateway_url="ws://gw:8084/ws/events",
        instances=(
            InstanceConfig("a", Secret("t"), ("messages.upsert", "call.upsert")),
            InstanceConfig("b", Secret("t"), ("messages.upsert",)),
        ),
    )
    assert status_line(config, True, 0) == (
        "ingest: 3 subscriptions (2 instances) to ws://gw:8084/ws/events; "
        "Kafka localhost:9092; topics codechat.* (3)"
    )
    assert status_line(config, False, 12) == (
        "ingest: 3 subscriptions (2 instances) to ws://gw:8084/ws/events; "
        "Kafka localhost:9092 (not reachable yet); topics codechat.* (3), "
        "12 events in the spool to send first"
    )


def test_summary_line_counts_states_and_rates_over_the_interval() -> None:
    stats = IngestStats(received=3000, produced=2900, invalid_frames=2, spool_depth=0)
    stats.mode = "direct"
    for i, state in enumerate(
        [SubscriptionState.OPEN] * 3 + [SubscriptionState.AUTH_FAILED, SubscriptionState.BACKOFF]
    ):
        stats.subscription("i", f"e{i}").state = state
    before = list(stats.produce_latency.counts)
    for _ in range(100):
        stats.produce_latency.observe(0.004)
    assert summary_line(stats, 1000, 2.0, before) == (
        "ingest: 1000 events/s; subscriptions 3 open, 0 connecting, 1 in backoff, "
        "1 auth-failed; 2900 produced, 2 invalid; Kafka direct, spool 0, p99 produce 5ms"
    )


def test_latency_quantile_over_an_interval() -> None:
    hist = LatencyHistogram()
    for _ in range(99):
        hist.observe(30.0)
    earlier = list(hist.counts)
    for _ in range(100):
        hist.observe(0.002)
    assert hist.quantile(0.5) == 0.0025
    assert hist.quantile(0.99, since=earlier) == 0.0025
    assert hist.quantile(0.99) == 30.0
    assert LatencyHistogram().quantile(0.99) is None


def test_a_subscriptions_since_moves_only_when_its_state_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([100.0, 200.0])
    monkeypatch.setattr(stats_module.time, "time", lambda: next(clock))
    stats = IngestStats().subscription("shop", "messages.upsert")
    assert stats.state is SubscriptionState.CONNECTING and stats.since is None
    stats.state = SubscriptionState.OPEN
    assert stats.since == 100.0
    stats.frames += 1
    stats.state = SubscriptionState.OPEN
    assert stats.since == 100.0
    stats.state = SubscriptionState.BACKOFF
    assert stats.state is SubscriptionState.BACKOFF and stats.since == 200.0
