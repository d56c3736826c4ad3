"""Reconnects, refused tokens and malformed frames, against the simulator and Kafka."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.ingest.conftest import envelope, make_config, read_topics, sequence_gaps
from worker import schemas
from worker.events import SENT_EVENTS, event_topic, invalid_topic
from worker.ingest.backoff import ReconnectPolicy
from worker.ingest.service import IngestService
from worker.ingest.stats import SubscriptionState

pytestmark = pytest.mark.integration

EVENTS = ("messages.upsert", "connection.update", "presence.update", "call.upsert")


async def _traffic(gateway: Any, name: str, events: tuple[str, ...], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for event in events:
            await gateway.emit(name, event)
        await asyncio.sleep(0.005)


async def test_sockets_closed_ten_times_reconnect_with_backoff_and_lose_nothing_delivered(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    shop = gateway.create_instance("shop-bot")
    config = make_config(
        gateway,
        [(shop.name, shop.token)],
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix,
        spool_dir=tmp_path,
        events=EVENTS,
        reconnect=ReconnectPolicy(first_delay=0.4, max_delay=1.0, stable_after=0.5),
    )
    service = IngestService(config)
    await service.start()
    stop = asyncio.Event()
    traffic = asyncio.create_task(_traffic(gateway, "shop-bot", EVENTS, stop))
    try:
        await gateway.wait_subscribed("shop-bot", list(EVENTS), timeout=20)
        for _ in range(10):
            await wait_for(lambda: gateway.counters().delivered > 0, timeout=10)
            await gateway.close_sockets("shop-bot")
            await gateway.wait_subscribed("shop-bot", list(EVENTS), timeout=20)
            before = gateway.counters().delivered
            await wait_for(lambda b=before: gateway.counters().delivered > b + 20, timeout=10)
        stop.set()
        await traffic
        delivered = gateway.counters().delivered
        await wait_for(lambda: service.stats.produced >= delivered, timeout=30)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await traffic
        await service.stop()

    for event in EVENTS:
        sub = service.stats.subscription("shop-bot", event)
        assert sub.reconnects >= 10, (event, sub.reconnects)
        assert sub.connects >= 11
        # Every reconnect waited a jittered delay within the policy's bound.
        assert len(sub.delays) >= 10
        assert all(0 <= d <= 1.0 for d in sub.delays)
        assert sum(sub.delays) > 0
    dropped = gateway.counters().dropped
    assert dropped > 0, "the gateway should have dropped events during the gaps"
    topics = [event_topic(e, unique_prefix) for e in EVENTS]
    records = await read_topics(kafka_bootstrap, topics, lambda r: len(r) >= delivered)
    envelopes = [envelope(r) for r in records]
    assert len(envelopes) == delivered
    assert len({e["id"] for e in envelopes}) == delivered
    assert len({e["source"]["connection"] for e in envelopes}) >= 11 * len(EVENTS) - 4
    assert sequence_gaps(envelopes) == []


async def test_a_refused_token_marks_only_that_instance_auth_failed(
    gateway: Any,
    kafka_bootstrap: str,
    unique_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="zapflow.ingest")
    good = gateway.create_instance("shop-bot")
    bad = gateway.create_instance("support")
    events = ("messages.upsert", "connection.update")
    config = make_config(
        gateway,
        [(good.name, good.token), (bad.name, bad.token + "x")],
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix,
        spool_dir=tmp_path,
        events=events,
        reconnect=ReconnectPolicy(first_delay=0.1, max_delay=0.3, stable_after=1.0),
    )
    service = IngestService(config)
    await service.start()
    try:
        await gateway.wait_subscribed("shop-bot", list(events), timeout=20)
        for event in events:
            await wait_for(
                lambda e=event: service.stats.subscription("support", e).auth_failures >= 3,
                timeout=10,
                message="repeated auth failures",
            )
        for _ in range(10):
            for event in events:
                assert await gateway.emit("shop-bot", event)
        await wait_for(lambda: service.stats.produced >= 20, timeout=20)
        states = {key: sub.state for key, sub in service.stats.subscriptions.items()}
        counts = service.stats.count_states()
    finally:
        await service.stop()

    assert states == {
        ("shop-bot", "messages.upsert"): SubscriptionState.OPEN,
        ("shop-bot", "connection.update"): SubscriptionState.OPEN,
        ("support", "messages.upsert"): SubscriptionState.AUTH_FAILED,
        ("support", "connection.update"): SubscriptionState.AUTH_FAILED,
    }
    refused = [r for r in caplog.records if "refused the token" in r.getMessage()]
    # Once per state change, not once per attempt.
    assert sorted(r.getMessage().split(":")[0] for r in refused) == [
        "support/connection.update",
        "support/messages.upsert",
    ]
    assert all(r.levelno == logging.ERROR for r in refused)
    assert bad.token not in caplog.text
    assert counts[SubscriptionState.AUTH_FAILED] == 2
    assert counts[SubscriptionState.OPEN] == 2


async def test_malformed_frames_go_to_the_invalid_topic_and_ingest_carries_on(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    shop = gateway.create_instance("shop-bot")
    config = make_config(
        gateway,
        [(shop.name, shop.token)],
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix,
        spool_dir=tmp_path,
        events=("messages.upsert",),
        max_frame_bytes=2048,
    )
    service = IngestService(config)
    await service.start()
    big = '{"text": "' + "x" * 3000 + '"}'
    try:
        await gateway.wait_subscribed("shop-bot", ["messages.upsert"], timeout=20)
        assert await gateway.emit("shop-bot", "messages.upsert")
        await gateway.send_raw("shop-bot", "messages.upsert", "this is not json")
        await gateway.send_raw("shop-bot", "messages.upsert", b"\x00\xffbinary")
        await gateway.send_raw("shop-bot", "messages.upsert", big)
        assert await gateway.emit("shop-bot", "messages.upsert")
        await wait_for(lambda: service.stats.produced >= 5, timeout=20)
        sub = service.stats.subscription("shop-bot", "messages.upsert")
        assert sub.state == SubscriptionState.OPEN
        assert sub.connects == 1
    finally:
        await service.stop()

    assert service.stats.invalid_frames == 3
    invalid = [
        envelope(r)
        for r in await read_topics(
            kafka_bootstrap, [invalid_topic(unique_prefix)], lambda r: len(r) >= 3
        )
    ]
    assert all(schemas.errors("invalid", i) == [] for i in invalid)
    assert invalid[0]["reason"].startswith("not valid JSON: ")
    assert [(i["reason"], i["raw_size"]) for i in invalid[1:]] == [
        ("binary frame", 8),
        ("frame of 3012 bytes is over the limit of 2048 bytes", 3012),
    ]
    assert base64.b64decode(invalid[0]["raw_base64"]) == b"this is not json"
    assert base64.b64decode(invalid[1]["raw_base64"]) == b"\x00\xffbinary"
    assert base64.b64decode(invalid[2]["raw_base64"]) == big.encode()[:2048]
    assert invalid[2]["truncated"] is True
    assert {i["event"] for i in invalid} == {"messages.upsert"}
    valid = [
        envelope(r)
        for r in await read_topics(
            kafka_bootstrap,
            [event_topic("messages.upsert", unique_prefix)],
            lambda r: len(r) >= 2,
        )
    ]
    # Valid and invalid frames share the connection's numbering: no gaps across both.
    assert sorted(e["source"]["seq"] for e in valid + invalid) == [1, 2, 3, 4, 5]
    assert sequence_gaps(valid + invalid) == []
    assert SENT_EVENTS  # the shapes themselves are covered by test_delivery


async def test_a_silent_subscription_is_taken_back_make_before_break(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    from websockets.asyncio.client import connect

    shop = gateway.create_instance("shop-bot")
    config = make_config(
        gateway,
        [(shop.name, shop.token)],
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix,
        spool_dir=tmp_path,
        events=("messages.upsert",),
        resubscribe_after_silence=1.0,
    )
    service = IngestService(config)
    await service.start()
    sub = service.stats.subscription("shop-bot", "messages.upsert")
    try:
        await gateway.wait_subscribed("shop-bot", ["messages.upsert"], timeout=20)
        running = service.running_subscriptions()[("shop-bot", "messages.upsert")]
        # The gateway registers a socket before the client has read the handshake's answer.
        await wait_for(lambda: running.opened > 0, message="the first socket's number")
        first_socket = running.opened
        assert await gateway.emit("shop-bot", "messages.upsert")
        # Someone else subscribes to the same key: CodeChat silently starves our socket.
        async with connect(gateway.subscription_url("shop-bot", "messages.upsert")) as thief:
            await wait_for(lambda: gateway.sockets("shop-bot", "messages.upsert").open >= 2)
            stolen = await gateway.emit("shop-bot", "messages.upsert")
            assert stolen
            assert await thief.recv(decode=True)
            assert sub.reconnects == 0
            # After the silence threshold ingest opens a new socket, then closes the old.
            await wait_for(lambda: sub.resubscribes >= 1, timeout=10, message="resubscribe")
            # The new socket is numbered as the newest, which a renewal compares.
            assert running.opened > first_socket
            for _ in range(5):
                assert await gateway.emit("shop-bot", "messages.upsert")
            await wait_for(lambda: service.stats.produced >= 6, timeout=10)
        assert sub.state == SubscriptionState.OPEN
        assert sub.reconnects == 0  # taken back without a gap, not reconnected after a drop
    finally:
        await service.stop()
    records = await read_topics(
        kafka_bootstrap,
        [event_topic("messages.upsert", unique_prefix)],
        lambda r: len(r) >= 6,
    )
    envelopes = [envelope(r) for r in records]
    assert len(envelopes) == 6
    assert len({e["source"]["connection"] for e in envelopes}) >= 2


async def test_instances_discovered_with_the_global_apikey_are_subscribed(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    from worker.config import Secret

    gateway.create_instance("shop-bot")
    gateway.create_instance("support")
    config = make_config(
        gateway,
        [],
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix,
        spool_dir=tmp_path,
        events=("call.upsert",),
    )
    config = replace(
        config, discover=True, apikey=Secret("sim-apikey"), default_events=("call.upsert",)
    )
    service = IngestService(config)
    await service.start()
    try:
        for name in ("shop-bot", "support"):
            await gateway.wait_subscribed(name, ["call.upsert"], timeout=20)
            assert await gateway.emit(name, "call.upsert")
        await wait_for(lambda: service.stats.produced >= 2, timeout=20)
    finally:
        await service.stop()
    assert sorted(service.stats.subscriptions) == [
        ("shop-bot", "call.upsert"),
        ("support", "call.upsert"),
    ]


async def test_a_wrong_apikey_stops_discovery_with_a_clear_error(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    from worker.config import Secret
    from worker.ingest.discovery import DiscoveryError

    config = make_config(
        gateway, [], bootstrap=kafka_bootstrap, prefix=unique_prefix, spool_dir=tmp_path
    )
    config = replace(config, discover=True, apikey=Secret("wrong"))
    service = IngestService(config)
    with pytest.raises(DiscoveryError) as info:
        await service.start()
    await service.stop()
    assert str(info.value) == (
        f"cannot discover instances from http://127.0.0.1:{gateway.port}/instance/"
        "fetchInstances: HTTP 403; check gateway.apikey (the global apikey)"
    )


async def test_connections_dropped_right_after_opening_back_off_instead_of_looping(
    gateway: Any, kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    shop = gateway.create_instance("shop-bot")
    config = make_config(
        gateway,
        [(shop.name, shop.token)],
        bootstrap=kafka_bootstrap,
        prefix=unique_prefix,
        spool_dir=tmp_path,
        events=("messages.upsert",),
        reconnect=ReconnectPolicy(first_delay=0.2, max_delay=1.6, stable_after=10.0),
    )
    service = IngestService(config)
    sub = service.stats.subscription("shop-bot", "messages.upsert")
    stop = asyncio.Event()

    async def drop_every_connection() -> None:
        # A gateway that accepts and closes at once (maintenance, a proxy, ...).
        while not stop.is_set():
            if gateway.sockets("shop-bot", "messages.upsert").open:
                await gateway.close_sockets("shop-bot", "messages.upsert")
            await asyncio.sleep(0.01)

    dropper = asyncio.create_task(drop_every_connection())
    await service.start()
    try:
        await wait_for(lambda: sub.reconnects >= 6, timeout=20, message="six reconnects")
        await asyncio.sleep(3.0)  # long enough for a tight loop to reconnect hundreds of times
    finally:
        stop.set()
        await dropper
        await service.stop()
    # Bounds 0.2, 0.4, 0.8, 1.6, 1.6, ...: at most a dozen connects in a few seconds.
    assert 6 <= sub.connects <= 16, sub.connects
    # Each short-lived connection counted as a failure: the bound grew to the cap.
    assert sub.failures_in_a_row >= 6
    assert config.reconnect.bound(sub.failures_in_a_row) == 1.6
