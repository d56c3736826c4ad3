"""The keyword-rule index: the rules it names fail, and evaluation says the same with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.rules.rules_helpers import T0, dm, envelope
from worker.rules import RuleBundle, evaluate, prefilter
from worker.rules.expressions import SEARCH_SET_MAX_TEXT, search_hits
from worker.rules.model import AllOf, CondNode, Fused
from worker.rules.prefilter import NONE_FAILING

Make = Callable[[str], RuleBundle]

#: Rules of every shape the index looks at, in one bundle. Which are indexed is in
#: INDEXED; the others are there so that evaluation order and traces interleave.
MIXED = """
rules:
  - id: bare
    on: messages.upsert
    when: msg.text is search('(?i)pedido')
    actions: [{log: {message: bare}}]
  - id: after-reads
    on: messages.upsert
    when: not msg.from_me and not msg.is_group and msg.text is search('(?i)prazo|entrega')
    actions: [{log: {message: after-reads}}]
  - id: reads-after
    on: messages.upsert
    when: msg.text is search('pix') and msg.is_group
    actions: [{log: {message: reads-after}}]
  - id: either
    on: messages.upsert
    when: msg.text is search('pedido') or msg.kind == "image"
    actions: [{log: {message: either}}]
  - id: second-check
    on: messages.upsert
    when:
      all:
        - msg.kind == "text"
        - "msg.text is search('pedido')"
    actions: [{log: {message: second-check}}]
  - id: anchored
    on: messages.upsert
    when: msg.text is match('pedido')
    actions: [{log: {message: anchored}}]
  - id: filtered
    on: messages.upsert
    when: msg.text | lower is search('pedido')
    actions: [{log: {message: filtered}}]
  - id: compared-first
    on: messages.upsert
    when: msg.kind == "text" and msg.text is search('pedido')
    actions: [{log: {message: compared-first}}]
  - id: mine-too
    on: messages.upsert
    from_me: allow
    when: msg.text is search('(?i)pedido')
    actions: [{log: {message: mine-too}}]
  - id: held
    on: messages.upsert
    when: msg.text is search('pedido')
    for: 5m
    actions: [{log: {message: held}}]
  - id: no-condition
    on: messages.upsert
    actions: [{log: {message: no-condition}}]
  - id: listed
    on: messages.upsert
    when:
      - not msg.is_group
      - msg.kind != "image"
      - msg.text is search('(?i)\\\\bpix\\\\b')
    actions: [{log: {message: listed}}]
  - id: measured-first
    on: messages.upsert
    when:
      - msg.text | length > 3
      - msg.text is search('pedido')
    actions: [{log: {message: measured-first}}]
