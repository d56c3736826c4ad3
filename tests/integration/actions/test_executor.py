"""The executor end to end: real broker, executor subprocess, real HTTP receivers."""

from __future__ import annotations

import time

from tests.helpers import wait_for
from tests.integration.actions.conftest import ExecutorHarness, Receiver, action
from worker.actions.ids import message_id_for

FAST_RETRY = {"max_attempts": 4, "base_delay_s": 0.05, "max_delay_s": 0.5}


async def test_each_kind_is_performed_once_and_failures_reach_the_dlq(
    executor_harness: ExecutorHarness, receiver: Receiver
) -> None:
    h = executor_harness
    await h.create_topics()
    flaky = receiver.route("/flaky", 500, 500, 200)
    broken = receiver.route("/broken", 400)
    busy = receiver.route("/busy", 429, 200, **{"Retry-After": "1"})
    sleepy = receiver.route("/sleepy", 200, delay_s=2.0)
    slow = receiver.route("/slow", delay_s=8.0)
    receiver.route("/crm", 200)
    receiver.route("/message/sendText/shop-bot", 201)
    produced_to = f"{h.prefix}out"
    executor = h.start_executor(
        {
            "gateway": {"url": receiver.url(""), "auth": "apikey", "apikey": "${env:GW_KEY}"},
            "retry": FAST_RETRY,
            "request_timeout_s": 20,
        },
        env={"GW_KEY": "global-secret", "CRM_TOKEN": "crm-secret"},
    )
    notify_flaky = action(
        "notify",
        {"channel": {"name": "ops", "type": "slack", "url": flaky}, "text": "caiu", "fields": {}},
    )
    notify_broken = action(
        "notify",
        {"channel": {"name": "hook", "type": "webhook", "url": broken}, "text": "x", "fields": {}},
    )
    to_slow = action("http", {"method": "POST", "url": slow, "headers": {}, "json": {"n": 1}})
    send = action(
        "whatsapp.send_text",
        {
            "instance": "shop-bot",
            "to": "5511987654321@s.whatsapp.net",
            "text": "Olá!",
            "quote": None,
            "delay_ms": None,
        },
        rule_id="after-hours-reply",
    )
    crm = action(
        "http",
        {
            "method": "PUT",
            "url": receiver.url("/crm"),
            "headers": {"Authorization": "Bearer ${env:CRM_TOKEN}"},
            "json": {"k": "${env:CRM_TOKEN}"},
        },
    )
    produce = action("kafka.produce", {"topic": produced_to, "key": "k1", "value": {"a": 1}})
    log = action("log", {"level": "warning", "message": "hello from a rule"})
    missing_secret = action(
        "http", {"method": "GET", "url": receiver.url("/never"), "headers": {"X": "${env:NOPE}"}}
    )
    polite = action("http", {"method": "POST", "url": busy, "headers": {}, "json": None})
    too_slow = action("http", {"method": "GET", "url": sleepy, "timeout_s": 0.2})
    await h.send(
        polite,
        too_slow,
        to_slow,
        notify_flaky,
        notify_broken,
        send,
        crm,
        produce,
        log,
        missing_secret,
    )
    await h.send(send, crm)  # redelivered duplicates: performed once all the same
    await h.send_raw(b"{not json")

    # Everything but the slow endpoint is finished while the slow call is still in flight.
    started = time.monotonic()
    await wait_for(
        lambda: (
            len(receiver.calls_to("/flaky")) == 3
            and len(receiver.calls_to("/message/sendText/shop-bot")) == 1
            and len(receiver.calls_to("/crm")) == 1
        ),
        timeout=60,
        message="the flaky webhook, the send and the CRM call",
    )
    dead = await h.read_topic(h.dlq, 4)
    assert time.monotonic() - started < 8.0 or receiver.calls_to("/slow")

    by_key = {d["record"].get("idempotency_key"): d for d in dead}
    assert by_key[notify_broken["idempotency_key"]]["record"] == notify_broken
    assert by_key[notify_broken["idempotency_key"]]["retriable"] is False
    assert by_key[notify_broken["idempotency_key"]]["attempts"] == 1
    assert by_key[notify_broken["idempotency_key"]]["error"].startswith(
        f"POST {broken}: HTTP 400 Bad Request"
    )
    assert by_key[missing_secret["idempotency_key"]]["error"] == (
        "secret reference ${env:NOPE} cannot be resolved: environment variable NOPE is not "
        "set in the executor's environment; set it and restart"
    )
    timed_out = by_key[too_slow["idempotency_key"]]
    assert (timed_out["retriable"], timed_out["attempts"]) == (True, FAST_RETRY["max_attempts"])
    assert timed_out["error"] == f"GET {sleepy}: timed out (TimeoutError)"
    assert len(receiver.calls_to("/sleepy")) == FAST_RETRY["max_attempts"]
    assert by_key[None]["record"] == {"raw_base64": "e25vdCBqc29u"}
    assert by_key[None]["error"].startswith("invalid action record: not JSON")
    assert len(receiver.calls_to("/broken")) == 1
    assert receiver.calls_to("/never") == []

    flaky_calls = receiver.calls_to("/flaky")
    assert [c.body for c in flaky_calls] == [{"text": "caiu"}] * 3
    assert {c.headers["Idempotency-Key"] for c in flaky_calls} == {notify_flaky["idempotency_key"]}

    (sent,) = receiver.calls_to("/message/sendText/shop-bot")
    assert sent.headers["apikey"] == "global-secret"
    assert sent.body == {
        "number": "5511987654321@s.whatsapp.net",
        "options": {
            "messageId": message_id_for(send["idempotency_key"]),
            "externalAttributes": {
                "zapflow": {"rule": "after-hours-reply", "key": send["idempotency_key"]}
            },
        },
        "textMessage": {"text": "Olá!"},
    }
    (crm_call,) = receiver.calls_to("/crm")
    assert crm_call.headers["Authorization"] == "Bearer crm-secret"
    assert crm_call.body == {"k": "crm-secret"}

    await wait_for(lambda: len(receiver.calls_to("/busy")) == 2, message="the 429 retry")
    first, second = receiver.calls_to("/busy")
    assert second.at - first.at >= 1.0, "Retry-After: 1 was not honoured"

    produced = await h.read_topic(produced_to, 1)
    assert produced == [{"a": 1}]
    await wait_for(lambda: "hello from a rule" in executor.log(), message="the log action")
    await wait_for(lambda: len(receiver.calls_to("/slow")) == 1, message="the slow call")
    assert "global-secret" not in executor.log() and "crm-secret" not in executor.log()
    executor.assert_running()


