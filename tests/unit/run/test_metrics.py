from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from worker.ingest.stats import IngestStats, SubscriptionState
from worker.run.metrics import IngestCollector, ProcessCollector, RuleTally, TallyingEngine

RULES = Path(__file__).parents[3] / "rules"
NOW = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # 20:30 in São Paulo: after hours


def _envelope(event: str, data: object, n: int = 1) -> dict[str, object]:
    return {
        "id": f"01JV6Z8K3QW5T7Y9B2N4M6P8R{n}",
        "instance": "shop-bot",
        "event": event,
        "received_at": "2026-11-25T23:30:00.000Z",
        "source": {"gateway": "gw:8084", "connection": "c", "seq": n},
        "data": data,
    }


TEXT = {
    "keyId": "3A6B1C2D3E4F5A6B7C8D",
    "keyFromMe": False,
    "pushName": "Maria",
    "keyRemoteJid": "5511987654321@s.whatsapp.net",
    "messageType": "conversation",
    "content": {"text": "Oi"},
    "messageTimestamp": 1764113400,
    "instanceId": 1,
    "isGroup": False,
    "info": {"type": "notify"},
}


def test_tally_counts_outcomes_and_fires_per_rule() -> None:
    bundle = TallyingEngine(RuleTally()).load(RULES)
    tally = RuleTally()
    engine = TallyingEngine(tally)
    state: dict[str, object] = {}
    for n in (1, 2):
        ev = engine.evaluate(bundle, state, _envelope("messages.upsert", TEXT, n), NOW)
        for key, value in ev.changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    rows = tally.per_rule()
    assert rows["after-hours-reply"]["evaluations"] == 2
    assert rows["after-hours-reply"]["fires"] == 1
    assert rows["after-hours-reply"]["suppressions"] == 1  # the throttle, the second time
    assert tally.counts[("after-hours-reply", "suppressed", "throttle")] == 1


def test_process_collector_exposes_per_rule_series_and_bundle_version() -> None:
    class Counters:
        events = 3
        evaluated = 2
        echoes = 1
        duplicates = 0
        errors = 0
        state_retries = 0
        actions = 1
        forwarded = 0
        timer_actions = 0
        reloads = 0
        reload_failures = 0

    tally = RuleTally()
    tally.counts[("group-welcome", "suppressed", "throttle")] = 2
    tally.fires["group-welcome"] = 4
    registry = CollectorRegistry()
    registry.register(ProcessCollector(Counters(), tally, lambda: "v1@abc"))
    text = generate_latest(registry).decode()
    assert 'zapflow_rules_bundle_info{version="v1@abc"} 1.0' in text
    assert 'zapflow_rules_fires_total{rule="group-welcome"} 4.0' in text
    assert 'zapflow_rules_suppressions_total{reason="throttle",rule="group-welcome"} 2.0' in text
    assert "zapflow_rules_events_skipped_echo_total 1.0" in text


def test_ingest_collector_reports_states_counts_and_latency() -> None:
    stats = IngestStats()
    sub = stats.subscription("shop-bot", "messages.upsert")
    sub.state = SubscriptionState.OPEN
    sub.frames = 7
    stats.subscription("shop-bot", "connection.update").state = SubscriptionState.AUTH_FAILED
    stats.produced = 7
    stats.produce_latency.observe(0.003)
    registry = CollectorRegistry()
    registry.register(IngestCollector(stats))
    text = generate_latest(registry).decode()
    assert 'zapflow_ingest_events_total{event="messages.upsert",instance="shop-bot"} 7.0' in text
    assert 'zapflow_ingest_subscriptions{state="open"} 1.0' in text
    assert 'zapflow_ingest_subscriptions{state="auth_failed"} 1.0' in text
    assert 'zapflow_ingest_produce_latency_seconds_bucket{le="0.005"} 1.0' in text
    assert "zapflow_ingest_produce_latency_seconds_count 1.0" in text


def test_dev_view_computes_per_topic_rates_between_polls() -> None:
    from worker.run.dev import DevState

    state = DevState()

    def poll(frames: int, at: float) -> None:
        state.worker_status = {
            "ingest": {
                "subscriptions": [
                    {"event": "messages.upsert", "frames": frames},
                    {"event": "messages.upsert", "frames": 1},
                ]
            }
        }
        state.update_rates(at)

    poll(10, 100.0)
    assert state.topics == {"messages.upsert": (11, 0.0)}
    poll(30, 102.0)
    assert state.topics == {"messages.upsert": (31, 10.0)}
