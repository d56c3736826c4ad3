from __future__ import annotations

from typing import Any

import pytest

from worker.rules.expressions import (
    EvaluationError,
    ExpressionError,
    compile_condition,
    compile_template,
)

VIEW: dict[str, Any] = {
    "instance": "shop-bot",
    "msg": {
        "text": "Quero CANCELAR",
        "from_me": False,
        "kind": "text",
        "chat": "5511@s.whatsapp.net",
        "n": 3,
    },
    "data": {"nested": {"x": 1}},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("not msg.from_me and msg.kind == 'text'", True),
        ("msg.kind in ['image', 'video']", False),
        ("msg.kind not in ['image']", True),
        ("msg.n > 2 and msg.n <= 3", True),
        ("msg.n + 1 == 4 and msg.n * 2 == 6 and msg.n % 2 == 1", True),
        ("'CANCEL' in msg.text", True),
        ("msg.text ~ '!' == 'Quero CANCELAR!'", True),
        ("msg.text.lower().startswith('quero')", True),
        ("msg.text | lower == 'quero cancelar'", True),
        ("msg.text | length == 14", True),
        ("msg.text is search('cancelar', ignorecase=true)", True),
        ("msg.text is search('cancelar')", False),
        ("msg.text is match('Quero')", True),
        ("msg.text is match('CANCELAR')", False),
        ("msg.text is fullmatch('Quero [A-Z]+')", True),
        ("msg.text is regex('(?i)cancel')", True),
        ("msg.chat | phone == '5511'", True),
        ("data.nested.x == 1", True),
        ("data['nested']['x'] == 1", True),
        ("data.missing is defined", False),
        ("data.missing is undefined", True),
        ("data.missing | default('z') == 'z'", True),
        ("(data.missing.deeper | default(0)) == 0", True),
        ("msg.text[:5] == 'Quero'", True),
        ("'yes' if msg.from_me else 'no'", "no"),
        ("msg.n is number and msg.text is string", True),
        ("vars.words is defined and msg.text is search(vars.words)", True),
        ("instance == 'shop-bot'", True),
    ],
)
def test_conditions(source: str, expected: object) -> None:
    assert compile_condition(source, {"words": "CANCEL"}).fn(VIEW) == expected


def test_comparing_a_missing_field_is_an_error_naming_it() -> None:
    condition = compile_condition("data.absent == 1")
    with pytest.raises(EvaluationError, match="'absent' is undefined"):
        condition.fn(VIEW)
    with pytest.raises(EvaluationError, match=r"'nested.nope' is undefined|'nope' is undefined"):
        compile_condition("not data.nested.nope").fn(VIEW)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("msg.text | lowr", "unknown filter 'lowr' (did you mean 'lower'?)"),
        ("msg.text is serach('x')", "unknown test 'serach' (did you mean 'search'?)"),
        ("msg.text is search('(x')", "invalid regular expression '(x': missing ): (x"),
        (
            "msg.text is search('(?<=a)b')",
            "invalid regular expression '(?<=a)b': invalid perl operator: (?<=",
        ),
        (
            "range(10)",
            "only methods of text, lists and mappings can be called, e.g. msg.text.lower()",
        ),
        ("msg.text.format(1)", "unknown method 'format()'"),
        ("msg.text ==", "syntax error in condition: unexpected end of expression"),
        ("vars.nope", "unknown var 'nope'"),
        ("msg.text ** 99", "'Pow' is not allowed in a condition"),
        ("[x for x in msg]", "syntax error in condition: expected token ',', got 'for'"),
    ],
)
def test_rejected_conditions(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_condition(source, {"words": "x"})
    assert str(info.value) == message


def test_python_internals_are_unreachable() -> None:
    # Attribute access only looks up mapping keys, so a dunder is simply undefined.
    condition = compile_condition("msg.text.__class__ is defined")
    assert condition.fn(VIEW) is False
    with pytest.raises(ExpressionError, match=r"unknown method '__init__\(\)'"):
        compile_condition("msg.__init__()")
    with pytest.raises(EvaluationError, match="cannot call split"):
        compile_condition("msg.split()").fn(VIEW)  # a dict has no split: refused, not attempted


def test_huge_repetition_is_refused() -> None:
    with pytest.raises(EvaluationError, match="too large"):
        compile_condition("'a' * 1000000").fn(VIEW)


def test_regex_is_linear_time_re2() -> None:
    # The classic catastrophic-backtracking pattern returns at once under RE2.
    condition = compile_condition("msg.text is search('(a+)+$')")
    assert condition.fn({"msg": {"text": "a" * 5000 + "!"}}) is False


def test_condition_reports_what_it_saw() -> None:
    condition = compile_condition("msg.kind == 'image' and data.nested.x == 2")
    assert condition.paths == ("msg.kind", "data.nested.x")
    assert condition.seen(VIEW) == {"msg.kind": "text", "data.nested.x": 1}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ msg.chat | phone }}", "5511"),
        ("{{ msg.chat | mention }}", "@5511"),
        ("{{ '5511:3@s.whatsapp.net' | jid_user }}", "5511"),
        ("{{ msg.text | truncate(8) }}", "Quero C…"),
        ("{{ msg.text | truncate(80) }}", "Quero CANCELAR"),
        ("{{ 125 | humanize }}", "2 min 5 s"),
        ("{{ 7260 | humanize }}", "2 h 1 min"),
        ("{{ '90s' | humanize }}", "1 min 30 s"),
        ("{{ 0 | humanize }}", "0 s"),
        ("{{ none }}", ""),
        ("{{ msg.text | regex_replace('C(ANCEL)AR', 'c\\\\1') }}", "Quero cANCEL"),
        ("{{ msg.text | regex_search('(C\\\\w+)') }}", "CANCELAR"),
        ("{% if msg.text is search('CANCEL') %}yes{% endif %}", "yes"),
        ("${env:TOKEN}/{{ instance }}", "${env:TOKEN}/shop-bot"),
    ],
)
def test_templates_and_whatsapp_filters(source: str, expected: str) -> None:
    assert compile_template(source).render(VIEW) == expected