async def test_sends_over_the_chat_limit_wait_and_none_is_dropped_then_keys_expire(
    executor_harness: ExecutorHarness, receiver: Receiver
) -> None:
    h = executor_harness
    await h.create_topics()
    receiver.route("/message/sendText/shop-bot", 201)
    h.start_executor(
        {
            "gateway": {"url": receiver.url("")},
            "send_rate_per_instance": {"per_second": 100, "burst": 100},
            "send_rate_per_chat": {"per_second": 4, "burst": 1},
            "ledger_retention_s": 1,
            "prune_interval_s": 0.5,
        }
    )
    chat_a = [
        action("whatsapp.send_text", {"to": "5511000000001", "text": f"a{i}"}) for i in range(6)
    ]
    chat_b = [action("whatsapp.send_text", {"to": "5511000000002", "text": "b"})]
    await h.send(*chat_a, *chat_b)
    await wait_for(
        lambda: len(receiver.calls_to("/message/sendText/shop-bot")) == 7,
        timeout=60,
        message="all 7 sends",
    )
    calls = receiver.calls_to("/message/sendText/shop-bot")
    times_a = sorted(c.at for c in calls if c.body["number"] == "5511000000001")
    assert len(times_a) == 6
    # 4 per second with a burst of 1: six sends are spread over 5 intervals of 0.25 s (the
    # first may leave a little late, hence the margin); unlimited, they would take milliseconds.
    assert times_a[-1] - times_a[0] >= 1.0
    (b_call,) = [c for c in calls if c.body["number"] == "5511000000002"]
    # The other chat is not held up behind chat a's queue.
    assert b_call.at < times_a[-1]

    # Finished keys are forgotten once past the retention (tombstones in the changelog).
    keys = {r["idempotency_key"] for r in [*chat_a, *chat_b]}

    async def forgotten() -> bool:
        return not keys & set(await h.ledger())

    await wait_for(forgotten, timeout=30, interval=0.5, message="the keys to expire")


