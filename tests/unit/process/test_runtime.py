from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.process.standin import Record, StandInEngine, envelope, write_rules
from worker import tables as tables_module
from worker.process.engine import BundleEngine
from worker.process.forward import Forward
from worker.process.reload import ReloadOutcome, RulesWatcher
from worker.process.runtime import EventProcessor, StateNotWritten

NOW = datetime(2026, 11, 25, 20, 41, 7, tzinfo=UTC)
OUR_ID = "ZF" + "0123456789ABCDEF0123456789ABCD"
REPLY = {"id": "auto-reply", "on": "messages.upsert", "throttle_s": 600}
DOWN = {"id": "down", "on": "connection.update", "for_s": 120}


def processor_for(
    tmp_path: Path, *rules: dict[str, Any], fail_on: str | None = None
) -> EventProcessor:
    write_rules(tmp_path, *rules)
    engine = StandInEngine(fail_on=fail_on)
    return EventProcessor(RulesWatcher.start(tmp_path, engine), engine, dedupe_ttl_s=3600)


def raw(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def contact_text(id: str, key_id: str = "3A6B1C2D3E4F5A6B7C8D") -> bytes:
    data = {
        "keyId": key_id,
        "keyFromMe": False,
        "keyRemoteJid": "5511@s.whatsapp.net",
        "content": {"text": "Oi"},
        "info": {"type": "notify"},
    }
    return raw(envelope("messages.upsert", data, id=id))


def our_echoes() -> list[bytes]:
    """What the gateway sends back for one text we sent: send.message + two messages.upsert."""
    sent = {
        "keyId": OUR_ID,
        "keyFromMe": True,
        "keyRemoteJid": "5511@s.whatsapp.net",
        "content": {"text": "Olá"},
        "externalAttributes": {"zapflow": {"rule": "auto-reply"}},
    }
    append = {k: v for k, v in sent.items() if k != "externalAttributes"} | {
        "info": {"type": "append"}
    }
    return [
        raw(envelope("send.message", sent, id="01JECHO1")),
        raw(envelope("messages.upsert", sent, id="01JECHO2")),
        raw(envelope("messages.upsert", append, id="01JECHO3")),
    ]


def test_contact_text_yields_an_action_and_state_with_its_partition(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, REPLY)
    state: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    actions = processor.process(contact_text("01JA"), 3, state, seen, NOW)
    assert [a.idempotency_key for a in actions] == ["auto-reply:01JA:0:-:fire"]
    assert state == {"auto-reply|shop-bot": [3, NOW.timestamp()]}
    assert seen == {"shop-bot|messages.upsert|3A6B1C2D3E4F5A6B7C8D": [3, NOW.timestamp(), "01JA"]}


def test_echoes_of_our_own_reply_are_never_evaluated(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, REPLY, {"id": "sent", "on": "send.message"})
    state: dict[str, Any] = {}
    for echo in our_echoes():
        assert processor.process(echo, 0, state, {}, NOW) == ()
    assert processor.counters.echoes == 3
    assert state == {}


def test_same_gateway_message_in_a_second_envelope_is_evaluated_once(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, {"id": "every", "on": "messages.upsert"})
    state: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    assert len(processor.process(contact_text("01JA"), 0, state, seen, NOW)) == 1
    assert processor.process(contact_text("01JB"), 0, state, seen, NOW) == ()
    assert processor.counters.duplicates == 1
    assert len(processor.process(contact_text("01JC", key_id="OTHER"), 0, state, seen, NOW)) == 1


class UnreadableMemory(dict[str, Any]):
    """A delivery memory that fails any read: for events that must not consult it."""

    def get(self, key: str, default: Any = None) -> Any:
        raise AssertionError(f"delivery memory read for {key}")


def test_an_event_that_would_do_nothing_is_not_looked_up_in_the_delivery_memory(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, REPLY)
    state: dict[str, Any] = {}
    assert len(processor.process(contact_text("01JA"), 0, state, {}, NOW)) == 1
    # Throttled: nothing to do, so it makes no difference whether it came before.
    later = NOW + timedelta(seconds=5)
    assert processor.process(contact_text("01JB"), 0, state, UnreadableMemory(), later) == ()
    assert processor.counters.errors == 0
    assert processor.counters.evaluated == 2
    assert processor.counters.duplicates == 0
    assert state == {"auto-reply|shop-bot": [0, NOW.timestamp()]}


def test_a_second_delivery_changes_no_state(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, {"id": "pending", "on": "messages.upsert", "for_s": 60})
    state: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    processor.process(contact_text("01JA"), 0, state, seen, NOW)
    later = NOW + timedelta(seconds=5)
    assert processor.process(contact_text("01JB"), 0, state, seen, later) == ()
    assert processor.counters.duplicates == 1
    assert state == {"pending|shop-bot": [0, {"due": NOW.timestamp() + 60, "event": "01JA"}]}
    assert seen["shop-bot|messages.upsert|3A6B1C2D3E4F5A6B7C8D"][2] == "01JA"


def test_kafka_redelivery_of_the_same_envelope_is_evaluated_again(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, {"id": "every", "on": "messages.upsert"})
    seen: dict[str, Any] = {}
    first = processor.process(contact_text("01JA"), 0, {}, seen, NOW)
    again = processor.process(contact_text("01JA"), 0, {}, seen, NOW)
    assert [a.idempotency_key for a in again] == [a.idempotency_key for a in first]


def test_events_no_rule_listens_to_are_skipped(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, REPLY)
    assert processor.process(raw(envelope("presence.update", {"id": "x"})), 0, {}, {}, NOW) == ()
    assert processor.counters.no_rule == 1


def test_per_event_errors_are_counted_and_logged_with_the_event_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processor = processor_for(tmp_path, REPLY, fail_on="01JBAD")
    with caplog.at_level(logging.ERROR, logger="zapflow.process"):
        assert processor.process(contact_text("01JBAD"), 4, {}, {}, NOW) == ()
        assert processor.process(b"{not json", 4, {}, {}, NOW) == ()
    assert processor.counters.errors == 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "event 01JBAD (partition 4) not evaluated",
        "event b'{not json' (partition 4) not evaluated",
    ]
    assert len(processor.process(contact_text("01JOK"), 4, {}, {}, NOW)) == 1


