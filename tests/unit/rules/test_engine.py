from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from tests.unit.rules.rules_helpers import T0, Runner, conn, dm, envelope
from worker.rules import ActionRecord, RuleBundle, evaluate, fire_due

Make = Callable[[str], RuleBundle]

REPLY = """
rules:
  - id: reply
    on: messages.upsert
    {extra}
    actions:
      - whatsapp.send_text:
          to: "{{{{ msg.chat }}}}"
          text: "Olá {{{{ msg.push_name }}}}"
          quote: true
          delay_ms: 1200
"""


def reply_bundle(make: Make, extra: str = "throttle: none") -> RuleBundle:
    return make(REPLY.format(extra=extra))


def test_matched_rule_produces_an_action_record_per_contract(make_bundle: Make) -> None:
    bundle = reply_bundle(make_bundle)
    ev = evaluate(bundle, {}, envelope("messages.upsert", dm(), eid="01J"), T0)
    (record,) = ev.actions
    assert record.to_dict() == {
        "idempotency_key": "reply:01J:0:-:fire",
        "rule_id": "reply",
        "bundle_version": bundle.version,
        "event_id": "01J",
        "action_index": 0,
        "item": None,
        "phase": "fire",
        "instance": "shop-bot",
        "kind": "whatsapp.send_text",
        "params": {
            "instance": "shop-bot",
            "to": "5511987654321@s.whatsapp.net",
            "text": "Olá Maria",
            "quote": {
                "keyId": "K1",
                "keyRemoteJid": "5511987654321@s.whatsapp.net",
                "keyFromMe": False,
            },
            "delay_ms": 1200,
        },
        "created_at": "2026-11-25T20:00:00.000Z",
    }
    assert ActionRecord.from_json(record.to_json()) == record
    assert [t.outcome for t in ev.trace] == ["matched"]
    assert ev.changes == {}


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (dm(keyFromMe=True), "not msg.from_me (set from_me: allow to opt in)"),
        (dm(keyId="ZF00AA", keyFromMe=True), "not msg.is_own_send (an echo of a zapflow send)"),
        (
            dm(externalAttributes={"zapflow": {"rule": "x"}}),
            "not msg.is_own_send (an echo of a zapflow send)",
        ),
        (dm(chat="status@broadcast"), 'msg.chat != "status@broadcast"'),
    ],
)
def test_message_rules_never_see_our_own_messages_by_default(
    make_bundle: Make, data: dict[str, object], condition: str
) -> None:
    ev = evaluate(reply_bundle(make_bundle), {}, envelope("messages.upsert", data), T0)
    assert ev.actions == []
    (trace,) = ev.trace
    assert (trace.outcome, trace.reason, trace.condition) == ("not_matched", "guard", condition)


def test_from_me_allow_opts_in_but_own_sends_stay_blocked(make_bundle: Make) -> None:
    bundle = reply_bundle(make_bundle, "from_me: allow\n    throttle: none")
    assert (
        len(evaluate(bundle, {}, envelope("messages.upsert", dm(keyFromMe=True)), T0).actions) == 1
    )
    assert (
        evaluate(
            bundle, {}, envelope("messages.upsert", dm(keyId="ZF1", keyFromMe=True)), T0
        ).actions
        == []
    )


def test_not_matched_trace_names_the_failed_condition_and_values(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: r
            on: messages.upsert
            when:
              all:
                - not msg.is_group
                - any: [msg.kind == "image", "msg.text is search('pedido')"]
            actions:
              - log: {message: hi}
        """
    )
    (trace,) = evaluate(bundle, {}, envelope("messages.upsert", dm("oi")), T0).trace
    assert trace.outcome == "not_matched"
    assert trace.condition == "any of [msg.kind == \"image\", msg.text is search('pedido')]"
    assert trace.values == {"msg.kind": "text", "msg.text": "oi"}
    assert "not matched (condition)" in trace.describe()


def test_not_list_means_none_of(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: r
            on: messages.upsert
            when: {not: ["msg.kind == 'image'", "msg.text == 'stop'"]}
            actions: [{log: {message: hi}}]
        """
    )
    assert len(evaluate(bundle, {}, envelope("messages.upsert", dm("oi")), T0).actions) == 1
    assert evaluate(bundle, {}, envelope("messages.upsert", dm("stop")), T0).actions == []


