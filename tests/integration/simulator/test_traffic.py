"""Traffic profiles delivered to real subscribers, with counters that add up."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import orjson
import pytest
import websockets

from tests.helpers import wait_for
from worker.simulator import Counters, Simulator
from worker.simulator.traffic import DEFAULT_MIX, ProfileError


async def test_2000_events_per_second_for_10_s_over_5_instances_add_up(sim: Simulator) -> None:
    names = ["shop-bot", *(sim.create_instance(f"load-{n}").name for n in range(1, 5))]
    received: Counter[tuple[str, str]] = Counter()
    key_ids: set[str] = set()
    # Every event of the mix for four instances; only messages.upsert for the fifth,
    # so its other events are dropped.
    keys = [(n, e) for n in names[:4] for e in DEFAULT_MIX] + [(names[4], "messages.upsert")]

    async def consume(instance: str, event: str, ws: websockets.ClientConnection) -> None:
        async for frame in ws:
            received[(instance, event)] += 1
            payload = orjson.loads(frame)
            if event == "messages.upsert":
                key_ids.add(payload["keyId"])

    sockets = await asyncio.gather(
        *(websockets.connect(sim.subscription_url(i, e)) for i, e in keys)
    )
    for instance in names:
        await sim.wait_subscribed(instance, [e for i, e in keys if i == instance])
    consumers = [
        asyncio.create_task(consume(i, e, ws)) for (i, e), ws in zip(keys, sockets, strict=True)
    ]
    try:
        started = time.monotonic()
        result = await sim.run_profile(names, rate=2000.0, duration=10.0)
        elapsed = time.monotonic() - started
        await wait_for(
            lambda: sum(received.values()) >= result.delivered,
            timeout=10,
            message="every delivered frame to arrive",
        )
    finally:
        for ws in sockets:
            await ws.close()
        for task in consumers:
            task.cancel()
    assert 9.9 <= elapsed < 12.0
    assert result.emitted == 20_000
    assert result.emitted == result.delivered + result.dropped
    assert result.dropped > 0
    assert sim.counters() == Counters(20_000, result.delivered, result.dropped)
    assert sum(received.values()) == result.delivered
    for key, count in received.items():
        assert sim.counters(*key).delivered == count
    dropped_fifth = sim.counters(names[4])
    assert dropped_fifth.dropped == result.dropped
    assert sim.counters(names[4], "messages.upsert").dropped == 0
    # Ids never repeat, so consumers that deduplicate by keyId lose nothing.
    assert len(key_ids) == sum(c for (_, e), c in received.items() if e == "messages.upsert")


async def test_count_profile_at_full_speed_pads_messages(sim: Simulator) -> None:
    async with websockets.connect(sim.subscription_url("shop-bot", "messages.upsert")) as ws:
        await sim.wait_subscribed("shop-bot", "messages.upsert")
        result = await sim.run_profile(
            ["shop-bot"], rate=None, count=3000, mix={"messages.upsert": 1}, min_size=1000
        )
        frames = [await ws.recv() for _ in range(3000)]
    assert result == Counters(3000, 3000, 0)
    assert min(len(f.encode()) for f in frames) == 996  # 1,000 with the 4-byte header
    assert {orjson.loads(f)["device"] for f in frames} == {"web"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "profile: rate must be above 0 events/s, got 0"),
        ({"mix": {"contacts.update": 1}}, "profile: mix names 'contacts.update', which the gateway never sends"),
        ({"mix": {"messages.upsert": 0}}, "profile: the mix has no event with a positive weight"),
        ({"duration": -1}, "profile: duration must be above 0 s, got -1"),
    ],
)  # fmt: skip
async def test_bad_profiles_fail_before_sending(
    sim: Simulator, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ProfileError) as failed:
        await sim.run_profile(["shop-bot"], count=1, **kwargs)  # type: ignore[arg-type]
    assert str(failed.value).startswith(message)
    assert sim.counters().emitted == 0


async def test_unknown_instance_in_a_profile_fails(sim: Simulator) -> None:
    with pytest.raises(KeyError, match="unknown instance 'ghost'"):
        await sim.run_profile(["ghost"], count=1)