async def test_tick_fires_due_deadlines_of_its_partition_only(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, DOWN)
    state: dict[str, Any] = {}
    processor.process(
        raw(envelope("connection.update", {"state": "close"}, id="01JD")), 1, state, {}, NOW
    )
    processor.process(
        raw(envelope("connection.update", {"state": "close"}, id="01JE", instance="b")),
        2,
        state,
        {},
        NOW,
    )
    assert not await processor.tick(1, state, NOW + timedelta(seconds=60))
    fired = await processor.tick(1, state, NOW + timedelta(seconds=120))
    assert [a.idempotency_key for a in fired] == ["down:01JD:0:-:fire"]
    assert list(state) == ["down|b"]
    assert processor.counters.timer_actions == 1


async def test_old_message_ids_of_the_partition_are_forgotten_once_a_period(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, REPLY)
    seen: dict[str, Any] = {
        "old": [0, NOW.timestamp() - 4000, "e"],
        "new": [0, NOW.timestamp(), "e"],
        "other": [1, NOW.timestamp() - 4000, "e"],
    }
    assert await processor.forget_old_messages(0, seen, NOW.timestamp()) == 1
    assert sorted(seen) == ["new", "other"]
    # The next pass begins a tenth of the TTL (360 s) after this one began.
    seen["old"] = [0, NOW.timestamp() - 4000, "e"]
    assert await processor.forget_old_messages(0, seen, NOW.timestamp() + 359) == 0
    assert await processor.forget_old_messages(0, seen, NOW.timestamp() + 360) == 1
    assert sorted(seen) == ["new", "other"]