def test_condition_error_is_traced_not_raised(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: r
            on: messages.upsert
            when: data.extra.flag == 1
            actions: [{log: {message: hi}}]
        """
    )
    (trace,) = evaluate(bundle, {}, envelope("messages.upsert", dm()), T0).trace
    assert (trace.outcome, trace.condition) == ("error", "'extra.flag' is undefined")


def test_throttle_per_chat_with_until(make_bundle: Make) -> None:
    run = Runner(
        reply_bundle(make_bundle, "throttle: {once_within: 10m, key: [instance, msg.chat]}")
    )
    assert len(run.send("messages.upsert", dm(), at=0).actions) == 1
    ev = run.send("messages.upsert", dm(), at=60)
    (trace,) = ev.trace
    assert (trace.outcome, trace.reason, trace.until) == (
        "suppressed",
        "throttle",
        datetime.fromisoformat("2026-11-25T20:10:00+00:00"),
    )
    assert (
        len(run.send("messages.upsert", dm(chat="5511000000000@s.whatsapp.net"), at=61).actions)
        == 1
    )
    assert len(run.send("messages.upsert", dm(), at=600).actions) == 1
    assert set(run.state) == {
        "reply|t|shop-bot|5511987654321@s.whatsapp.net",
        "reply|t|shop-bot|5511000000000@s.whatsapp.net",
    }


def test_throttle_backoff_doubles_while_it_keeps_firing_and_resets_after_calm(
    make_bundle: Make,
) -> None:
    run = Runner(
        reply_bundle(make_bundle, "throttle: {once_within: 1m, backoff: {factor: 2, max: 4m}}")
    )
    fired = [t for t in range(0, 1200, 10) if run.send("messages.upsert", dm(), at=t).actions]
    # periods 1m, 2m, 4m, 4m, ...
    assert fired[:5] == [0, 60, 180, 420, 660]
    run2 = Runner(run.bundle)
    run2.send("messages.upsert", dm(), at=0)
    assert run2.send("messages.upsert", dm(), at=200).actions  # calm for > one period
    assert run2.state["reply|t|shop-bot|5511987654321@s.whatsapp.net"]["period"] == 60


def test_window_fires_on_the_nth_event_within_the_period_then_starts_over(
    make_bundle: Make,
) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: flap
            on: connection.update
            when: conn.state == "close"
            window: {count: 3, within: 10m}
            actions: [{log: {message: "{{ window.count }} in {{ window.within }}"}}]
        """
    )
    run = Runner(bundle)
    traces = [run.send("connection.update", conn("close"), at=t).trace[0] for t in (0, 300)]
    assert [t.detail for t in traces] == ["1 of 3 within 10 min", "2 of 3 within 10 min"]
    ev = run.send("connection.update", conn("close"), at=599)
    assert ev.actions[0].params == {"level": "info", "message": "3 in 10 min"}
    assert "flap|w|shop-bot" not in run.state
    run = Runner(bundle)
    for t in (0, 300, 601):  # the first has left the window
        assert run.send("connection.update", conn("close"), at=t).actions == []