"""

#: The rules of MIXED the index covers, by position.
INDEXED = {
    0: "bare",
    1: "after-reads",
    2: "reads-after",
    4: "second-check",
    7: "compared-first",
    8: "mine-too",
    11: "listed",
}
#: Those whose search is not in their first check: the check that fails depends on the view.
FOUND_WHEN_READ = {4, 11}


@pytest.fixture(autouse=True)
def index_small_bundles(monkeypatch: pytest.MonkeyPatch) -> None:
    """These bundles are small: index them all the same."""
    monkeypatch.setattr(prefilter, "MIN_INDEXED", 1)


def test_a_few_keyword_rules_are_left_to_their_own_tests(
    make_bundle: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prefilter, "MIN_INDEXED", len(INDEXED) + 1)
    bundle = make_bundle(MIXED)
    assert bundle.plans["messages.upsert"][1] is None
    evaluation = evaluate(bundle, {}, envelope("messages.upsert", dm("pedido")), T0)
    assert "bare" in {a.rule_id for a in evaluation.actions}


def _texts() -> list[str]:
    return [
        "oi",
        "",
        "Qual o PRAZO de entrega?",
        "pedido 42 e pix",
        "PEDIDO 7",
        "pix",
        "pedido" + " " * (SEARCH_SET_MAX_TEXT + 1),  # too long for the set: no index
    ]


def _views() -> list[dict[str, Any]]:
    out = []
    for text in _texts():
        out.append(envelope("messages.upsert", dm(text)))
        out.append(envelope("messages.upsert", dm(text, keyFromMe=True)))
        out.append(
            envelope(
                "messages.upsert",
                dm(text, chat="120363000000000001@g.us", isGroup=True, keyParticipant="5511@s"),
            )
        )
        out.append(
            envelope(
                "messages.upsert", dm(text, messageType="imageMessage", content={"caption": text})
            )
        )
    return out


def _outcome(evaluation: Any) -> list[tuple[Any, ...]]:
    # outcomes() first: it reads the compact entries the trace then replaces.
    return [
        *evaluation.outcomes(),
        *((t.rule_id, t.outcome, t.reason, t.condition, t.values) for t in evaluation.trace),
        *(("action", a.rule_id) for a in evaluation.actions),
    ]


def test_the_index_covers_rules_with_only_plain_terms_before_a_search(make_bundle: Make) -> None:
    bundle = make_bundle(MIXED)
    index = bundle.plans["messages.upsert"][1]
    assert index is not None
    assert set(index.checks) == set(INDEXED.values())
    rules = bundle.by_event["messages.upsert"]
    for position, rule_id in INDEXED.items():
        when = rules[position].when
        assert isinstance(when, Fused)
        if position in FOUND_WHEN_READ:
            assert index.checks[rule_id] is None
        else:
            # The check the index stands in for is the one the condition returns first.
            assert index.checks[rule_id] is _first_check(when)


def _first_check(when: Fused) -> CondNode:
    node = when.tree
    while isinstance(node, AllOf):
        node = node.items[0]
    return node


def test_failing_names_the_rules_whose_pattern_is_not_in_the_text(make_bundle: Make) -> None:
    bundle = make_bundle(MIXED)
    index = bundle.plans["messages.upsert"][1]
    assert index is not None

    def failing(text: str) -> set[str]:
        view = evaluate(bundle, {}, envelope("messages.upsert", dm(text)), T0).view
        return set(index.failing(view))

    assert failing("oi") == set(INDEXED.values())
    assert failing("Qual o prazo?") == set(INDEXED.values()) - {"after-reads"}
    # 'PEDIDO' occurs only for the patterns that ignore case.
    assert failing("PEDIDO e pix") == {"after-reads", "second-check", "compared-first"}


def test_failing_names_nothing_it_cannot_vouch_for(make_bundle: Make) -> None:
    bundle = make_bundle(MIXED)
    index = bundle.plans["messages.upsert"][1]
    assert index is not None
    view = evaluate(bundle, {}, envelope("messages.upsert", dm("oi")), T0).view
    assert index.failing(view)  # the reference: every indexed rule fails on "oi"
    # A field read before the search is missing: the rules' own tests must say.
    no_flag = {**view, "msg": {k: v for k, v in view["msg"].items() if k != "from_me"}}
    assert index.failing(no_flag) is NONE_FAILING
    # The searched value is not text.
    assert not index.failing({**view, "msg": {**view["msg"], "text": None}})
    # A text too long for the shared set.
    long = {**view, "msg": {**view["msg"], "text": "x" * (SEARCH_SET_MAX_TEXT + 1)}}
    assert not index.failing(long)


def test_evaluation_with_the_index_is_evaluation_without_it(make_bundle: Make) -> None:
    indexed = make_bundle(MIXED)
    plain = make_bundle(MIXED)
    # The same rules, every one tested on its own.
    plain.__dict__["plans"] = {event: (rules, None) for event, rules in plain.by_event.items()}
    compared = 0
    for env in _views():
        got = evaluate(indexed, {}, env, T0)
        expected = evaluate(plain, {}, env, T0)
        assert _outcome(got) == _outcome(expected), env["data"]
        compared += 1
    assert compared == len(_texts()) * 4


def test_a_rule_the_index_names_is_not_tested(make_bundle: Make) -> None:
    bundle = make_bundle(MIXED)
    rules = bundle.by_event["messages.upsert"]
    calls: list[str] = []
    for position, rule_id in INDEXED.items():
        when = rules[position].when
        assert isinstance(when, Fused)
        test = when.test

        def counted(view: Any, test: Any = test, rule_id: str = rule_id) -> Any:
            calls.append(rule_id)
            return test(view)

        when.test = counted  # type: ignore[method-assign]
    evaluation = evaluate(bundle, {}, envelope("messages.upsert", dm("Qual o prazo?")), T0)
    # Only the rule whose pattern occurs is tested; it matches.
    assert calls == ["after-reads"]
    assert "after-reads" in {a.rule_id for a in evaluation.actions}
    # The others' traces still name their condition and what it saw.
    bare = next(t for t in evaluation.trace if t.rule_id == "bare")
    assert (bare.outcome, bare.reason) == ("not_matched", "condition")
    assert bare.condition == "msg.text is search('(?i)pedido')"
    assert bare.values == {"msg.text": "Qual o prazo?"}


def test_rules_whose_plain_terms_fail_are_named_without_asking_the_set(
    make_bundle: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(
        """
        rules:
          - id: words
            on: messages.upsert
            when:
              - not msg.is_group
              - msg.kind == "text"
              - msg.text is search('pedido')
            actions: [{log: {message: words}}]
          - id: more-words
            on: messages.upsert
            when: msg.kind == "text" and msg.text is search('pix')
            actions: [{log: {message: more-words}}]
        """
    )
    asked: list[str] = []

    def hits(text: str) -> frozenset[int] | None:
        asked.append(text)
        return search_hits(text)

    monkeypatch.setattr(prefilter, "search_hits", hits)
    image = envelope("messages.upsert", dm("pedido", messageType="imageMessage"))
    evaluation = evaluate(bundle, {}, image, T0)
    assert asked == []  # no rule got to its search
    assert [(t.rule_id, t.outcome, t.condition) for t in evaluation.trace] == [
        ("words", "not_matched", 'msg.kind == "text"'),
        ("more-words", "not_matched", "msg.kind == \"text\" and msg.text is search('pix')"),
    ]
    text = evaluate(bundle, {}, envelope("messages.upsert", dm("pedido")), T0)
    assert set(asked) == {"pedido"}  # (each group asks; the set keeps its last answer)
    assert [a.rule_id for a in text.actions] == ["words"]