async def test_a_pass_is_spread_over_ticks_in_shares_of_the_last_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "PACED_MINIMUM", 10)
    processor = processor_for(tmp_path, REPLY)
    # A pass at most every 4 ticks: the TTL's tenth (4 s) against a 1 s sweep interval.
    processor.dedupe_ttl_s, processor.sweep_interval_s = 40.0, 1.0
    now = NOW.timestamp()
    seen: dict[str, Any] = {f"m{n:03d}": [0, now - 100, "e"] for n in range(100)}
    # The first pass knows no size yet: the fewest ids per tick; it ends on a short slice.
    per_tick = [await processor.forget_old_messages(0, seen, now + t) for t in range(11)]
    assert per_tick == [10] * 10 + [0]
    assert seen == {}
    # The next pass walks the last pass's 100 ids over the 4 ticks of a period: 25 a tick.
    seen.update({f"n{n:03d}": [0, now - 100, "e"] for n in range(60)})
    per_tick = [await processor.forget_old_messages(0, seen, now + t) for t in range(11, 16)]
    assert per_tick == [25, 25, 10, 0, 0]
    assert seen == {}


async def test_forgetting_lets_events_run_and_keeps_ids_they_deliver_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "WALK_SLICE", 10)
    processor = processor_for(tmp_path, REPLY)
    old = NOW.timestamp() - 4000
    seen: dict[str, Any] = {f"m{n:03d}": [0, old, "e"] for n in range(100)}
    delivered_again: list[str] = []

    async def events() -> None:
        # An event delivers the last id again while the walk is under way.
        while True:
            if "m000" not in seen:
                seen["m099"] = [0, NOW.timestamp(), "e2"]
                delivered_again.append("m099")
                return
            await asyncio.sleep(0)

    running = asyncio.ensure_future(events())
    forgotten = await processor.forget_old_messages(0, seen, NOW.timestamp())
    await running
    assert delivered_again == ["m099"], "events ran while ids were being forgotten"
    assert forgotten == 99
    assert seen == {"m099": [0, NOW.timestamp(), "e2"]}


async def test_a_partition_taken_away_mid_walk_is_left_to_its_next_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "WALK_SLICE", 10)
    processor = processor_for(tmp_path, REPLY)
    seen: dict[str, Any] = {f"m{n:03d}": [0, NOW.timestamp() - 4000, "e"] for n in range(100)}
    answers = iter([True])  # ours for the first slice only
    forgotten = await processor.forget_old_messages(
        0, seen, NOW.timestamp(), lambda: next(answers, False)
    )
    assert forgotten == 10
    assert len(seen) == 90
    # Given back after the rebalance, the partition's next tick begins a new pass.
    processor.forget_partitions()
    assert await processor.forget_old_messages(0, seen, NOW.timestamp() + 1) == 90


async def test_state_of_changed_rules_is_dropped_partition_by_partition(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, REPLY)
    state = {"auto-reply|a": [0, 1.0], "auto-reply|b": [1, 1.0], "kept|a": [0, 1.0]}
    processor.reloaded(ReloadOutcome("swapped", stale=frozenset({"auto-reply"})))
    await processor.tick(0, state, NOW)
    assert sorted(state) == ["auto-reply|b", "kept|a"]
    state["auto-reply|a"] = [0, 2.0]  # written by the new rule after the purge
    await processor.tick(0, state, NOW)
    assert "auto-reply|a" in state
    await processor.tick(1, state, NOW)
    assert sorted(state) == ["auto-reply|a", "kept|a"]
    assert processor.counters.reloads == 1


async def test_between_sweeps_the_tick_fires_from_the_timer_index(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, DOWN, REPLY)
    processor.sweep_interval_s = 3600
    state: dict[str, Any] = {}
    await processor.tick(1, state, NOW)  # sweep: nothing yet
    sweeps = processor.counters.sweeps
    close = raw(envelope("connection.update", {"state": "close"}, id="01JD"))
    processor.process(close, 1, state, {}, NOW)
    processor.process(contact_text("01JA"), 1, state, {}, NOW)
    later = NOW + timedelta(seconds=121)
    fired = await processor.tick(1, state, later)
    assert [a.idempotency_key for a in fired] == ["down:01JD:0:-:fire"]
    assert processor.counters.sweeps == sweeps
    assert list(state) == ["auto-reply|shop-bot"]


