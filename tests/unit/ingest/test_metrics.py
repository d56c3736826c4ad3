from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from worker.ingest.metrics import register
from worker.ingest.stats import IngestStats, SubscriptionState


def stats() -> IngestStats:
    s = IngestStats(produced=10, spool_depth=3, spooled=5, drained=2)
    s.mode = "direct"
    sub = s.subscription("shop-bot", "messages.upsert")
    sub.state = SubscriptionState.OPEN
    sub.frames = 11
    sub.connects = 2
    sub.reconnects = 1
    sub.delays.append(1.234)
    bad = s.subscription("support", "call.upsert")
    bad.state = SubscriptionState.AUTH_FAILED
    bad.auth_failures = 4
    s.produce_latency.observe(0.003)
    return s


def test_metrics_export_subscription_states_counters_and_latency() -> None:
    registry = CollectorRegistry()
    register(registry, stats())
    text = generate_latest(registry).decode()
    assert 'zapflow_ingest_frames_total{event="messages.upsert",instance="shop-bot"} 11.0' in text
    assert 'zapflow_ingest_auth_failures_total{event="call.upsert",instance="support"} 4.0' in text
    assert (
        'zapflow_ingest_subscription_state{event="call.upsert",instance="support",'
        'state="auth_failed"} 1.0'
    ) in text
    assert "zapflow_ingest_produced_total 10.0" in text
    assert "zapflow_ingest_spool_depth 3.0" in text
    assert "zapflow_ingest_kafka_direct 1.0" in text
    assert 'zapflow_ingest_produce_latency_seconds_bucket{le="0.005"} 1.0' in text
    assert "zapflow_ingest_produce_latency_seconds_count 1.0" in text


def test_status_and_readiness() -> None:
    s = stats()
    status = s.status()
    assert status["kafka"] == "direct"
    assert status["received"] == 11
    assert status["subscriptions"][0] == {
        "instance": "shop-bot",
        "event": "messages.upsert",
        "state": "open",
        "connects": 2,
        "reconnects": 1,
        "auth_failures": 0,
        "frames": 11,
        "invalid": 0,
        "last_delay_s": 1.23,
    }
    assert s.readiness() == (True, "2 subscriptions connected")
    s.subscription("x", "call.upsert")
    assert s.readiness() == (False, "not yet connected: x/call.upsert")