def test_for_fires_after_the_delay_and_resolves_with_on_resolve(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: down
            on: connection.update
            when: conn.state == "close"
            for: 2m
            resolve_when: conn.state == "open"
            actions: [{log: {message: "down since {{ alert.since }}"}}]
            on_resolve: [{log: {message: "back after {{ alert.duration | humanize }}"}}]
        """
    )
    run = Runner(bundle)
    ev = run.send("connection.update", conn("close"), at=0, eid="C1")
    assert (ev.trace[0].outcome, ev.trace[0].until) == (
        "pending",
        datetime.fromisoformat("2026-11-25T20:02:00+00:00"),
    )
    assert run.tick(119).actions == []
    assert (
        run.send("connection.update", conn("connecting"), at=30).trace[0].outcome == "not_matched"
    )
    (fired,) = run.tick(120).actions
    assert (fired.idempotency_key, fired.params["message"]) == (
        "down:C1:0:-:fire",
        "down since 2026-11-25T20:00:00.000Z",
    )
    assert run.send("connection.update", conn("close"), at=130).trace[0].reason == "firing"
    ev = run.send("connection.update", conn("open", 200), at=300, eid="O1")
    (resolved,) = ev.actions
    assert (resolved.idempotency_key, resolved.phase, resolved.params["message"]) == (
        "down:O1:0:-:resolve",
        "resolve",
        "back after 5 min",
    )
    assert run.state == {}


def test_for_is_cancelled_when_it_clears_early(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: down
            on: connection.update
            when: conn.state == "close"
            for: 2m
            actions: [{log: {message: down}}]
        """
    )
    run = Runner(bundle)
    run.send("connection.update", conn("close"), at=0)
    ev = run.send(
        "connection.update", conn("open"), at=60
    )  # no resolve_when: 'when' turning false cancels
    assert (ev.trace[0].outcome, ev.trace[0].reason) == ("resolved", "cancelled")
    assert run.tick(500).actions == []


def test_quiet_hours_by_named_interval_in_its_time_zone(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        time_intervals:
          office:
            location: America/Sao_Paulo
            periods: [{weekdays: ["monday:friday"], times: ["09:00-18:00"]}]
        rules:
          - id: r
            on: messages.upsert
            throttle: none
            mute_during: office
            actions: [{whatsapp.send_text: {to: "{{ msg.chat }}", text: hi}}]
          - id: a
            on: messages.upsert
            active_during: [office]
            actions: [{log: {message: hi}}]
        """
    )
    # T0 is Wednesday 17:00 in São Paulo: inside office hours.
    ev = evaluate(bundle, {}, envelope("messages.upsert", dm()), T0)
    muted, active = ev.trace
    assert (muted.outcome, muted.reason, muted.until) == (
        "suppressed",
        "quiet_hours",
        datetime.fromisoformat("2026-11-25T18:00:00-03:00"),
    )
    assert active.outcome == "matched"
    night = datetime.fromisoformat("2026-11-28T10:00:00-03:00")  # Saturday
    ev = evaluate(bundle, {}, envelope("messages.upsert", dm()), night)
    assert [t.outcome for t in ev.trace] == ["matched", "suppressed"]
    assert ev.trace[1].until == datetime.fromisoformat("2026-11-30T09:00:00-03:00")


def test_for_each_fans_out_with_item_in_templates_and_keys(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: welcome
            on: group-participants.update
            when: group.action == "add"
            for_each: group.participants
            throttle: {once_within: 1d, key: [group.id, item.jid]}
            actions:
              - whatsapp.send_text: {to: "{{ group.id }}", text: "Oi {{ item.jid | mention }}"}
        """
    )
    data = {
        "id": "g@g.us",
        "action": "add",
        "participants": [
            "551@s.whatsapp.net",
            {"id": "9@lid", "phoneNumber": "552@s.whatsapp.net"},
        ],
    }
    run = Runner(bundle)
    ev = run.send("group-participants.update", data, eid="G1")
    assert [(a.item, a.idempotency_key, a.params["text"]) for a in ev.actions] == [
        ("551@s.whatsapp.net", "welcome:G1:0:551@s.whatsapp.net:fire", "Oi @551"),
        ("9@lid", "welcome:G1:0:9@lid:fire", "Oi @552"),
    ]
    ev = run.send(
        "group-participants.update", {**data, "participants": ["551@s.whatsapp.net"]}, at=10
    )
    assert [(t.outcome, t.reason, t.item) for t in ev.trace] == [
        ("suppressed", "throttle", "551@s.whatsapp.net")
    ]
    ev = run.send("group-participants.update", {**data, "participants": []}, at=20)
    assert ev.trace[0].reason == "for_each"