INHIBITED_DEADLINE = """
rules:
  - id: instance-down
    on: connection.update
    when: conn.state == "close"
    key: [instance]
    throttle: 1h
    actions:
      - log: {message: "down {{ instance }}"}
  - id: qr-pending
    on: qrcode.updated
    key: [instance]
    for: 2m
    inhibited_by: [instance-down]
    actions:
      - log: {message: "QR code still pending on {{ instance }}"}
"""


@pytest.mark.parametrize("path", ["timer index", "sweep"])
async def test_a_deadline_is_inhibited_by_a_rule_without_for_in_the_index_and_in_a_sweep(
    tmp_path: Path, path: str
) -> None:
    # Between sweeps the tick walks only the keys of rules with deadlines, and a sweep one
    # slice at a time; the inhibiting rule's throttle is in neither and must be seen.
    (tmp_path / "rules.yaml").write_text(INHIBITED_DEADLINE, encoding="utf-8")
    engine = BundleEngine()
    processor = EventProcessor(RulesWatcher.start(tmp_path, engine), engine)
    processor.sweep_interval_s = 3600.0  # no sweep pass but the first
    state: dict[str, Any] = {}
    if path == "timer index":
        assert not await processor.tick(0, state, NOW)  # the first sweep, of nothing
    processor.process(raw(envelope("qrcode.updated", {"code": "x"}, id="01JQ")), 0, state, {}, NOW)
    # Other instances' throttles, so that the pending alert and the throttle inhibiting it
    # are in different slices of a sweep (500 keys each).
    until = {"until": (NOW + timedelta(hours=1)).timestamp(), "period": 3600.0}
    for n in range(600):
        state[f"instance-down|t|other-{n}"] = [0, until]
    down = processor.process(
        raw(envelope("connection.update", {"state": "close"}, id="01JD")), 0, state, {}, NOW
    )
    assert [a.rule_id for a in down] == ["instance-down"]
    # Due now: from the index, or (the first tick) from the sweep.
    assert await processor.tick(0, state, NOW + timedelta(seconds=130)) == []
    assert processor.counters.sweeps == 1
    assert processor.counters.timer_actions == 0


async def test_after_a_rebalance_the_next_tick_sweeps_and_finds_recovered_deadlines(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, DOWN)
    await processor.tick(0, {}, NOW)
    recovered = {"down|shop-bot": [0, {"due": NOW.timestamp(), "event": "01JD"}]}
    assert not await processor.tick(0, recovered, NOW + timedelta(seconds=1))  # not indexed yet
    processor.forget_partitions()
    fired = await processor.tick(0, recovered, NOW + timedelta(seconds=2))
    assert [a.idempotency_key for a in fired] == ["down:01JD:0:-:fire"]


def test_duplicate_detection_is_off_with_a_zero_ttl(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, {"id": "every", "on": "messages.upsert"})
    processor.dedupe_ttl_s = 0
    seen: dict[str, Any] = {}
    assert len(processor.process(contact_text("01JA"), 0, {}, seen, NOW)) == 1
    assert len(processor.process(contact_text("01JB"), 0, {}, seen, NOW)) == 1
    assert seen == {}


def test_a_message_that_did_nothing_is_not_remembered(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, REPLY)
    state: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    assert len(processor.process(contact_text("01JA"), 0, state, seen, NOW)) == 1
    throttled = contact_text("01JB", key_id="OTHER")
    assert not processor.process(throttled, 0, state, seen, NOW)
    assert list(seen) == ["shop-bot|messages.upsert|3A6B1C2D3E4F5A6B7C8D"]


PER_INSTANCE = {"id": "per-instance", "on": "messages.upsert", "throttle_s": 600, "rekeyed": True}
QUIET = {"id": "quiet", "on": "messages.upsert", "for_s": 120, "rekeyed": True}


