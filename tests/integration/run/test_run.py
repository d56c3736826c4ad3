"""``zapflow run`` end to end: simulator → ingest → Kafka → rules → actions → simulator/webhook.

One worker process serves the whole module (starting it takes a while); each test drives
its own instance or chat so the tests do not see each other's effects.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import run_cli, wait_for
from tests.integration.run.harness import RunningWorker, start_worker
from worker import schemas
from worker.console.tail import topic_partitions
from worker.events import STREAMED_EVENTS, actions_topic, dlq_topic, event_topic, invalid_topic

pytestmark = pytest.mark.asyncio(loop_scope="module")

INSTANCES = ("shop-a", "shop-b", "shop-c", "shop-d")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningWorker]:
    prefix = f"run-{time.time_ns() % 10**9}."
    running = await start_worker(kafka_bootstrap, prefix, tmp_path_factory.mktemp("run"), INSTANCES)
    try:
        await running.wait_ready()
        yield running
    finally:
        code = await running.stop()
        await running.sim.stop()
        await running.inbox.stop()
        assert code == 0, f"zapflow run exited with {code}:\n{running.log()}"


def _sends(worker: RunningWorker, to: str) -> list[dict[str, object]]:
    return [
        c.body
        for c in worker.sim.rest_calls
        if "/message/sendText/" in c.path
        and isinstance(c.body, dict)
        and c.body.get("number") == to
    ]


async def test_a_text_gets_one_reply_although_the_gateway_echoes_it_back(
    worker: RunningWorker,
) -> None:
    factory = worker.sim.factory("shop-a")
    message = factory.received_text(time.time(), "Oi, tudo bem?")
    chat = str(message["keyRemoteJid"])
    before = (await worker.status())["rules"]["echoes"]
    assert await worker.sim.emit("shop-a", "messages.upsert", message)

    await wait_for(lambda: len(_sends(worker, chat)) >= 1, 60, message="the auto-reply")

    # The reply comes back from the gateway as send.message and two messages.upsert echoes;
    # wait until the rule stage has seen the two upserts, then check nothing else was sent.
    async def echoes_seen() -> bool:
        return (await worker.status())["rules"]["echoes"] >= before + 2

    await wait_for(echoes_seen, 30, message="the two echoes of the reply")
    sends = _sends(worker, chat)
    assert len(sends) == 1, sends
    assert sends[0]["textMessage"] == {"text": f"Olá {message['pushName']}! Já vamos responder."}
    options = sends[0]["options"]
    assert isinstance(options, dict) and str(options["messageId"]).startswith("ZF")


async def test_a_logged_out_close_alerts_on_the_webhook_once(worker: RunningWorker) -> None:
    factory = worker.sim.factory("shop-b")
    assert await worker.sim.emit("shop-b", "connection.update", factory.connection("close", 401))

    def alerts() -> list[str]:
        return [d.text for d in worker.inbox.deliveries if d.path == "/ops" and "shop-b" in d.text]

    await wait_for(lambda: bool(alerts()), 60, message="the logged-out alert")
    assert alerts() == ["shop-b logged out (401)"]


async def test_a_group_add_welcomes_each_participant_once(worker: RunningWorker) -> None:
    factory = worker.sim.factory("shop-c")
    group = factory.groups[0]
    newcomers = list(factory.contacts[:2])
    payload = factory.participants_event(group.jid, "add", newcomers, group.owner)
    assert await worker.sim.emit("shop-c", "group-participants.update", payload)

    await wait_for(lambda: len(_sends(worker, group.jid)) >= 2, 60, message="two welcomes")
    texts = sorted(str(body["textMessage"]["text"]) for body in _sends(worker, group.jid))  # type: ignore[index]
    assert texts == sorted(f"Bem-vindo(a), @{c.phone}!" for c in newcomers)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_move_with_traffic_and_pass_the_prometheus_linter(
    worker: RunningWorker,
) -> None:
    events = ("zapflow_ingest_events_total", (("event", "presence.update"), ("instance", "shop-d")))
    code, before_text = await asyncio.to_thread(worker.get, "/metrics")
    assert code == 200
    before = _samples(before_text)
    evaluations = ("zapflow_rules_evaluations_total", (("rule", "logged-out"),))
    for _ in range(5):
        assert await worker.sim.emit("shop-d", "presence.update")
    opened = worker.sim.factory("shop-d").connection("open", 200)
    assert await worker.sim.emit("shop-d", "connection.update", opened)

    produced = ("zapflow_ingest_produced_total", ())

    async def moved() -> bool:
        _, text = await asyncio.to_thread(worker.get, "/metrics")
        now = _samples(text)
        return (
            now.get(events, 0) >= before.get(events, 0) + 5
            and now.get(produced, 0) >= before.get(produced, 0) + 6
            and now.get(evaluations, 0) >= before.get(evaluations, 0) + 1
        )

    await wait_for(moved, 30, message="the traffic to show in the ingest and rules metrics")

    async def lag_reported() -> bool:
        _, text = await asyncio.to_thread(worker.get, "/metrics")
        return any(name == "zapflow_consumer_lag" for name, _ in _samples(text))

    await wait_for(lag_reported, 30, message="the consumer lag of the worker's group")
    _, after_text = await asyncio.to_thread(worker.get, "/metrics")
    after = _samples(after_text)
    assert after[("zapflow_ingest_subscriptions", (("state", "open"),))] == len(INSTANCES) * 14

    promlint = Path(sys.executable).with_name("promlint")
    assert promlint.exists(), "build the metrics linter first: make tools (needs Go)"
    lint = subprocess.run([str(promlint)], input=after_text.encode(), capture_output=True)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()


async def test_status_and_tail_work_against_the_running_worker(worker: RunningWorker) -> None:
    code, text, err = await run_cli("status", "--url", worker.http_url)
    assert code == 0, err
    assert "✓ kafka" in text and "✓ rules" in text and "✓ subscriptions" in text
    assert "shop-a" in text and "group-participants.update" in text and "open" in text
    # the worker runs on uvloop, and says so in its status and its start-up banner
    assert "on uvloop" in text
    assert (await worker.status())["event_loop"] == "uvloop"
    assert "event loop uvloop)" in worker.log_path.read_text(errors="replace")

    assert await worker.sim.emit(
        "shop-d", "connection.update", worker.sim.factory("shop-d").connection("open", 200)
    )
    code, out, err = await run_cli(
        "tail",
        "connection.update",
        "--bootstrap",
        worker.bootstrap,
        "--prefix",
        worker.prefix,
        "--since",
        "1h",
        "--limit",
        "1",
    )
    assert code == 0, err
    assert "connection.update" in out and "state=" in out


async def test_every_record_written_matches_the_shipped_schemas(worker: RunningWorker) -> None:
    prefix = worker.prefix
    topics = {event_topic(e, prefix): "envelope" for e in STREAMED_EVENTS}
    topics |= {
        actions_topic(prefix): "action",
        dlq_topic(prefix): "dlq",
        invalid_topic(prefix): "invalid",
    }
    consumer = AIOKafkaConsumer(bootstrap_servers=worker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    checked: dict[str, int] = {}
    try:
        partitions = await topic_partitions(worker.bootstrap, list(topics))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, f"could not read to the end of {sorted(str(tp) for tp in remaining)}"
            for tp, records in batches.items():
                for record in records:
                    value = json.loads(record.value)
                    problems = schemas.errors(topics[tp.topic], value)
                    assert problems == [], f"{tp.topic}@{record.offset}: {problems}"
                    checked[topics[tp.topic]] = checked.get(topics[tp.topic], 0) + 1
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    assert checked.get("envelope", 0) > 0 and checked.get("action", 0) > 0, checked
