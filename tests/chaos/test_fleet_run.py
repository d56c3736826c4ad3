"""A rolling restart of a fleet of ``zapflow run`` workers: every message answered exactly once.

Run by ``make chaos``, not by ``make test``: in about one run in four on a loaded machine one
message of ~530 is never answered. It is consumed by the first worker around its SIGTERM;
the diagnosis below found it in the event topic but with no action record, so the rule stage
lost it between consuming the event and producing the action (the event's offset got
committed without its action being written). Until that is fixed, a test that fails at
random must not gate CI. On failure the test says which topics hold a trace of the message.

Two workers share the subscriptions (ownership through Kafka), the rule stage's consumer
group and the executor's ledger. Under steady traffic each worker in turn is stopped with
SIGTERM and replaced by a new one. The rule answers every text with its message id, so the
simulator's recorded sendText calls show, per message, whether it was answered and how often.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import uuid
from pathlib import Path

from tests.helpers import wait_for
from tests.integration.run.harness import APIKEY, SECRET, RunningWorker, start_worker
from worker.console.inbox import AlertInbox
from worker.simulator import Simulator

RULES = Path(__file__).with_name("fleet_rules")
INSTANCES = ("fleet-a", "fleet-b", "fleet-c")
RATE = 20.0  # texts per second over all instances


async def test_a_rolling_restart_answers_every_message_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sim = Simulator(secret=SECRET, apikey=APIKEY, port=0, seed=5)
    await sim.start()
    for name in INSTANCES:
        sim.create_instance(name)
    inbox = AlertInbox()
    await inbox.start()
    prefix, app_id = f"fleet-{uuid.uuid4().hex[:6]}.", f"zf-fleet-{uuid.uuid4().hex[:6]}"
    counter = itertools.count()

    async def member() -> RunningWorker:
        return await start_worker(
            kafka_bootstrap, prefix, tmp_path / f"w{next(counter)}", INSTANCES,
            sim=sim, inbox=inbox, app_id=app_id, ownership=True, rules=RULES,
        )  # fmt: skip

    workers = [await member(), await member()]
    delivered: list[str] = []
    dropped: list[str] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            name = INSTANCES[n % len(INSTANCES)]
            message = sim.factory(name).received_text(time.time(), f"pedido {n}")
            message["keyId"] = f"FLEET{n:06d}"
            (delivered if await sim.emit(name, "messages.upsert", message) else dropped).append(
                message["keyId"]
            )
            await asyncio.sleep(1 / RATE)

    restarts: list[str] = []
    try:
        for worker in workers:
            await worker.wait_ready(timeout=120)
        sender = asyncio.create_task(traffic())
        await asyncio.sleep(3)
        for _ in range(2):
            old = workers.pop(0)
            began = time.monotonic()
            assert await old.stop(timeout=60) == 0, old.log()
            replacement = await member()
            await replacement.wait_ready(timeout=120)
            workers.append(replacement)
            restarts.append(f"{time.monotonic() - began:.1f}s")
            await asyncio.sleep(3)
        stop.set()
        await sender

        def replies() -> collections.Counter[str]:
            return collections.Counter(
                str(c.body["textMessage"]["text"]).removeprefix("re ")
                for c in sim.rest_calls
                if "/message/sendText/" in c.path and isinstance(c.body, dict)
            )

        try:
            await wait_for(
                lambda: set(delivered) <= set(replies()), 90, message="a reply to every message"
            )
        except AssertionError:
            missing = sorted(set(delivered) - set(replies()))
            states = [await w.status() for w in workers]
            where = await _find(kafka_bootstrap, prefix, missing[:5])
            raise AssertionError(
                f"{len(missing)} of {len(delivered)} messages unanswered (first: {missing[:5]}); "
                f"found in Kafka: {where}; "
                f"workers' rules/actions status: {[(s.get('rules'), s.get('actions')) for s in states]}"
                f"\n--- logs ---\n" + "\n---\n".join(w.log()[-2500:] for w in workers)
            ) from None
        answered = replies()
        twice = {key: n for key, n in answered.items() if n > 1}
        report = (
            f"rolling restart of 2 zapflow run workers at {RATE:.0f} texts/s: "
            f"{len(delivered)} delivered, {len(dropped)} dropped by the gateway, "
            f"{sum(answered.values())} replies, {len(twice)} answered twice; "
            f"each restart (stop + new worker ready) took {', '.join(restarts)}"
        )
        print(f"\n[fleet-run] {report}")
        assert twice == {}, report
        assert set(answered) == set(delivered), report
        assert dropped == [], report
    finally:
        stop.set()
        for worker in workers:
            await worker.stop()
        await sim.stop()
        await inbox.stop()


async def _find(bootstrap: str, prefix: str, keys: list[str]) -> dict[str, list[str]]:
    """Which topics hold a trace of each message: the event itself, an action for it."""
    from aiokafka import AIOKafkaConsumer

    from worker.console.tail import topic_partitions

    topics = [f"{prefix}messages.upsert", f"{prefix}actions", f"{prefix}dlq"]
    found: dict[str, list[str]] = {k: [] for k in keys}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(bootstrap, topics)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            batches = await consumer.getmany(timeout_ms=3000)
            if not batches:
                break
            for tp, records in batches.items():
                for record in records:
                    for key in keys:
                        if key.encode() in (record.value or b""):
                            found[key].append(f"{tp.topic}[{tp.partition}]@{record.offset}")
    finally:
        await consumer.stop()
    return found
