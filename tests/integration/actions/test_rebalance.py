"""A second worker joins mid-flight: work moves with its partitions, nothing lost or redone."""

from __future__ import annotations

from collections import Counter

from tests.helpers import wait_for
from tests.integration.actions.conftest import ExecutorHarness, Receiver, action

RECORDS = 40
IN_FLIGHT = 1  # per destination and worker, so the work outlasts the rebalance


async def test_rebalance_moves_pending_work_without_loss_or_repeats(
    executor_harness: ExecutorHarness, receiver: Receiver
) -> None:
    h = executor_harness
    await h.create_topics(partitions=2)
    hook = receiver.route("/hook", 200, delay_s=0.5)
    first = h.start_executor({"partitions": 2, "per_destination_concurrency": IN_FLIGHT})
    records = [
        action("http", {"method": "POST", "url": hook, "headers": {}, "json": {"n": i}})
        for i in range(RECORDS)
    ]
    keys = {r["idempotency_key"] for r in records}
    await h.send(*records)
    await wait_for(lambda: len(receiver.calls_to("/hook")) >= 3, timeout=60, message="3 calls")

    second = h.start_peer(first)

    async def all_done() -> bool:
        ledger = await h.ledger()
        return all(ledger.get(k, {}).get("state") == "done" for k in keys)

    await wait_for(
        lambda: "resumed" in second.log(), timeout=60, message="the second worker to take over"
    )
    await wait_for(all_done, timeout=90, interval=0.5, message=f"all {RECORDS} actions done")
    first.assert_running()
    second.assert_running()

    per_key = Counter(c.headers["Idempotency-Key"] for c in receiver.calls_to("/hook"))
    assert set(per_key) == keys, "some action was lost"
    # Requests on the wire during the rebalance were let finish: nothing was sent twice.
    assert [k for k, n in per_key.items() if n > 1] == []
