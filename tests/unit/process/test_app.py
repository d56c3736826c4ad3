from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, Mock

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.types import TP

from tests.helpers import wait_for
from tests.unit.process.standin import StandInEngine, envelope, write_rules
from worker.process.app import (
    ProcessApp,
    build_app,
    faust_settings,
    tick_topic_name,
    unsubscribed,
)
from worker.process.reload import RulesWatcher
from worker.process.settings import ProcessSettings
from worker.process.topics import internal_topics

OUR_ID = "ZF" + "0123456789ABCDEF0123456789ABCD"


def delivered(**kwargs: Any) -> asyncio.Future[None]:
    """A send that is delivered at once."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


@pytest.fixture
async def process_app(tmp_path: Path) -> AsyncIterator[ProcessApp]:
    write_rules(
        tmp_path,
        {"id": "auto-reply", "on": "messages.upsert", "throttle_s": 600},
        {"id": "down", "on": "connection.update", "for_s": 0},
        {"id": "per-instance", "on": "messages.upsert", "throttle_s": 600, "rekeyed": True},
    )
    engine = StandInEngine()
    settings = ProcessSettings(app_id="test-process", store="memory://", partitions=4)
    built = build_app(settings, RulesWatcher.start(tmp_path, engine), engine)
    built.app.loop = asyncio.get_running_loop()
    built.app.finalize()
    built.app.conf.store = "memory://"
    built.app.flow_control.resume()
    # Nothing leaves the process: action sends and changelog writes are recorded.
    built.actions.send = AsyncMock(side_effect=delivered)  # type: ignore[method-assign]
    built.rekeyed.send = AsyncMock(side_effect=delivered)  # type: ignore[method-assign]
    for table in (built.state, built.seen):
        table.send_changelog = Mock()
    yield built


def sent(built: ProcessApp) -> list[tuple[bytes, dict[str, Any]]]:
    return [
        (c.kwargs["key"], orjson.loads(c.kwargs["value"]))
        for c in built.actions.send.await_args_list
    ]


async def test_agent_emits_action_records_keyed_by_idempotency_key(process_app: ProcessApp) -> None:
    data = {"keyId": "3A6B", "keyFromMe": False, "keyRemoteJid": "5511@s.whatsapp.net"}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(
            orjson.dumps(envelope("messages.upsert", data, id="01JA")),
            key=b"shop-bot:5511",
            partition=2,
        )
        await agent.put(
            orjson.dumps(envelope("messages.upsert", data, id="01JB")),
            key=b"shop-bot:5511",
            partition=2,
        )
    assert sent(process_app) == [
        (
            b"auto-reply:01JA:0:-:fire",
            {
                "bundle_version": process_app.processor.watcher.current.bundle.version,
                "event_id": "01JA",
                "idempotency_key": "auto-reply:01JA:0:-:fire",
                "kind": "log",
                "rule_id": "auto-reply",
            },
        )
    ]
    assert process_app.state["auto-reply|shop-bot"][0] == 2
    assert process_app.processor.counters.duplicates == 1


async def test_agent_drops_the_echoes_of_our_own_sends(process_app: ProcessApp) -> None:
    echo = {"keyId": OUR_ID, "keyFromMe": True, "info": {"type": "append"}}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(orjson.dumps(envelope("messages.upsert", echo, id="01JE")), key=b"k")
    assert sent(process_app) == []
    assert process_app.processor.counters.echoes == 1


async def test_agent_survives_a_broken_event(process_app: ProcessApp) -> None:
    data = {"keyId": "3A6B", "keyFromMe": False}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(b"\xff not json", key=b"k")
        await agent.put(orjson.dumps(envelope("messages.upsert", data, id="01JA")), key=b"k")
    assert [key for key, _ in sent(process_app)] == [b"auto-reply:01JA:0:-:fire"]
    assert process_app.processor.counters.errors == 1


async def test_tick_agent_fires_due_deadlines_of_the_tick_partition(
    process_app: ProcessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when the worker holds the ticks' partitions (it sends ticks only for those).
    ticks_topic = process_app.ticks.get_topic_name()
    held = {TP(ticks_topic, 0), TP(ticks_topic, 1)}
    monkeypatch.setattr(process_app.app.assignor, "assigned_actives", lambda: held)
    closed = {"instance": "shop-bot", "state": "close", "statusReason": 428}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(
            orjson.dumps(envelope("connection.update", closed, id="01JD")),
            key=b"shop-bot",
            partition=1,
        )
    async with process_app.fire_timers.test_context() as ticks:
        await ticks.put(b"", partition=0)
        await ticks.put(b"", partition=1)
    assert [key for key, _ in sent(process_app)] == [b"down:01JD:0:-:fire"]
    assert "down|shop-bot" not in process_app.state


async def test_events_of_rekeyed_rules_go_on_by_key_and_are_evaluated_from_the_rekeyed_topic(
    process_app: ProcessApp,
) -> None:
    data = {"keyId": "3A6B", "keyFromMe": False, "keyRemoteJid": "5511@s.whatsapp.net"}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(
            orjson.dumps(envelope("messages.upsert", data, id="01JA")),
            key=b"shop-bot:5511",
            partition=2,
        )
    [forward] = process_app.rekeyed.send.await_args_list
    assert forward.kwargs["key"] == b"shop-bot"
    assert orjson.loads(forward.kwargs["value"])["rules"] == ["per-instance"]
    assert [key for key, _ in sent(process_app)] == [b"auto-reply:01JA:0:-:fire"]

    async with process_app.evaluate_rekeyed.test_context() as agent:
        await agent.put(forward.kwargs["value"], key=b"shop-bot", partition=1)
    assert [key for key, _ in sent(process_app)] == [
        b"auto-reply:01JA:0:-:fire",
        b"per-instance:01JA:0:-:fire",
    ]
    assert process_app.state["per-instance|shop-bot"][0] == 1
    assert process_app.state["auto-reply|shop-bot"][0] == 2


async def test_a_forward_kafka_refuses_is_logged_and_counted(
    process_app: ProcessApp, caplog: pytest.LogCaptureFixture
) -> None:
    process_app.rekeyed.send.side_effect = MessageSizeTooLargeError()
    data = {"keyId": "3A6B", "keyFromMe": False}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(orjson.dumps(envelope("messages.upsert", data, id="01JA")), key=b"k")
    assert process_app.processor.counters.emit_errors == 1
    assert "forward of event 01JA by key 'shop-bot' not produced: Kafka refuses it" in caplog.text


def test_faust_settings_follow_the_process_settings() -> None:
    settings = ProcessSettings(
        bootstrap_servers="127.0.0.1:9092, 127.0.0.1:9093",
        partitions=3,
        faust={"broker_session_timeout": 10, "web_enabled": True},
    )
    conf = faust_settings(settings)
    assert conf["broker"] == ["kafka://127.0.0.1:9092", "kafka://127.0.0.1:9093"]
    assert conf["topic_partitions"] == 3
    assert conf["broker_session_timeout"] == 10
    assert conf["web_enabled"] is True
    assert tick_topic_name("zapflow-process") == "zapflow-process-ticks"


async def test_an_action_kafka_refuses_is_logged_and_counted(
    process_app: ProcessApp, caplog: pytest.LogCaptureFixture
) -> None:
    process_app.actions.send.side_effect = MessageSizeTooLargeError()
    data = {"keyId": "3A6B", "keyFromMe": False}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(orjson.dumps(envelope("messages.upsert", data, id="01JA")), key=b"k")
    assert process_app.processor.counters.emit_errors == 1
    assert "action auto-reply:01JA:0:-:fire not produced: Kafka refuses it" in caplog.text


def test_events_a_reloaded_bundle_adds_are_named_for_the_restart_warning() -> None:
    events = frozenset({"messages.upsert", "call.upsert", "groups.update"})
    assert unsubscribed(events, ("messages.upsert",)) == ["call.upsert", "groups.update"]
    assert unsubscribed(frozenset({"messages.upsert"}), ("messages.upsert",)) == []


async def test_the_internal_topics_are_the_compacted_changelogs_the_ticks_and_rekeyed(
    process_app: ProcessApp,
) -> None:
    ticks, rekeyed = process_app.ticks.get_topic_name(), process_app.rekeyed.get_topic_name()
    assert internal_topics(process_app.app, ticks, rekeyed) == {
        "test-process-rule-state-changelog": {"cleanup.policy": "compact"},
        "test-process-seen-messages-changelog": {"cleanup.policy": "compact"},
        "test-process-ticks": {},
        "test-process-rekeyed": {},
    }


async def test_an_event_whose_state_cannot_be_written_is_evaluated_again(
    process_app: ProcessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.process.app.RETRY_FIRST_S", 0.01)
    process_app.state.send_changelog.side_effect = [RuntimeError("0 partitions"), Mock()]
    data = {"keyId": "3A6B", "keyFromMe": False}
    async with process_app.evaluate_events.test_context() as agent:
        await agent.put(orjson.dumps(envelope("messages.upsert", data, id="01JA")), key=b"k")
        await wait_for(lambda: sent(process_app) != [], 5, message="the action after the retry")
    assert [key for key, _ in sent(process_app)] == [b"auto-reply:01JA:0:-:fire"]
    assert process_app.processor.counters.state_retries == 1
    assert process_app.processor.counters.errors == 0


def test_tables_have_no_standby_replicas() -> None:
    assert faust_settings(ProcessSettings())["table_standby_replicas"] == 0