async def test_a_record_that_can_go_at_once_is_claimed_and_counted_in_one_write(
    executor_harness: ExecutorHarness, receiver: Receiver
) -> None:
    """The first attempt of a record with a free slot rides on its claim; one that must wait
    for a slot is claimed uncounted and counted only once it holds one."""
    h = executor_harness
    await h.create_topics()
    hook = receiver.route("/hook", 200, delay_s=2.0)
    h.start_executor({"per_destination_concurrency": 1})
    first, second = (
        action("http", {"method": "POST", "url": hook, "headers": {}, "json": {"n": n}})
        for n in (1, 2)
    )
    await h.send(first, second)

    async def both_done() -> bool:
        ledger = await h.ledger()
        return all(
            ledger.get(r["idempotency_key"], {}).get("state") == "done" for r in (first, second)
        )

    await wait_for(both_done, timeout=60, interval=0.5, message="both actions done")
    writes = await h.changelog()

    def history(record: dict[str, object]) -> list[tuple[str, int]]:
        return [
            (value["state"], value["attempts"])
            for key, value in writes
            if key == record["idempotency_key"] and value is not None
        ]

    assert history(first) == [("pending", 1), ("done", 1)]
    # the second arrived while the first held the endpoint's only slot
    assert history(second) == [("pending", 0), ("pending", 1), ("done", 1)]
    calls = receiver.calls_to("/hook")
    assert [c.body["n"] for c in calls] == [1, 2]
    assert calls[1].at - calls[0].at >= 1.9, "the second request did not wait for the slot"


async def test_sends_the_gateway_holds_take_their_instances_slots_not_every_instances(
    executor_harness: ExecutorHarness, receiver: Receiver
) -> None:
    """The gateway holds a send for as long as its ``delay_ms`` (or as a stuck instance takes):
    those sends fill their own instance's slots, and other instances' sends go on."""
    h = executor_harness
    await h.create_topics()
    receiver.route("/message/sendText/slow-bot", 201, delay_s=5.0)
    receiver.route("/message/sendText/shop-bot", 201)
    h.start_executor(
        {
            "gateway": {"url": receiver.url("")},
            "per_destination_concurrency": 2,
            "send_rate_per_instance": None,
            "send_rate_per_chat": None,
        }
    )

    def sends(instance: str) -> list[dict[str, object]]:
        return [
            action("whatsapp.send_text", {"to": f"55110000000{i}", "text": "hi"}, instance=instance)
            for i in range(3)
        ]

    await h.send(*sends("slow-bot"))
    await wait_for(
        lambda: len(receiver.calls_to("/message/sendText/slow-bot")) == 2,
        timeout=60,
        message="slow-bot's first two sends",
    )
    await h.send(*sends("shop-bot"))
    await wait_for(
        lambda: (
            len(receiver.calls_to("/message/sendText/slow-bot")) == 3
            and len(receiver.calls_to("/message/sendText/shop-bot")) == 3
        ),
        timeout=60,
        message="all six sends",
    )
    slow = sorted(c.at for c in receiver.calls_to("/message/sendText/slow-bot"))
    shop = sorted(c.at for c in receiver.calls_to("/message/sendText/shop-bot"))
    # slow-bot's third send waited for one of its two slots...
    assert slow[2] - slow[0] >= 4.9
    # ...and shop-bot's did not: its three sends went while slow-bot's were held
    assert shop[-1] < slow[2], (shop, slow)