def test_inhibition_mutes_a_rule_while_another_fires_for_the_same_key(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: down
            on: connection.update
            when: conn.state == "close"
            for: 1m
            resolve_when: conn.state == "open"
            actions: [{log: {message: down}}]
          - id: closed
            on: connection.update
            when: conn.state == "close"
            inhibited_by: down
            actions: [{log: {message: closed}}]
        """
    )
    run = Runner(bundle)
    assert [a.rule_id for a in run.send("connection.update", conn("close"), at=0).actions] == [
        "closed"
    ]
    run.tick(60)
    ev = run.send("connection.update", conn("close"), at=90)
    assert (ev.trace[1].outcome, ev.trace[1].reason, ev.trace[1].detail) == (
        "suppressed",
        "inhibited",
        "by down",
    )
    other = run.send("connection.update", conn("close"), at=91, instance="other-bot")
    assert [a.rule_id for a in other.actions] == ["closed"]  # a different key is not muted


def test_shadow_mode_evaluates_and_keeps_state_but_never_acts(make_bundle: Make) -> None:
    run = Runner(reply_bundle(make_bundle, "mode: shadow\n    throttle: {once_within: 1h}"))
    ev = run.send("messages.upsert", dm())
    assert ev.actions == []
    assert (ev.trace[0].outcome, ev.trace[0].reason) == ("suppressed", "shadow")
    assert run.send("messages.upsert", dm(), at=5).trace[0].reason == "throttle"


def test_disabled_rules_are_not_considered(make_bundle: Make) -> None:
    bundle = reply_bundle(make_bundle, "mode: disabled\n    throttle: none")
    assert evaluate(bundle, {}, envelope("messages.upsert", dm()), T0).trace == []
    assert bundle.events == frozenset()


def test_notify_http_kafka_and_group_params_follow_the_contract(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        channels:
          ops:
            type: webhook
            url: "${env:ZAPFLOW_OPS_WEBHOOK}"
            headers: {X-Token: "${env:TOKEN}"}
          wa: {type: whatsapp, instance: ops-bot, to: "5511999990000@s.whatsapp.net"}
        rules:
          - id: r
            on: group-participants.update
            actions:
              - notify:
                  channel: ops
                  text: "{{ group.id }}"
                  fields: {n: "{{ group.participants | length }}"}
              - notify: {channel: wa, text: hi}
              - http:
                  method: put
                  url: "https://crm/{{ instance }}"
                  json: {group: "{{ group.id }}"}
                  timeout_s: 5
              - kafka.produce:
                  topic: crm.events
                  key: "{{ group.id }}"
                  value: {who: ["{{ group.author }}"]}
              - whatsapp.group_participants:
                  group: "{{ group.id }}"
                  action: promote
                  participants: ["{{ group.author }}"]
        """
    )
    ev = evaluate(
        bundle,
        {},
        envelope(
            "group-participants.update",
            {"id": "g@g.us", "author": "5@s.whatsapp.net", "participants": [], "action": "add"},
        ),
        T0,
    )
    assert [a.params for a in ev.actions] == [
        {
            "channel": {
                "name": "ops",
                "type": "webhook",
                "url": "${env:ZAPFLOW_OPS_WEBHOOK}",
                "headers": {"X-Token": "${env:TOKEN}"},
            },
            "text": "g@g.us",
            "fields": {"n": "0"},
        },
        {
            "channel": {
                "name": "wa",
                "type": "whatsapp",
                "instance": "ops-bot",
                "to": "5511999990000@s.whatsapp.net",
            },
            "text": "hi",
            "fields": {},
        },
        {
            "method": "PUT",
            "url": "https://crm/shop-bot",
            "headers": {},
            "json": {"group": "g@g.us"},
            "timeout_s": 5.0,
        },
        {"topic": "crm.events", "key": "g@g.us", "value": {"who": ["5@s.whatsapp.net"]}},
        {
            "instance": "shop-bot",
            "group": "g@g.us",
            "action": "promote",
            "participants": ["5@s.whatsapp.net"],
        },
    ]
    assert [a.action_index for a in ev.actions] == [0, 1, 2, 3, 4]