def test_events_of_rekeyed_rules_are_sent_on_by_their_key_not_evaluated_here(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, REPLY, PER_INSTANCE, QUIET)
    state: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    text = contact_text("01JA")
    records = processor.process(text, 3, state, seen, NOW)
    assert records == [
        Record("auto-reply:01JA:0:-:fire", "auto-reply", records[0].bundle_version, "01JA"),
        Forward("shop-bot", ("per-instance", "quiet"), "01JA", text),
    ]
    assert list(state) == ["auto-reply|shop-bot"]
    assert list(seen) == ["shop-bot|messages.upsert|3A6B1C2D3E4F5A6B7C8D"]
    assert processor.counters.forwarded == 1


def test_a_forward_alone_makes_the_message_remembered_so_a_second_delivery_stays_home(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, PER_INSTANCE)
    seen: dict[str, Any] = {}
    [forward] = processor.process(contact_text("01JA"), 0, {}, seen, NOW)
    assert isinstance(forward, Forward)
    assert processor.process(contact_text("01JB"), 0, {}, seen, NOW) == ()
    assert processor.counters.duplicates == 1
    for echo in our_echoes():
        assert processor.process(echo, 0, {}, seen, NOW) == ()
    assert processor.counters.forwarded == 1


def test_rekeyed_events_are_evaluated_with_only_their_rules_and_state_of_their_partition(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, REPLY, PER_INSTANCE)
    state: dict[str, Any] = {}
    forward = Forward("shop-bot", ("per-instance",), "01JA", contact_text("01JA"))
    actions = processor.process_rekeyed(forward.to_json(), 5, state, NOW)
    assert [a.idempotency_key for a in actions] == ["per-instance:01JA:0:-:fire"]
    assert state == {"per-instance|shop-bot": [5, NOW.timestamp()]}
    other_chat = Forward("shop-bot", ("per-instance",), "01JB", contact_text("01JB", "OTHER"))
    assert not processor.process_rekeyed(other_chat.to_json(), 5, state, NOW)
    assert processor.counters.rekeyed == 2
    assert processor.counters.actions == 1


async def test_a_deadline_of_a_rekeyed_rule_fires_from_the_tick_of_its_partition(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, QUIET)
    processor.sweep_interval_s = 3600
    state: dict[str, Any] = {}
    await processor.tick(6, state, NOW)  # the first tick sweeps; the deadline comes after
    forward = Forward("shop-bot", ("quiet",), "01JQ", contact_text("01JQ"))
    assert not processor.process_rekeyed(forward.to_json(), 6, state, NOW)
    assert not await processor.tick(6, state, NOW + timedelta(seconds=60))
    fired = await processor.tick(6, state, NOW + timedelta(seconds=121))
    assert [a.idempotency_key for a in fired] == ["quiet:01JQ:0:-:fire"]
    assert state == {}


def test_a_broken_forward_record_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processor = processor_for(tmp_path, PER_INSTANCE)
    with caplog.at_level(logging.ERROR, logger="zapflow.process"):
        assert processor.process_rekeyed(b'{"rules": "x"}', 2, {}, NOW) == ()
    assert processor.counters.errors == 1
    assert [r.getMessage() for r in caplog.records] == [
        'rekeyed event b\'{"rules": "x"}\' (partition 2) not evaluated'
    ]


class BrokenTable(dict[str, Any]):
    """A table whose changelog cannot be written yet."""

    def __setitem__(self, key: str, value: Any) -> None:
        raise RuntimeError("changelog topic has 0 partitions")


def test_state_that_cannot_be_written_is_raised_for_a_retry_not_dropped(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, REPLY)
    with pytest.raises(StateNotWritten) as raised:
        processor.process(contact_text("01JA"), 3, BrokenTable(), {}, NOW)
    assert str(raised.value) == (
        "state of event 01JA (partition 3) not written: "
        "RuntimeError('changelog topic has 0 partitions')"
    )
    assert processor.counters.errors == 0
    state: dict[str, Any] = {}
    assert [
        r.idempotency_key for r in processor.process(contact_text("01JA"), 3, state, {}, NOW)
    ] == ["auto-reply:01JA:0:-:fire"]


