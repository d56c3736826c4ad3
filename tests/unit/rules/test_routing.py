from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.rules.rules_helpers import T0, dm, envelope
from worker.rules import RuleBundle, evaluate
from worker.rules.expressions import EvaluationError, compile_condition
from worker.rules.normalise import normalise
from worker.rules.routing import evaluate_only, routes, rule_key, without

Make = Callable[[str], RuleBundle]

RULES = """
rules:
  - id: per-instance
    on: messages.upsert
    when: msg.text == "preço"
    throttle: {key: [instance], once_within: 10m}
    actions: [{log: {message: "price asked on {{ instance }}"}}]
  - id: per-sender
    on: messages.upsert
    window: {key: [instance, msg.sender], count: 2, within: 1m}
    actions: [{log: {message: "two from {{ msg.sender }}"}}]
  - id: quiet-instance
    on: messages.upsert
    when: msg.text == "nunca"
    for: 5m
    key: [instance]
    actions: [{log: {message: "quiet"}}]
  - id: reply
    on: messages.upsert
    actions: [{log: {message: "reply"}}]
"""


def parts(*sources: str) -> tuple[Any, ...]:
    return tuple(compile_condition(source) for source in sources)


KEYS = {
    "per-instance": parts("instance"),
    "per-sender": parts("instance"),
    "quiet-instance": parts("instance"),
}


def test_rule_key_is_the_engines_key_of_the_normalised_event() -> None:
    view = normalise(envelope("messages.upsert", dm(chat="5511@s.whatsapp.net")))
    assert rule_key(parts("instance", "msg.chat"), view) == "shop-bot|5511@s.whatsapp.net"
    with pytest.raises(EvaluationError) as raised:
        rule_key(parts("msg.nothing"), view)
    assert str(raised.value) == "key part 'msg.nothing' is undefined"


def test_routes_group_the_rules_by_their_key_and_leave_out_those_whose_when_fails(
    make_bundle: Make,
) -> None:
    bundle = make_bundle(RULES)
    keys = KEYS | {"per-sender": parts("msg.sender")}
    asked = envelope("messages.upsert", dm("preço", chat="5511@s.whatsapp.net"))
    assert routes(bundle, keys, asked) == [
        ("shop-bot", ("per-instance", "quiet-instance")),
        ("5511@s.whatsapp.net", ("per-sender",)),
    ]
    # per-instance's when fails: it stays home; quiet-instance has a "for" and always goes.
    other = envelope("messages.upsert", dm("oi", chat="5511@s.whatsapp.net"))
    assert routes(bundle, keys, other) == [
        ("5511@s.whatsapp.net", ("per-sender",)),
        ("shop-bot", ("quiet-instance",)),
    ]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (dm("preço", keyFromMe=True), "from me"),
        (dm("preço", chat="status@broadcast"), "a status broadcast"),
    ],
)
def test_events_the_message_guard_stops_travel_for_no_rule(
    make_bundle: Make, data: dict[str, Any], why: str
) -> None:
    assert routes(make_bundle(RULES), KEYS, envelope("messages.upsert", data)) == [], why


def test_routes_of_an_event_without_rekeyed_rules_are_empty(make_bundle: Make) -> None:
    bundle = make_bundle(RULES)
    closed = envelope("connection.update", {"instance": "shop-bot", "state": "close"})
    assert routes(bundle, KEYS, closed) == []
    assert routes(bundle, {}, envelope("messages.upsert", dm("preço"))) == []


def test_a_rule_whose_key_is_undefined_for_the_event_does_not_travel(make_bundle: Make) -> None:
    bundle = make_bundle(RULES)
    keys = {"per-sender": parts("msg.quoted.id")}
    assert routes(bundle, keys, envelope("messages.upsert", dm("oi"))) == []


def test_without_leaves_the_rules_out_of_evaluation_but_in_the_bundle(make_bundle: Make) -> None:
    bundle = make_bundle(RULES)
    assert without(bundle, ()) is bundle
    local = without(bundle, KEYS)
    assert [r.id for r in local.by_event["messages.upsert"]] == ["reply"]
    assert set(local.by_id) == set(bundle.by_id)
    assert local.version == bundle.version
    ev = evaluate(local, {}, envelope("messages.upsert", dm("preço")), T0)
    assert [a.rule_id for a in ev.actions] == ["reply"]


def test_evaluate_only_considers_just_the_given_rules(make_bundle: Make) -> None:
    bundle = make_bundle(RULES)
    asked = envelope("messages.upsert", dm("preço"), eid="01JA")
    ev = evaluate_only(bundle, {"per-instance", "gone"}, {}, asked, T0)
    assert [a.idempotency_key for a in ev.actions] == ["per-instance:01JA:0:-:fire"]
    assert [t.rule_id for t in ev.trace] == ["per-instance"]
    assert list(ev.changes) == ["per-instance|t|shop-bot"]
    # The same throttle state holds for another chat of the instance.
    other_chat = envelope("messages.upsert", dm("preço", chat="5521@s.whatsapp.net"), eid="01JB")
    again = evaluate_only(bundle, ["per-instance"], ev.changes, other_chat, T0)
    assert again.actions == []
    assert [t.reason for t in again.trace] == ["throttle"]


def test_evaluate_only_with_no_rule_of_the_event_does_nothing(make_bundle: Make) -> None:
    bundle = make_bundle(RULES)
    closed = envelope("connection.update", {"instance": "shop-bot", "state": "close"})
    ev = evaluate_only(bundle, ["per-instance"], {}, closed, T0)
    assert (ev.actions, ev.changes, ev.trace) == ([], {}, [])


def test_a_rule_that_allows_from_me_still_gets_from_me_messages_but_never_our_echoes(
    make_bundle: Make,
) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: own-per-instance
            on: messages.upsert
            from_me: allow
            throttle: {key: [instance], once_within: 1h}
            actions: [{log: {message: "own"}}]
        """
    )
    keys = {"own-per-instance": parts("instance")}
    person = envelope("messages.upsert", dm("já vou", keyFromMe=True))
    assert routes(bundle, keys, person) == [("shop-bot", ("own-per-instance",))]
    echo = dm("Olá", keyFromMe=True, externalAttributes={"zapflow": {"rule": "x"}})
    assert routes(bundle, keys, envelope("messages.upsert", echo)) == []