def test_templates_fail_loudly_on_a_missing_field() -> None:
    template = compile_template("Olá {{ msg.push_name }}")
    with pytest.raises(EvaluationError, match="'push_name' is undefined"):
        template.render(VIEW)
    block = compile_template("{% if true %}Olá {{ msg.push_name }}{% endif %}")  # via Jinja
    with pytest.raises(EvaluationError, match="has no attribute 'push_name'"):
        block.render(VIEW)


def test_templates_are_sandboxed() -> None:
    # Simple templates only look up keys, so Python attributes do not exist for them ...
    with pytest.raises(EvaluationError, match=r"'__class__\.__mro__' is undefined"):
        compile_template("{{ msg.text.__class__.__mro__ }}").render(VIEW)
    # ... and templates rendered by Jinja run in its sandbox.
    with pytest.raises(EvaluationError, match="unsafe"):
        compile_template("{% if true %}{{ msg.text.__class__.__mro__ }}{% endif %}").render(VIEW)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ msg.text | truncat(3) }}", "unknown filter 'truncat' (did you mean 'truncate'?)"),
        (
            "{{ msg.text ",
            "syntax error in template: unexpected end of template, "
            "expected 'end of print statement'.",
        ),
        ("{{ msg.text | regex_search('(') }}", "invalid regular expression '(': missing ): ("),
    ],
)
def test_rejected_templates(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_template(source)
    assert str(info.value) == message


SET_PATTERNS = [
    ("cancelar", True),
    ("CANCEL", False),
    (r"\bpedido\s*#?\d+\b", True),
    ("^Quero", False),
    ("ção$", False),
    ("prazo|entrega|pix", True),
    ("a|b", False),
]
SET_TEXTS = [
    "Quero CANCELAR",
    "sobre o pedido #17: já foi enviado?",
    "Qual o PRAZO de entrega?",
    "informação",
    "",
    "ok",
]


def test_searches_through_the_shared_set_answer_as_each_pattern_alone() -> None:
    from worker.rules.expressions import compile_regex

    patterns = [compile_regex(p, ignorecase) for p, ignorecase in SET_PATTERNS]
    for text in SET_TEXTS:
        for regex in patterns:
            assert regex.found(text, 0) == regex.matches(text, 0), (regex, text)


def test_a_pattern_compiled_after_the_set_was_built_is_found_in_the_same_text() -> None:
    from worker.rules.expressions import compile_regex

    text = "um texto com zzyzx-unico no meio"
    first = compile_regex("texto")
    assert first.found(text, 0)
    later = compile_regex("zzyzx-unico")
    assert later.found(text, 0)
    assert not compile_regex("zzyzx-ausente").found(text, 0)


def test_a_text_longer_than_the_set_takes_is_searched_pattern_by_pattern() -> None:
    from worker.rules.expressions import SEARCH_SET_MAX_TEXT, compile_regex

    text = "x" * SEARCH_SET_MAX_TEXT + " fim-do-texto"
    assert compile_regex("fim-do-texto").found(text, 0)
    assert not compile_regex("fim-de-outro").found(text, 0)


class _Text(str):
    """A str subclass: the one-call regex tests take the long way for it."""


@pytest.mark.parametrize("test", ["search", "regex", "match", "fullmatch"])
@pytest.mark.parametrize(
    "value",
    [
        "Quero CANCELAR",
        "cancelar",
        "sobre o pedido #17: já foi enviado?",
        "",
        _Text("Quero CANCELAR"),
        "x" * 5000 + " cancelar",
    ],
)
def test_a_pattern_known_at_load_answers_as_the_test_with_the_pattern_given(
    test: str, value: str
) -> None:
    from worker.rules.expressions import CONDITION_TESTS, compile_regex

    for pattern, ignorecase in [*SET_PATTERNS, ("(?i)quero cancelar", False)]:
        quoted = pattern.replace("\\", "\\\\")
        flag = ", ignorecase=true" if ignorecase else ""
        condition = compile_condition(f"msg.text is {test}('{quoted}'{flag})")
        expected = CONDITION_TESTS[test](value, compile_regex(pattern, ignorecase))
        assert condition.fn({"msg": {"text": value}}) is expected, (test, pattern, value)


@pytest.mark.parametrize("test", ["search", "match", "fullmatch"])
def test_a_pattern_known_at_load_refuses_what_is_not_text(test: str) -> None:
    condition = compile_condition(f"msg.text is {test}('cancelar')")
    with pytest.raises(EvaluationError, match=f"{test} needs text, got int"):
        condition.fn({"msg": {"text": 3}})
    with pytest.raises(EvaluationError, match="'text' is undefined"):
        condition.fn({"msg": {}})