def test_rekeyed_state_that_cannot_be_written_is_raised_for_a_retry(tmp_path: Path) -> None:
    processor = processor_for(tmp_path, PER_INSTANCE)
    forward = Forward("shop-bot", ("per-instance",), "01JA", contact_text("01JA"))
    with pytest.raises(StateNotWritten) as raised:
        processor.process_rekeyed(forward.to_json(), 4, BrokenTable(), NOW)
    assert str(raised.value) == (
        "state of rekeyed event 01JA (partition 4) not written: "
        "RuntimeError('changelog topic has 0 partitions')"
    )
    assert processor.counters.errors == 0


async def test_after_the_first_sweep_each_pass_is_spread_over_the_ticks_of_the_interval(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, DOWN)
    processor.sweep_interval_s = 60.0
    # Deadlines the timer index does not know of (only a sweep finds them), due in 30 s.
    due = (NOW + timedelta(seconds=30)).timestamp()
    state: dict[str, Any] = {
        f"unindexed|{i:04}": [0, {"due": due, "event": f"E{i}"}] for i in range(3000)
    }
    state["unindexed|elsewhere"] = [1, {"due": due, "event": "E1"}]
    fired_per_tick = []
    for second in range(70):
        now = NOW + timedelta(seconds=second)
        fired = await processor.tick(0, state, now)
        fired_per_tick.append(len(fired))
    # A start sweeps whole (nothing due yet); the next pass begins a minute later and walks
    # a share a tick: the last pass's 3,000 keys over 60 ticks, but at least 500.
    assert fired_per_tick[:60] == [0] * 60
    assert fired_per_tick[60:] == [500] * 6 + [0] * 4
    assert list(state) == ["unindexed|elsewhere"]
    assert processor.counters.sweeps == 2


async def test_a_sweep_indexes_the_deadlines_it_meets_so_they_fire_on_time(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, DOWN)
    processor.sweep_interval_s = 60.0
    state: dict[str, Any] = {}
    assert not await processor.tick(0, state, NOW)  # the first sweep: an empty index
    due = (NOW + timedelta(seconds=100)).timestamp()
    state["down|late"] = [0, {"due": due, "event": "01JL"}]  # written behind the index
    at = NOW + timedelta(seconds=60)
    assert not await processor.tick(0, state, at)
    # Due at 100 s: the tick fires it from the index, not the next pass (at 120 s).
    fired = await processor.tick(0, state, NOW + timedelta(seconds=100))
    assert [a.idempotency_key for a in fired] == ["down:01JL:0:-:fire"]


async def test_a_reload_during_a_share_ends_it_and_the_next_tick_sweeps_whole(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, DOWN)
    processor.sweep_interval_s = 2.0  # shares of 1,500 keys: three slices
    due = (NOW + timedelta(seconds=1.5)).timestamp()
    state: dict[str, Any] = {
        f"unindexed|{i:04}": [0, {"due": due, "event": f"E{i}"}] for i in range(3000)
    }
    assert not await processor.tick(0, state, NOW)

    async def reload() -> None:
        processor.forget_partitions()  # runs while the share hands the loop back

    reloading = asyncio.create_task(reload())
    at = NOW + timedelta(seconds=2)
    assert len(await processor.tick(0, state, at)) == 500
    await reloading
    assert len(await processor.tick(0, state, at)) == 2500
    assert state == {}


async def test_the_first_sweep_hands_the_loop_back_and_a_rebalance_meanwhile_cuts_it_short(
    tmp_path: Path,
) -> None:
    processor = processor_for(tmp_path, DOWN)
    due = NOW.timestamp()
    state: dict[str, Any] = {
        f"down|{i:04}": [0, {"due": due, "event": f"E{i}"}] for i in range(1200)
    }

    async def rebalance() -> None:
        processor.forget_partitions()  # runs between the sweep's first two slices

    rebalancing = asyncio.create_task(rebalance())
    assert len(await processor.tick(0, state, NOW)) == 500
    await rebalancing
    assert processor.counters.sweeps == 0  # not complete: not indexed
    assert len(await processor.tick(0, state, NOW)) == 700
    assert processor.counters.sweeps == 1
    assert state == {}
