"""``zapflow tail`` and ``zapflow status`` against a real broker and a real status port."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.helpers import run_cli
from worker.events import actions_topic, event_topic
from worker.observability.server import Observability, StatusServer


async def test_tail_prints_envelopes_and_actions_since_a_time(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    events, actions = event_topic("connection.update", unique_prefix), actions_topic(unique_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(events, 2, 1), NewTopic(actions, 1, 1)])
    await admin.close()
    envelope = {
        "id": "01JX",
        "instance": "shop-bot",
        "event": "connection.update",
        "received_at": "2026-11-25T20:41:07.123Z",
        "source": {},
        "data": {"instance": "shop-bot", "state": "close", "statusReason": 401},
    }
    record = {
        "rule_id": "instance-logged-out",
        "kind": "notify",
        "created_at": "2026-11-25T20:41:07.200Z",
        "params": {"channel": {"name": "ops"}, "text": "shop-bot saiu"},
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(events, json.dumps(envelope).encode(), key=b"shop-bot")
    await producer.send_and_wait(actions, json.dumps(record).encode(), key=b"k")
    await producer.stop()

    code, out, err = await run_cli(
        "tail",
        "connection.update",
        "actions",
        "--bootstrap",
        kafka_bootstrap,
        "--prefix",
        unique_prefix,
        "--since",
        "1h",
        "--limit",
        "2",
    )
    assert code == 0, err
    lines = sorted(out.splitlines())
    assert lines == [
        "20:41:07.123 shop-bot       connection.update          state=close reason=401",
        "20:41:07.200 instance-logged-out → notify #ops shop-bot saiu",
    ]


async def test_status_prints_the_sections_of_a_running_process() -> None:
    obs = Observability()
    obs.readiness["kafka"] = lambda: (True, "127.0.0.1:9092 reachable")
    obs.status["ingest"] = lambda: {
        "events_per_s": 12.5,
        "subscriptions": [
            {"instance": "shop-bot", "event": "messages.upsert", "state": "open"},
            {"instance": "shop-bot", "event": "connection.update", "state": "auth_failed"},
        ],
    }
    server = StatusServer(obs, port=0)
    await server.start()
    try:
        code, out, err = await run_cli("status", "--url", server.url)
        code_json, out_json, _ = await run_cli("status", "--url", server.url, "--json")
    finally:
        await server.stop()
    assert code == 0, err
    assert "✓ kafka: 127.0.0.1:9092 reachable" in out
    assert "ingest  events_per_s=12.5" in out
    assert "auth_failed" in out and "connection.update" in out
    assert json.loads(out_json)["ingest"]["events_per_s"] == 12.5
    assert code_json == 0


async def test_status_says_clearly_when_nothing_answers() -> None:
    code, out, err = await run_cli("status", "--url", "http://127.0.0.1:9")
    assert out == ""
    assert code == 1
    assert err.startswith(
        "zapflow: error: no zapflow process answered at http://127.0.0.1:9/status"
    )
    assert "Traceback" not in err