def test_fire_due_drops_expired_state_and_state_of_removed_rules(make_bundle: Make) -> None:
    bundle = reply_bundle(make_bundle, "throttle: {once_within: 1m}")
    run = Runner(bundle)
    run.send("messages.upsert", dm())
    run.state["gone-rule|t|x"] = {"until": 0, "period": 1}
    assert run.tick(30).changes == {"gone-rule|t|x": None}
    assert run.tick(121).changes == {"reply|t|shop-bot|5511987654321@s.whatsapp.net": None}
    assert run.state == {}


def test_state_is_read_only_and_keys_start_with_the_rule_id(make_bundle: Make) -> None:
    bundle = reply_bundle(make_bundle, "throttle: {once_within: 1m}")
    state: dict[str, object] = {}
    ev = evaluate(bundle, state, envelope("messages.upsert", dm()), T0)
    assert state == {}
    assert all(k.startswith("reply|") for k in ev.changes)


def test_naive_now_is_refused(make_bundle: Make) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        fire_due(reply_bundle(make_bundle), {}, datetime(2026, 1, 1))


def test_outcomes_summarise_the_trace_without_building_it(make_bundle: Make) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: texts
            on: messages.upsert
            when: msg.kind == "text"
            throttle: none
            actions: [{log: {message: hi}}]
          - id: images
            on: messages.upsert
            when: msg.kind == "image"
            actions: [{log: {message: hi}}]
        """
    )
    ev = evaluate(bundle, {}, envelope("messages.upsert", dm()), T0)
    assert list(ev.outcomes()) == [
        ("texts", "matched", None),
        ("images", "not_matched", "condition"),
    ]
    own = evaluate(bundle, {}, envelope("messages.upsert", dm(keyFromMe=True)), T0)
    assert [o[2] for o in own.outcomes()] == ["guard", "guard"]
    assert [t.describe() for t in ev.trace] == [
        "matched → 1 action",
        "not matched (condition): msg.kind == \"image\" — saw msg.kind='text'",
    ]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("msg.text > 5", "TypeError: '>' not supported between instances of 'str' and 'int'"),
        ("1 / (msg.text | length - 2) > 0", "ZeroDivisionError: division by zero"),
    ],
)
def test_a_condition_that_fails_on_the_data_is_an_error_trace_not_a_crash(
    make_bundle: Make, condition: str, message: str
) -> None:
    bundle = make_bundle(
        f"""
        rules:
          - id: r
            on: messages.upsert
            when: "{condition}"
            actions: [{{log: {{message: hi}}}}]
        """
    )
    (trace,) = evaluate(bundle, {}, envelope("messages.upsert", dm("oi")), T0).trace
    assert (trace.outcome, trace.condition) == ("error", message)


def test_fire_due_drops_state_a_changed_rule_no_longer_keeps(make_bundle: Make) -> None:
    bundle = reply_bundle(make_bundle, "throttle: none")
    state = {
        "reply|w|shop-bot|x": {"ts": [T0.timestamp()]},
        "reply|a|shop-bot|x": {"phase": "firing", "since": 0},
    }
    assert fire_due(bundle, state, T0).changes == {
        "reply|w|shop-bot|x": None,
        "reply|a|shop-bot|x": None,
    }
