"""Chaos tests: several ingest processes sharing 280 subscriptions through Kafka.

Each test prints what it measured (run with ``pytest -s``); the same numbers are in the
assertion messages.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from tests.integration.fleet.conftest import Load, delivered_per_key, kafka_tally
from worker.events import SENT_EVENTS, STREAMED_EVENTS

pytestmark = pytest.mark.timeout(180)


async def test_three_processes_hold_every_subscription_exactly_once(fleet_factory: Any) -> None:
    fleet = fleet_factory(instances=20)
    started = time.monotonic()
    for _ in range(3):
        fleet.add_process()
    owned = await fleet.wait_settled(timeout=60)
    settled = time.monotonic() - started
    sizes = {name: len(keys) for name, keys in sorted(owned.items())}
    counts = fleet.socket_counts()
    print(
        f"\n[fleet] 3 processes, {len(fleet.keys)} subscriptions: settled in {settled:.1f}s; "
        f"owned per process {sizes}; keys by open sockets {dict(counts)}"
    )
    assert sum(sizes.values()) == 280, sizes
    assert min(sizes.values()) >= 280 // 3 - 15, f"unbalanced: {sizes}"
    # Every process's status names the right owner of every subscription, its own or not.
    statuses = [await asyncio.to_thread(p.status) for p in fleet.processes]
    member = {
        p.name: st["ownership"]["member"] for p, st in zip(fleet.processes, statuses, strict=True)
    }
    owner_of = {key: member[name] for name, keys in owned.items() for key in keys}
    for st in statuses:
        assert st is not None
        told = {(r["instance"], r["event"]): r["owner"] for r in st["ownership"]["subscriptions"]}
        assert told == owner_of, f"{st['ownership']['member']} names other owners"


async def test_a_killed_process_loses_its_subscriptions_to_the_others(fleet_factory: Any) -> None:
    fleet = fleet_factory(instances=20)
    for _ in range(3):
        fleet.add_process()
    owned = await fleet.wait_settled(timeout=60)
    victim = fleet.processes[0]
    victim_keys = sorted(owned[victim.name])
    survivors_keys = [k for k in fleet.keys if k not in owned[victim.name]]
    live_before = {k: fleet.gateway.sockets(*k).live_id for k in victim_keys}

    load = Load(fleet.gateway, fleet.keys, rate=500.0)
    load.start()
    await asyncio.sleep(3.0)
    dropped_before = sum(fleet.gateway.counters(*k).dropped for k in victim_keys)
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    await victim.wait_exit()

    # Each of the victim's keys is served again when a new socket has become the live one.
    taken_over: dict[tuple[str, str], float] = {}
    delivered_at_takeover: dict[tuple[str, str], int] = {}
    deadline = killed_at + 30.0
    while len(taken_over) < len(victim_keys) and time.monotonic() < deadline:
        now = time.monotonic()
        for key in victim_keys:
            if key in taken_over:
                continue
            live = fleet.gateway.sockets(*key).live_id
            if live is not None and live != live_before[key]:
                taken_over[key] = now - killed_at
                delivered_at_takeover[key] = fleet.gateway.counters(*key).delivered
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)  # traffic on the new owners
    await load.stop()
    owned_after = await fleet.wait_settled(timeout=30)

    delivered = delivered_per_key(fleet.gateway, fleet.keys)
    dropped_in_gap = sum(fleet.gateway.counters(*k).dropped for k in victim_keys) - dropped_before
    dropped_elsewhere = sum(fleet.gateway.counters(*k).dropped for k in survivors_keys)
    kafka = await kafka_tally(fleet.bootstrap, fleet.prefix, sum(delivered.values()))
    lost_live = {
        k: delivered[k] - kafka.counts[k] for k in survivors_keys if delivered[k] != kafka.counts[k]
    }
    # Events the gateway wrote to the victim's sockets that it had not yet produced (or
    # that the gateway wrote after the kill, before it noticed the socket was gone) die
    # with the process: nothing acknowledges a frame on that socket.
    lost_with_victim = sum(delivered[k] - kafka.counts[k] for k in victim_keys)
    # After the takeover the new owner's connection must hold everything sent to it:
    # at least what the gateway delivered after we saw the switch, with no sequence gaps.
    short_after: dict[tuple[str, str], int] = {}
    for key in victim_keys:
        conns = kafka.connections.get(key, {})
        # Connection ids are time-ordered (ULIDs): the largest is the new owner's.
        newest = conns[max(conns)] if conns else set()
        after = delivered[key] - delivered_at_takeover.get(key, delivered[key])
        on_new = len(newest) if len(conns) > 1 else 0
        if on_new < after:
            short_after[key] = after - on_new
    gaps = sum(kafka.seq_gaps(k) for k in survivors_keys)
    gap_max = max(taken_over.values()) if taken_over else float("inf")
    gap_min = min(taken_over.values()) if taken_over else float("inf")
    report = (
        f"SIGKILL of 1 of 3 processes at 500 events/s: {len(victim_keys)} subscriptions moved; "
        f"takeover {gap_min:.1f}s..{gap_max:.1f}s after the kill; "
        f"{dropped_in_gap} events dropped by the gateway meanwhile (no live socket), "
        f"{dropped_elsewhere} on the other processes' subscriptions; "
        f"{load.emitted} emitted, {sum(delivered.values())} delivered, "
        f"{kafka.total()} in Kafka ({kafka.duplicates} duplicates); "
        f"lost on live subscribers {sum(lost_live.values())}; "
        f"lost with the killed process {lost_with_victim}; "
        f"missing on new owners {sum(short_after.values())}; "
        f"owned after { ({n: len(s) for n, s in sorted(owned_after.items())}) }"
    )
    print(f"\n[fleet] {report}")
    assert len(taken_over) == len(victim_keys), report
    assert gap_max < 15.0, report
    assert not lost_live, f"{report}; per key {lost_live}"
    assert gaps == 0, report
    assert not short_after, f"{report}; per key {short_after}"
    assert set().union(*owned_after.values()) == set(fleet.keys), report


async def test_a_rolling_restart_loses_no_event(fleet_factory: Any) -> None:
    fleet = fleet_factory(instances=20)
    for _ in range(3):
        fleet.add_process()
    await fleet.wait_settled(timeout=60)
    load = Load(fleet.gateway, fleet.keys, rate=500.0)
    load.start()
    started = time.monotonic()
    handovers = []
    for old in list(fleet.processes):
        await asyncio.sleep(1.0)
        term_at = time.monotonic()
        old.signal(signal.SIGTERM)
        code = await old.wait_exit(timeout=30)
        exited = time.monotonic() - term_at
        assert code == 0, f"{old.name} exited with {code}\n{fleet.logs()}"
        fleet.add_process()
        await fleet.wait_settled(timeout=60)
        handovers.append(f"{old.name} exited {exited:.1f}s after SIGTERM")
    await asyncio.sleep(1.0)
    await load.stop()
    took = time.monotonic() - started

    delivered = delivered_per_key(fleet.gateway, fleet.keys)
    dropped = fleet.gateway.counters().dropped
    kafka = await kafka_tally(fleet.bootstrap, fleet.prefix, sum(delivered.values()))
    lost = {k: delivered[k] - kafka.counts[k] for k in fleet.keys if delivered[k] > kafka.counts[k]}
    gaps = sum(kafka.seq_gaps(k) for k in fleet.keys)
    report = (
        f"rolling restart of 3 processes (SIGTERM, then a new one) at 500 events/s over "
        f"{took:.0f}s: {load.emitted} emitted, {sum(delivered.values())} delivered, "
        f"{dropped} dropped by the gateway (no live socket), {kafka.total()} in Kafka "
        f"({kafka.duplicates} duplicates), {sum(lost.values())} lost, {gaps} sequence gaps; "
        + "; ".join(handovers)
    )
    print(f"\n[fleet] {report}")
    assert not lost, f"{report}; per key {lost}"
    assert gaps == 0, report
    assert dropped == 0, report


async def test_instances_added_and_removed_at_runtime_follow_a_sighup(
    fleet_factory: Any,
) -> None:
    fleet = fleet_factory(instances=4)
    for _ in range(2):
        fleet.add_process()
    await fleet.wait_settled(timeout=60)
    removed = fleet.instances[0]
    for name in ("late-a", "late-b"):
        fleet.tokens[name] = fleet.gateway.create_instance(name).token
    fleet.instances = [*fleet.instances[1:], "late-a", "late-b"]
    # A running process cannot see new environment variables: the new instances'
    # tokens come from files.
    fleet.rewrite_configs()
    for proc in fleet.processes:
        proc.signal(signal.SIGHUP)
    started = time.monotonic()
    owned = await fleet.wait_settled(timeout=30)
    took = time.monotonic() - started
    left_open = sum(fleet.gateway.sockets(removed, e).open for e in STREAMED_EVENTS)
    report = (
        f"SIGHUP with 1 instance removed and 2 added (2 processes): settled in {took:.1f}s; "
        f"owned { ({n: len(s) for n, s in sorted(owned.items())}) }; "
        f"{left_open} sockets left open for the removed instance"
    )
    print(f"\n[fleet] {report}")
    assert set().union(*owned.values()) == set(fleet.keys), report
    assert left_open == 0, report
    assert all(fleet.gateway.sockets("late-b", e).live_id for e in STREAMED_EVENTS), report


async def test_every_subscription_comes_back_after_the_gateway_restarts(
    fleet_factory: Any,
) -> None:
    fleet = fleet_factory(instances=20)
    for _ in range(3):
        fleet.add_process()
    before = await fleet.wait_settled(timeout=60)
    restarted = time.monotonic()
    await fleet.gateway.restart(downtime=2.0)
    after = await fleet.wait_settled(timeout=60)
    took = time.monotonic() - restarted
    sent = [k for k in fleet.keys if k[1] in SENT_EVENTS]
    for key in sent:
        assert await fleet.gateway.emit(*key), f"{key} has no live subscriber"
    kafka = await kafka_tally(fleet.bootstrap, fleet.prefix, len(sent))
    missing = [k for k in sent if kafka.counts[k] < 1]
    report = (
        f"gateway restarted (2s down) under 3 processes: all {len(fleet.keys)} subscriptions "
        f"back in {took:.1f}s, each with one socket; owners unchanged: {before == after}; "
        f"one event per key afterwards: {len(sent) - len(missing)}/{len(sent)} in Kafka"
    )
    print(f"\n[fleet] {report}")
    assert not missing, report


async def test_a_broker_restart_under_load_loses_nothing_and_moves_nothing(
    fleet_factory: Any, private_broker_factory: Any, tmp_path: Any
) -> None:
    broker = private_broker_factory(tmp_path / "broker")
    await asyncio.to_thread(broker.start)
    fleet = fleet_factory(instances=6, bootstrap=broker.bootstrap_servers)
    for _ in range(2):
        fleet.add_process()
    before = await fleet.wait_settled(timeout=60)
    load = Load(fleet.gateway, fleet.keys, rate=200.0)
    load.start()
    await asyncio.sleep(2.0)
    down_at = time.monotonic()
    await asyncio.to_thread(broker.stop)
    await asyncio.sleep(max(0.0, 12.0 - (time.monotonic() - down_at)))  # past the session timeout
    await asyncio.to_thread(broker.start)
    down = time.monotonic() - down_at
    await asyncio.sleep(5.0)
    await load.stop()
    after = await fleet.wait_settled(timeout=60)
    delivered = delivered_per_key(fleet.gateway, fleet.keys)
    dropped = fleet.gateway.counters().dropped
    kafka = await kafka_tally(
        broker.bootstrap_servers, fleet.prefix, sum(delivered.values()), timeout=60
    )
    lost = {k: delivered[k] - kafka.counts[k] for k in fleet.keys if delivered[k] > kafka.counts[k]}
    moved = sum(len(before[n] - after.get(n, set())) for n in before)
    report = (
        f"broker down {down:.0f}s under 2 processes at 200 events/s: {load.emitted} emitted, "
        f"{sum(delivered.values())} delivered, {dropped} dropped by the gateway, "
        f"{kafka.total()} in Kafka ({kafka.duplicates} duplicates), {sum(lost.values())} lost; "
        f"{moved} subscriptions changed owner"
    )
    print(f"\n[fleet] {report}")
    assert not lost, f"{report}; per key {lost}"
    assert dropped == 0, report
