"""The executor's concurrency slots: limits, fairness, releasing once."""

from __future__ import annotations

import asyncio

from worker.actions.slots import Slots


async def test_a_destination_gets_at_most_its_share_and_all_share_the_global_limit() -> None:
    slots = Slots(concurrency=3, per_destination=2)
    first = [await slots.hold("a"), await slots.hold("a")]
    assert not slots.free("a")
    assert slots.free("b")
    other = await slots.hold("b")
    # three held in all: even a destination with room of its own, or a non-HTTP attempt, waits
    assert not slots.free("c")
    assert not slots.free(None)
    waiting = asyncio.create_task(slots.hold(None))
    await asyncio.sleep(0)
    assert not waiting.done()
    first[0].release()
    held = await asyncio.wait_for(waiting, 5)
    for h in (first[1], other, held):
        h.release()
    assert slots.free("a") and slots.free(None)


async def test_release_twice_gives_back_only_once() -> None:
    slots = Slots(concurrency=1, per_destination=1)
    held = await slots.hold("a")
    held.release()
    held.release()
    again = await slots.hold("a")
    assert not slots.free("a")
    assert not slots.free(None)
    again.release()


async def test_a_queued_attempt_is_not_overtaken_by_a_free_looking_slot() -> None:
    slots = Slots(concurrency=1, per_destination=1)
    held = await slots.hold("a")
    waiting = asyncio.create_task(slots.hold("a"))
    await asyncio.sleep(0)
    held.release()
    # the slot is back, but the queued attempt has first claim on it
    assert not slots.free("a")
    (await asyncio.wait_for(waiting, 5)).release()
    assert slots.free("a")


async def test_cancelled_while_waiting_for_the_second_slot_gives_the_first_back() -> None:
    slots = Slots(concurrency=1, per_destination=1)
    other = await slots.hold("b")  # holds the only global slot
    waiting = asyncio.create_task(slots.hold("a"))
    await asyncio.sleep(0)  # holds a's own slot, waits for the global one
    assert not waiting.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    other.release()
    assert slots.free("a")


async def test_a_lane_gets_at_most_its_share_and_its_destination_caps_all_its_lanes() -> None:
    slots = Slots(concurrency=10, per_destination=2, caps={"gw": 3})
    busy = [await slots.hold("gw", "slow-bot"), await slots.hold("gw", "slow-bot")]
    # the lane is full; another lane of the same destination, and the destination, are not
    assert not slots.free("gw", "slow-bot")
    assert slots.free("gw", "shop-bot")
    other = await slots.hold("gw", "shop-bot")
    # three held on gw, its own cap: every lane of it waits, other destinations do not
    assert not slots.free("gw", "new-bot")
    assert not slots.free("gw")
    assert slots.free("crm")
    waiting = asyncio.create_task(slots.hold("gw", "new-bot"))
    await asyncio.sleep(0)
    assert not waiting.done()
    busy[0].release()  # a slow-bot slot comes back: gw has room for new-bot again
    held = await asyncio.wait_for(waiting, 5)
    for h in (busy[1], other, held):
        h.release()
    assert slots.free("gw", "slow-bot") and slots.free("gw")


async def test_a_destination_without_a_cap_of_its_own_gets_the_per_destination_one() -> None:
    slots = Slots(concurrency=10, per_destination=1, caps={"gw": 5})
    held = await slots.hold("crm")
    assert not slots.free("crm")
    assert slots.free("gw")
    held.release()
