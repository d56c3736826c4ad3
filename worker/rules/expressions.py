"""Conditions and templates: the Jinja2 / Ansible ``when:`` syntax, compiled once at load.

Conditions are parsed with Jinja2's own parser (so ops get the syntax they know from
Ansible) and then translated, node by node, into a small Python function. Only the node
types listed in :class:`_ConditionCompiler` are accepted: no attribute access on Python
objects (values are JSON data: dicts, lists, strings, numbers), no imports, no loops, no
``range``; so a condition cannot reach interpreter internals or run unbounded. The
translation is about ten times faster than calling a Jinja expression, which matters at
tens of thousands of events per second with fifty rules loaded.

A field the event does not have evaluates to a :class:`Missing` value that raises as soon
as it is compared, tested for truth or printed (Jinja's ``StrictUndefined``); ``is defined``
and ``| default(...)`` handle it, as in Jinja.

Templates are real Jinja2 templates in an immutable sandbox with ``StrictUndefined``.
Regular expressions, in both, use RE2 (linear time) because they scan text written by
strangers.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import re2
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import TemplateError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from worker.rules.durations import DurationError, humanize_seconds, parse_duration
from worker.rules.normalise import phone_of


class ExpressionError(Exception):
    """A condition or template that cannot be compiled; ``line`` is 1-based in the source."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return self.message


class EvaluationError(Exception):
    """A condition failed while running (e.g. it compared a field the event lacks)."""


class Missing:
    """A field the event does not have. Raises on any use but ``is defined``/``default``."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def _fail(self, *_: object) -> Any:
        raise EvaluationError(f"'{self.path}' is undefined")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _fail
    __bool__ = __str__ = __iter__ = __len__ = __contains__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __floordiv__ = __mod__ = __neg__ = __pos__ = _fail
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<undefined {self.path}>"


# --------------------------------------------------------------------------- regex


def _re2_options(ignorecase: bool) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignorecase
    return options


_ANCHORS = getattr(re2, "_Anchor", None)
#: The condition test of each anchor (0: anywhere, 1: at the start, 2: the whole text).
_ANCHOR_TESTS: Final = ("search", "match", "fullmatch")
_ANCHOR_VALUES = tuple(_ANCHORS(i) for i in range(3)) if _ANCHORS is not None else ()
_NULL_SPAN = (-1, -1)


#: At most this many search patterns share the RE2 set; later ones are searched one by one.
SEARCH_SET_LIMIT: Final = 512
#: Texts longer than this (UTF-8 bytes) are searched pattern by pattern (see ``_SearchSet``).
SEARCH_SET_MAX_TEXT: Final = 16_384
#: Memory RE2 may use for the set's automaton (its default is 8 MiB for one pattern).
SEARCH_SET_MAX_MEM: Final = 64 << 20


class _SearchSet:
    """Every ``search`` pattern compiled so far, in one RE2 set: one pass over a text tells
    which of them occur in it.

    Keyword rules each ask ``msg.text is search(...)`` of the same text; with fifty rules
    loaded, fifty RE2 calls were the largest cost of evaluating a message (about 40 µs),
    where one set match takes about 2 µs. The answer for the last text searched is kept
    (by identity: the rules of one event share the text object), so each rule's test is a
    set lookup. A pattern is added when it is compiled; the set is rebuilt on the first
    search after that, so a pattern compiled later (a reload) is in it from then on.

    RE2 cannot tell "no pattern occurs" from "the automaton ran out of memory" in a set
    match, and a miss must never be a false one: the set gets a large memory budget, is
    used only for texts up to ``SEARCH_SET_MAX_TEXT`` bytes, and holds at most
    ``SEARCH_SET_LIMIT`` patterns; anything else is searched pattern by pattern, as before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._patterns: list[str] = []
        #: The compiled set and how many patterns it holds (None: not built yet / unusable).
        self._compiled: tuple[Any, int] | None = None
        self._broken = False
        #: (text, compiled set, indices of the patterns that occur in the text).
        self._last: tuple[str, Any, frozenset[int]] | None = None

    def add(self, pattern: str, ignorecase: bool) -> int | None:
        """Add a pattern; its index in the set, or None when it stays out of it."""
        with self._lock:
            if len(self._patterns) >= SEARCH_SET_LIMIT:
                return None
            self._patterns.append(f"(?i:{pattern})" if ignorecase else pattern)
            return len(self._patterns) - 1

    def occurs(self, index: int, text: str) -> bool | None:
        """Whether pattern ``index`` occurs in ``text``; None when the set cannot tell."""
        last = self._last
        compiled = self._compiled
        if (
            compiled is not None
            and index < compiled[1]
            and last is not None
            and last[0] is text
            and last[1] is compiled
        ):
            return index in last[2]
        hits = self.hits(text)
        return None if hits is None else index in hits

    def hits(self, text: str) -> frozenset[int] | None:
        """The indices of every pattern that occurs in ``text``; None when the set cannot
        tell. The answer for the last text is kept (by identity): the rules of one event,
        and :mod:`worker.rules.prefilter` before them, ask about the same text object.
        """
        compiled = self._compiled
        if compiled is None or compiled[1] != len(self._patterns):
            compiled = self._rebuild()
            if compiled is None:
                return None
        last = self._last
        if last is not None and last[0] is text and last[1] is compiled:
            return last[2]
        data = text.encode()
        if len(data) > SEARCH_SET_MAX_TEXT:
            return None
        found = frozenset(compiled[0].Match(data) or ())
        self._last = (text, compiled, found)
        return found

    def _rebuild(self) -> tuple[Any, int] | None:
        with self._lock:
            if self._broken:
                return None
            compiled = self._compiled
            if compiled is not None and compiled[1] == len(self._patterns):
                return compiled
            options = _re2_options(False)
            options.max_mem = SEARCH_SET_MAX_MEM
            searches = re2.Set.SearchSet(options)
            try:
                for pattern in self._patterns:
                    searches.Add(pattern)
                searches.Compile()
            except re2.error:
                self._broken = True
                self._compiled = None
                return None
            self._compiled = (searches, len(self._patterns))
            return self._compiled


_SEARCHES = _SearchSet()
#: Which patterns of the shared set occur in a text (see :meth:`_SearchSet.hits`).
search_hits: Final = _SEARCHES.hits


class Regex:
    """An RE2 pattern with a fast yes/no test.

    The wrapper's ``search()`` maps byte offsets back to characters for a match object,
    which costs about 3 µs; a condition only needs yes or no, so ``found`` asks RE2
    directly (under 1 µs) when the wrapper exposes it, and falls back otherwise. A search
    (anchor 0) first asks the shared :class:`_SearchSet`, which answers every pattern's
    search of one text with one pass.
    """

    __slots__ = ("_raw", "_slot", "compiled", "pattern")

    def __init__(self, pattern: str, ignorecase: bool) -> None:
        self.pattern = pattern
        self.compiled = re2.compile(pattern, _re2_options(ignorecase))
        self._raw = getattr(self.compiled, "_regexp", None) if _ANCHORS is not None else None
        self._slot = _SEARCHES.add(pattern, ignorecase)

    def found(self, text: str, anchor: int) -> bool:
        if anchor == 0 and self._slot is not None:
            occurs = _SEARCHES.occurs(self._slot, text)
            if occurs is not None:
                return occurs
        return self.matches(text, anchor)

    def value_test(self, anchor: int) -> Callable[[object], bool]:
        """``value is search/match/fullmatch(<this pattern>)`` (anchor 0/1/2) as one call.

        For conditions whose pattern is known at load: the same answers and errors as
        ``test_search(value, pattern)`` and its siblings, without their calls to check the
        pattern and the text on every event. With fifty keyword rules on one event those
        calls were about half of what evaluating the rules cost (``bench/README.md``).
        """
        what = _ANCHOR_TESTS[anchor]
        matches = self.matches
        slot = self._slot if anchor == 0 else None
        if slot is None:

            def test(value: object) -> bool:
                return matches(value if value.__class__ is str else _text(value, what), anchor)

            return test
        occurs = _SEARCHES.occurs

        # ``found`` with the anchor known: asking the set here saves a call per rule.
        def search(value: object) -> bool:
            text = value if value.__class__ is str else _text(value, what)
            found = occurs(slot, text)
            return matches(text, anchor) if found is None else found

        # Read by worker.rules.prefilter: for a text (str) this test is False exactly when
        # the pattern at this index of the shared set does not occur in it.
        search.search_slot = slot  # type: ignore[attr-defined]
        return search

    def matches(self, text: str, anchor: int) -> bool:
        """``found`` without the shared set: this pattern alone."""
        if self._raw is not None:
            data = text.encode()
            spans = self._raw.Match(_ANCHOR_VALUES[anchor], data, 0, len(data))
            return bool(spans[0] != _NULL_SPAN)
        if anchor == 0:
            return self.compiled.search(text) is not None
        if anchor == 1:
            return self.compiled.match(text) is not None
        return self.compiled.fullmatch(text) is not None

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str, ignorecase: bool = False) -> Regex:
    """An RE2 pattern; raises ExpressionError with RE2's own reason when it is invalid."""
    try:
        return Regex(pattern, ignorecase)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ExpressionError(f"invalid regular expression {pattern!r}: {reason}") from None


def _pattern(pattern: object, ignorecase: bool) -> Regex:
    if isinstance(pattern, Regex):
        return pattern  # compiled at load
    if not isinstance(pattern, str):
        raise EvaluationError(f"a regular expression must be text, got {type(pattern).__name__}")
    try:
        return compile_regex(pattern, ignorecase)
    except ExpressionError as exc:
        raise EvaluationError(exc.message) from None


def _text(value: object, what: str) -> str:
    if isinstance(value, Missing):
        value._fail()
    if not isinstance(value, str):
        raise EvaluationError(f"{what} needs text, got {type(value).__name__}")
    return value


def test_search(value: object, pattern: object, ignorecase: bool = False) -> bool:
    """``x is search('re')``: the pattern occurs anywhere (RE2)."""
    return _pattern(pattern, ignorecase).found(_text(value, "search"), 0)


def test_match(value: object, pattern: object, ignorecase: bool = False) -> bool:
    """``x is match('re')``: the pattern matches at the start (RE2)."""
    return _pattern(pattern, ignorecase).found(_text(value, "match"), 1)


def test_fullmatch(value: object, pattern: object, ignorecase: bool = False) -> bool:
    """``x is fullmatch('re')``: the pattern matches the whole text (RE2)."""
    return _pattern(pattern, ignorecase).found(_text(value, "fullmatch"), 2)


def filter_regex_search(value: object, pattern: object, ignorecase: bool = False) -> Any:
    """The first match (or its first group) of the pattern, or None."""
    match = _pattern(pattern, ignorecase).compiled.search(_text(value, "regex_search"))
    if match is None:
        return None
    groups = match.groups()
    return groups[0] if groups else match.group(0)


def filter_regex_replace(
    value: object, pattern: object, replacement: str = "", ignorecase: bool = False
) -> str:
    """Every match of the pattern replaced (``\\1`` refers to groups)."""
    return str(
        _pattern(pattern, ignorecase).compiled.sub(replacement, _text(value, "regex_replace"))
    )


# --------------------------------------------------------------------- WhatsApp filters


def filter_phone(jid: object) -> str:
    """``5511987654321@s.whatsapp.net`` -> ``5511987654321`` (the user part for others)."""
    phone = phone_of(jid)
    if phone is not None:
        return phone
    return filter_jid_user(jid)


def filter_jid_user(jid: object) -> str:
    """The part of a JID before ``@`` (and before a ``:device`` suffix)."""
    text = _text(jid, "jid_user")
    return text.partition("@")[0].split(":", 1)[0]


def filter_mention(jid: object) -> str:
    """``@5511987654321``: how WhatsApp writes a mention in the text."""
    return "@" + filter_phone(jid)


def filter_truncate(value: object, length: int = 200, end: str = "…") -> str:
    """At most ``length`` characters, ending in ``end`` when cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= length:
        return text
    return text[: max(0, length - len(end))] + end


def filter_humanize(value: object) -> str:
    """Seconds (or a duration such as ``90s``) as ``1 min 30 s``."""
    if isinstance(value, bool):
        raise EvaluationError("humanize needs seconds or a duration, got a boolean")
    if isinstance(value, int | float):
        return humanize_seconds(value)
    if isinstance(value, str):
        try:
            return humanize_seconds(parse_duration(value))
        except DurationError as exc:
            raise EvaluationError(str(exc)) from None
    raise EvaluationError(f"humanize needs seconds or a duration, got {type(value).__name__}")


# ----------------------------------------------------------- filters for conditions


def _f_default(value: object, default: object = "", boolean: bool = False) -> object:
    if isinstance(value, Missing) or (boolean and not value):
        return default
    return value


def _f_length(value: object) -> int:
    if isinstance(value, Missing):
        value._fail()
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise EvaluationError(f"length needs text or a list, got {type(value).__name__}")


def _f_int(value: object, default: int = 0) -> int:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return default


def _f_float(value: object, default: float = 0.0) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _f_join(value: object, sep: str = "") -> str:
    if not isinstance(value, list | tuple):
        raise EvaluationError("join needs a list")
    return sep.join(str(v) for v in value)


def _f_first(value: object) -> object:
    if isinstance(value, list | tuple | str) and value:
        return value[0]
    return Missing("first of an empty list")


def _f_last(value: object) -> object:
    if isinstance(value, list | tuple | str) and value:
        return value[-1]
    return Missing("last of an empty list")


def _f_map_attr(value: object, attribute: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise EvaluationError("map needs a list")
    return [v.get(attribute) if isinstance(v, dict) else None for v in value]


def _f_selectattr(value: object, attribute: str, test: str = "truthy", arg: object = None) -> Any:
    if not isinstance(value, list | tuple):
        raise EvaluationError("selectattr needs a list")
    out = []
    for v in value:
        field = v.get(attribute) if isinstance(v, dict) else None
        if test == "truthy":
            ok = bool(field)
        elif test in ("eq", "equalto", "=="):
            ok = field == arg
        elif test in ("ne", "!="):
            ok = field != arg
        elif test == "in":
            ok = field in arg  # type: ignore[operator]
        elif test == "none":
            ok = field is None
        else:
            raise EvaluationError(f"selectattr supports eq, ne, in and none, not {test!r}")
        if ok:
            out.append(v)
    return out


def _str_filter(fn: Callable[[str], Any], name: str) -> Callable[[object], Any]:
    def apply(value: object) -> Any:
        return fn(_text(value, name))

    return apply


CONDITION_FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "default": _f_default,
    "d": _f_default,
    "lower": _str_filter(str.lower, "lower"),
    "upper": _str_filter(str.upper, "upper"),
    "trim": _str_filter(str.strip, "trim"),
    "length": _f_length,
    "count": _f_length,
    "int": _f_int,
    "float": _f_float,
    "string": lambda v: v if isinstance(v, str) else str(v),
    "bool": bool,
    "join": _f_join,
    "first": _f_first,
    "last": _f_last,
    "map_attribute": _f_map_attr,
    "selectattr": _f_selectattr,
    "phone": filter_phone,
    "jid_user": filter_jid_user,
    "mention": filter_mention,
    "truncate": filter_truncate,
    "humanize": filter_humanize,
    "regex_search": filter_regex_search,
    "regex_replace": filter_regex_replace,
}


def _t_in(value: object, seq: object) -> bool:
    return value in seq  # type: ignore[operator]


CONDITION_TESTS: Final[dict[str, Callable[..., bool]]] = {
    "search": test_search,
    "regex": test_search,
    "match": test_match,
    "fullmatch": test_fullmatch,
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "mapping": lambda v: isinstance(v, dict),
    "sequence": lambda v: isinstance(v, list | tuple | str),
    "true": lambda v: v is True,
    "false": lambda v: v is False,
    "in": _t_in,
    "contains": lambda v, x: x in v,
    "eq": lambda v, x: v == x,
    "ne": lambda v, x: v != x,
    "startswith": lambda v, x: _text(v, "startswith").startswith(x),
    "endswith": lambda v, x: _text(v, "endswith").endswith(x),
}

#: Tests handled by the compiler itself because they must see a missing value.
_SPECIAL_TESTS: Final = ("defined", "undefined", "none")
_REGEX_TESTS: Final = ("search", "regex", "match", "fullmatch")
_REGEX_FILTERS: Final = ("regex_search", "regex_replace")

#: Methods ops may call on values, e.g. ``msg.text.lower()``; nothing else is callable.
_METHODS: Final[dict[type, frozenset[str]]] = {
    str: frozenset(
        [
            "lower",
            "upper",
            "strip",
            "lstrip",
            "rstrip",
            "startswith",
            "endswith",
            "split",
            "replace",
            "count",
            "find",
            "isdigit",
            "isalpha",
            "title",
            "capitalize",
        ]
    ),
    list: frozenset({"count", "index"}),
    dict: frozenset({"get", "keys", "values", "items"}),
}

_MAX_SEQUENCE = 100_000


# ------------------------------------------------------------------- runtime helpers


def _ga(obj: object, name: str) -> object:
    if type(obj) is dict:
        try:
            return obj[name]
        except KeyError:
            return Missing(name)
    if isinstance(obj, Missing):
        return Missing(f"{obj.path}.{name}")
    return Missing(name)


def _gi(obj: object, key: object) -> object:
    if type(obj) is dict:
        try:
            return obj[key]
        except (KeyError, TypeError):
            return Missing(str(key))
    if isinstance(obj, list | tuple | str) and isinstance(key, int) and not isinstance(key, bool):
        try:
            return obj[key]
        except IndexError:
            return Missing(str(key))
    if isinstance(obj, Missing):
        return Missing(f"{obj.path}[{key!r}]")
    return Missing(str(key))


def _slice(obj: object, start: object, stop: object, step: object) -> object:
    if isinstance(obj, Missing):
        obj._fail()
    if not isinstance(obj, list | tuple | str):
        raise EvaluationError(f"cannot slice {type(obj).__name__}")
    return obj[start:stop:step]  # type: ignore[index]


def _mul(a: object, b: object) -> object:
    result = a * b  # type: ignore[operator]
    if isinstance(result, str | list) and len(result) > _MAX_SEQUENCE:
        raise EvaluationError("result of * is too large")
    return result


def _concat(*parts: object) -> str:
    return "".join(p if isinstance(p, str) else str(p) for p in parts)


def _call(obj: object, method: str, *args: object) -> object:
    if isinstance(obj, Missing):
        obj._fail()
    allowed = _METHODS.get(type(obj), frozenset())
    if method not in allowed:
        raise EvaluationError(f"cannot call {method}() on {type(obj).__name__}")
    return getattr(obj, method)(*args)


def _default(value: object, default: object = "", boolean: bool = False) -> object:
    return _f_default(value, default, boolean)


# ------------------------------------------------------------------------ compiler

_BINOPS: Final[dict[type, str]] = {
    nodes.Add: "+",
    nodes.Sub: "-",
    nodes.Div: "/",
    nodes.FloorDiv: "//",
    nodes.Mod: "%",
}
_CMPOPS: Final[dict[str, str]] = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "lteq": "<=",
    "gt": ">",
    "gteq": ">=",
    "in": "in",
    "notin": "not in",
}


def suggest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_expression(source: str) -> nodes.Expr:
    """Jinja2's parse of one expression; raises ExpressionError on a syntax error."""
    env = _PARSE_ENV
    try:
        parser = Parser(env, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise TemplateSyntaxError(
                f"unexpected '{token.value}' after the end of the expression", token.lineno
            )
    except TemplateSyntaxError as exc:
        message = (exc.message or "").replace("'end of template'", "end of expression")
        raise ExpressionError(f"syntax error in condition: {message}", exc.lineno) from None
    return expr


class _ConditionCompiler:
    """Translates a Jinja2 expression tree into Python source over safe helpers."""

    def __init__(
        self,
        vars_: Mapping[str, Any],
        names: frozenset[str] | None,
        present: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.vars = vars_
        self.names = names
        #: (namespace, field) pairs every view the condition sees is known to have, read
        #: by plain indexing instead of the defensive lookup
        self.present = present
        self.consts: dict[str, object] = {}
        self.prefix = f"K{next(_CONST_IDS)}_"

    def const(self, value: object) -> str:
        name = f"{self.prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def fail(self, message: str, node: nodes.Node) -> ExpressionError:
        return ExpressionError(message, getattr(node, "lineno", 1) or 1)

    def vars_value(self, node: nodes.Expr) -> tuple[bool, object]:
        """Fold ``vars.x`` / ``vars['x']`` into its constant value at load time."""
        if isinstance(node, nodes.Name) and node.name == "vars":
            return True, dict(self.vars)
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            ok, base = self.vars_value(node.node)
            if not ok:
                return False, None
            if isinstance(node, nodes.Getattr):
                key: object = node.attr
            elif isinstance(node.arg, nodes.Const):
                key = node.arg.value
            else:
                return False, None
            if not isinstance(base, dict) or key not in base:
                choices = list(base) if isinstance(base, dict) else []
                raise self.fail(f"unknown var '{key}'{suggest(str(key), choices)}", node)
            return True, base[key]
        return False, None

    def regex_arg(self, args: Sequence[nodes.Expr], kwargs: Sequence[Any]) -> str | None:
        """Compile a constant pattern at load so a bad regex is a load error.

        Returns the Python source of the call's arguments with the compiled pattern in
        place of the text, or None when the pattern is only known per event.
        """
        if not args:
            return None
        ok, value = self.const_value(args[0])
        if ok and isinstance(value, str):
            ignorecase = False
            for kw in kwargs:
                if kw.key == "ignorecase":
                    ok2, flag = self.const_value(kw.value)
                    ignorecase = bool(flag) if ok2 else False
            try:
                compiled = compile_regex(value, ignorecase)
            except ExpressionError as exc:
                raise self.fail(exc.message, args[0]) from None
            rest = [self.expr(a) for a in args[1:]]
            rest += [f"{kw.key}={self.expr(kw.value)}" for kw in kwargs if kw.key != "ignorecase"]
            return ", ".join([self.const(compiled), *rest])
        return None

    def const_value(self, node: nodes.Expr) -> tuple[bool, object]:
        if isinstance(node, nodes.Const):
            return True, node.value
        return self.vars_value(node)

    def args(self, args: Sequence[nodes.Expr], kwargs: Sequence[Any]) -> str:
        parts = [self.expr(a) for a in args]
        parts += [f"{kw.key}={self.expr(kw.value)}" for kw in kwargs]
        return ", ".join(parts)

    def expr(self, node: nodes.Node) -> str:
        folded, value = self.vars_value(node) if isinstance(node, nodes.Expr) else (False, None)
        if folded:
            return self.const(value)
        if isinstance(node, nodes.Const):
            return self.const(node.value)
        if isinstance(node, nodes.Name):
            if self.names is not None and node.name not in self.names:
                raise self.fail(f"unknown name '{node.name}'{suggest(node.name, self.names)}", node)
            return f"C.get({node.name!r}, {self.const(Missing(node.name))})"
        if isinstance(node, nodes.Getattr):
            base = node.node
            if (
                isinstance(base, nodes.Name)
                and (base.name, node.attr) in self.present
                and (self.names is None or base.name in self.names)
            ):
                return f"C[{base.name!r}][{node.attr!r}]"
            return f"_ga({self.expr(node.node)}, {node.attr!r})"
        if isinstance(node, nodes.Getitem):
            if isinstance(node.arg, nodes.Slice):
                s = node.arg
                bounds = [
                    self.expr(b) if b is not None else "None" for b in (s.start, s.stop, s.step)
                ]
                return f"_slice({self.expr(node.node)}, {', '.join(bounds)})"
            return f"_gi({self.expr(node.node)}, {self.expr(node.arg)})"
        if isinstance(node, nodes.List):
            return "[" + ", ".join(self.expr(i) for i in node.items) + "]"
        if isinstance(node, nodes.Tuple):
            return "(" + "".join(self.expr(i) + ", " for i in node.items) + ")"
        if isinstance(node, nodes.Dict):
            return (
                "{"
                + ", ".join(f"{self.expr(p.key)}: {self.expr(p.value)}" for p in node.items)
                + "}"
            )
        if isinstance(node, nodes.And):
            return f"({self.expr(node.left)} and {self.expr(node.right)})"
        if isinstance(node, nodes.Or):
            return f"({self.expr(node.left)} or {self.expr(node.right)})"
        if isinstance(node, nodes.Not):
            return f"(not {self.expr(node.node)})"
        if isinstance(node, nodes.Neg):
            return f"(-{self.expr(node.node)})"
        if isinstance(node, nodes.Pos):
            return f"(+{self.expr(node.node)})"
        if isinstance(node, nodes.Mul):
            return f"_mul({self.expr(node.left)}, {self.expr(node.right)})"
        if isinstance(node, nodes.Concat):
            return "_concat(" + ", ".join(self.expr(n) for n in node.nodes) + ")"
        for op_type, symbol in _BINOPS.items():
            if isinstance(node, op_type):
                return f"({self.expr(node.left)} {symbol} {self.expr(node.right)})"  # type: ignore[attr-defined]
        if isinstance(node, nodes.Compare):
            parts = [self.expr(node.expr)]
            for operand in node.ops:
                parts.append(_CMPOPS[operand.op])
                parts.append(self.expr(operand.expr))
            return "(" + " ".join(parts) + ")"
        if isinstance(node, nodes.CondExpr):
            other = self.expr(node.expr2) if node.expr2 is not None else "None"
            return f"({self.expr(node.expr1)} if {self.expr(node.test)} else {other})"
        if isinstance(node, nodes.Filter):
            return self.filter(node)
        if isinstance(node, nodes.Test):
            return self.test(node)
        if isinstance(node, nodes.Call):
            return self.call(node)
        raise self.fail(f"'{type(node).__name__}' is not allowed in a condition", node)

    def filter(self, node: nodes.Filter) -> str:
        if node.node is None or node.dyn_args is not None or node.dyn_kwargs is not None:
            raise self.fail("this form of filter is not allowed in a condition", node)
        if node.name not in CONDITION_FILTERS:
            raise self.fail(
                f"unknown filter '{node.name}'{suggest(node.name, CONDITION_FILTERS)}", node
            )
        regex_args = self.regex_arg(node.args, node.kwargs) if node.name in _REGEX_FILTERS else None
        args = regex_args if regex_args is not None else self.args(node.args, node.kwargs)
        fn = self.const(CONDITION_FILTERS[node.name])
        return f"{fn}({self.expr(node.node)}{', ' + args if args else ''})"

    def test(self, node: nodes.Test) -> str:
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise self.fail("this form of test is not allowed in a condition", node)
        value = self.expr(node.node)
        missing = self.const(Missing)
        if node.name == "defined":
            return f"(not isinstance({value}, {missing}))"
        if node.name == "undefined":
            return f"isinstance({value}, {missing})"
        if node.name == "none":
            return f"({value} is None)"
        if node.name not in CONDITION_TESTS:
            known = [*CONDITION_TESTS, *_SPECIAL_TESTS]
            raise self.fail(f"unknown test '{node.name}'{suggest(node.name, known)}", node)
        regex_args = self.regex_arg(node.args, node.kwargs) if node.name in _REGEX_TESTS else None
        if regex_args is not None and regex_args in self.consts:
            # The pattern alone, compiled at load: one call per event (Regex.value_test).
            regex = self.consts[regex_args]
            assert isinstance(regex, Regex)
            anchor = _ANCHOR_TESTS.index("search" if node.name == "regex" else node.name)
            return f"{self.const(regex.value_test(anchor))}({value})"
        args = regex_args if regex_args is not None else self.args(node.args, node.kwargs)
        fn = self.const(CONDITION_TESTS[node.name])
        return f"{fn}({value}{', ' + args if args else ''})"

    def call(self, node: nodes.Call) -> str:
        if (
            not isinstance(node.node, nodes.Getattr)
            or node.kwargs
            or node.dyn_args is not None
            or node.dyn_kwargs is not None
        ):
            raise self.fail(
                "only methods of text, lists and mappings can be called, e.g. msg.text.lower()",
                node,
            )
        method = node.node.attr
        if not any(method in names for names in _METHODS.values()):
            allowed = sorted(set().union(*_METHODS.values()))
            raise self.fail(f"unknown method '{method}()'{suggest(method, allowed)}", node)
        args = "".join(", " + self.expr(a) for a in node.args)
        return f"_call({self.expr(node.node.node)}, {method!r}{args})"


_CONST_IDS = itertools.count()

_HELPERS: Final[dict[str, object]] = {
    "_ga": _ga,
    "_gi": _gi,
    "_slice": _slice,
    "_mul": _mul,
    "_concat": _concat,
    "_call": _call,
    "isinstance": isinstance,
    "__builtins__": {},
}


def condition_helpers() -> dict[str, object]:
    """The names compiled conditions may call (and nothing else: no builtins)."""
    return dict(_HELPERS)


def references(node: nodes.Node) -> list[tuple[tuple[str, ...], int]]:
    """Every ``name.field.sub`` chain read by an expression, with its line.

    A method call's name is not a field (``msg.text.lower()`` reads ``msg.text``).
    """
    found: list[tuple[tuple[str, ...], int]] = []

    def chain(n: nodes.Node) -> tuple[str, ...] | None:
        if isinstance(n, nodes.Name):
            return (n.name,)
        if isinstance(n, nodes.Getattr):
            base = chain(n.node)
            return (*base, n.attr) if base is not None else None
        if isinstance(n, nodes.Getitem) and isinstance(n.arg, nodes.Const):
            base = chain(n.node)
            if base is not None and isinstance(n.arg.value, str):
                return (*base, n.arg.value)
            return base
        return None

    def visit(n: nodes.Node) -> None:
        if isinstance(n, nodes.Call) and isinstance(n.node, nodes.Getattr):
            visit(n.node.node)
            for child in (*n.args, *(kw.value for kw in n.kwargs)):
                visit(child)
            return
        path = chain(n) if isinstance(n, nodes.Name | nodes.Getattr | nodes.Getitem) else None
        if path is not None:
            found.append((path, getattr(n, "lineno", 1) or 1))
            if isinstance(n, nodes.Getitem):
                visit(n.arg)
            return
        for sub in n.iter_child_nodes():
            visit(sub)

    visit(node)
    return found


@dataclass(frozen=True)
class Condition:
    """One compiled condition: ``fn(view)`` returns its (truthy) value."""

    source: str
    fn: Callable[[Mapping[str, Any]], Any]
    #: dotted paths the condition reads, shown in traces when it does not match
    paths: tuple[str, ...]
    #: the Python expression ``fn`` evaluates (over ``C``, the view) and its constants,
    #: so that a tree of conditions can be fused into one function
    body: str = "None"
    namespace: Mapping[str, object] = field(default_factory=dict)

    def seen(self, view: Mapping[str, Any]) -> dict[str, Any]:
        """The values the condition saw, for a trace."""
        values: dict[str, Any] = {}
        for path in self.paths:
            value: object = view
            for part in path.split("."):
                value = _ga(value, part)
            values[path] = None if isinstance(value, Missing) else value
        return values


def compile_condition(
    source: str,
    vars_: Mapping[str, Any] | None = None,
    names: Iterable[str] | None = None,
    present: Iterable[tuple[str, str]] = (),
) -> Condition:
    """Compile a ``when:`` expression once.

    Args:
        source: the expression, Jinja2 syntax without ``{{ }}``.
        vars_: the bundle's ``vars``; ``vars.x`` is folded into a constant.
        names: the top-level names the expression may use (None: any).
        present: ``(namespace, field)`` pairs every view is guaranteed to have (the
            documented fields of the rule's events); read without the defensive lookup.

    Raises:
        ExpressionError: syntax errors, unknown names, filters, tests, methods or vars,
            disallowed constructs, invalid regular expressions.
    """
    tree = parse_expression(source)
    compiler = _ConditionCompiler(
        vars_ or {}, frozenset(names) if names is not None else None, frozenset(present)
    )
    body = compiler.expr(tree)
    namespace: dict[str, object] = dict(_HELPERS)
    namespace.update(compiler.consts)
    fn = eval(f"lambda C: {body}", namespace)  # source built from whitelisted nodes only
    paths = tuple(dict.fromkeys(".".join(p) for p, _ in references(tree) if p[0] != "vars"))
    return Condition(source=source, fn=fn, paths=paths, body=body, namespace=dict(compiler.consts))


# ------------------------------------------------------------------------ templates


def _finalize(value: object) -> object:
    # A field that is present but empty (None) renders as nothing, never as "None".
    return "" if value is None else value


class _TemplateEnvironment(ImmutableSandboxedEnvironment):
    pass


def _make_template_env() -> ImmutableSandboxedEnvironment:
    env = _TemplateEnvironment(
        undefined=StrictUndefined, autoescape=False, finalize=_finalize, keep_trailing_newline=True
    )
    env.filters.update(
        {
            "phone": filter_phone,
            "jid_user": filter_jid_user,
            "mention": filter_mention,
            "truncate": filter_truncate,
            "humanize": filter_humanize,
            "regex_search": filter_regex_search,
            "regex_replace": filter_regex_replace,
            "tojson": lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True),
        }
    )
    env.tests.update(
        {
            "search": test_search,
            "regex": test_search,
            "match": test_match,
            "fullmatch": test_fullmatch,
        }
    )
    return env


TEMPLATE_ENV: Final = _make_template_env()
_PARSE_ENV: Final = TEMPLATE_ENV


def template_context(values: Mapping[str, Any]) -> dict[str, Any]:
    """A render context: the template globals (``range``, ``dict``, …) plus ``values``."""
    return {**TEMPLATE_ENV.globals, **values}


def is_template(text: str) -> bool:
    """True when a string holds Jinja markup and must be rendered."""
    return "{{" in text or "{%" in text or "{#" in text


@dataclass(frozen=True)
class Template:
    """One compiled template string."""

    source: str
    render: Callable[[Mapping[str, Any]], str]


def template_tree(source: str) -> nodes.Template:
    """Parse a template; raises ExpressionError on a syntax error or unknown filter/test."""
    try:
        tree = TEMPLATE_ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"syntax error in template: {exc.message}", exc.lineno) from None
    for node in tree.find_all(nodes.Filter):
        if node.name not in TEMPLATE_ENV.filters:
            raise ExpressionError(
                f"unknown filter '{node.name}'{suggest(node.name, TEMPLATE_ENV.filters)}",
                node.lineno,
            )
    for test in tree.find_all(nodes.Test):
        if test.name not in TEMPLATE_ENV.tests:
            raise ExpressionError(
                f"unknown test '{test.name}'{suggest(test.name, TEMPLATE_ENV.tests)}",
                test.lineno,
            )
    for node in tree.find_all(nodes.Filter | nodes.Test):  # type: ignore[arg-type]
        if node.name in (*_REGEX_FILTERS, *_REGEX_TESTS) and node.args:
            arg = node.args[0]
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                try:
                    compile_regex(arg.value)
                except ExpressionError as exc:
                    raise ExpressionError(exc.message, node.lineno) from None
    return tree


def _simple_template(tree: nodes.Template) -> Callable[[Mapping[str, Any]], str] | None:
    """A fast renderer for templates that are text and ``{{ expression }}`` parts only.

    Most action templates are like ``"{{ instance }} caiu {{ window.count }} vezes"``;
    rendering them through Jinja costs a context object per call. When every part is an
    expression the condition compiler accepts, the template becomes one Python function
    with the same meaning (strict undefined, ``None`` as ``""``). Anything else (blocks,
    Jinja-only filters) renders through Jinja.
    """
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts: list[str] = []
    compiler = _ConditionCompiler({}, None)
    try:
        for node in tree.body[0].nodes:
            if isinstance(node, nodes.TemplateData):
                parts.append(compiler.const(node.data))
            else:
                parts.append(f"_show({compiler.expr(node)})")
    except ExpressionError:
        return None
    namespace: dict[str, object] = dict(_HELPERS)
    namespace["_show"] = _show
    namespace.update(compiler.consts)
    body = "''.join((" + "".join(p + ", " for p in parts) + "))"
    return eval(f"lambda C: {body}", namespace)  # type: ignore[no-any-return]


def _show(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value)  # a Missing value raises here, as StrictUndefined does


def compile_template(source: str) -> Template:
    """Compile a template string once; raises ExpressionError like :func:`template_tree`."""
    tree = template_tree(source)
    simple = _simple_template(tree)
    if simple is not None:
        fast = simple

        def render_simple(context: Mapping[str, Any]) -> str:
            try:
                return fast(context)
            except EvaluationError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                raise EvaluationError(f"{type(exc).__name__}: {exc}") from None

        return Template(source=source, render=render_simple)
    try:
        compiled = TEMPLATE_ENV.from_string(source)
    except TemplateSyntaxError as exc:  # pragma: no cover - parse above catches these
        raise ExpressionError(f"syntax error in template: {exc.message}", exc.lineno) from None

    root = compiled.root_render_func
    concat = TEMPLATE_ENV.concat

    def render(context: Mapping[str, Any]) -> str:
        # ``Template.render`` copies the context and merges the globals on every call,
        # which is most of its cost; the engine builds one context per firing that
        # already holds the globals (see ``template_context``), shared by its templates.
        if "range" not in context:
            context = template_context(context)
        try:
            return concat(
                root(
                    compiled.new_context(
                        dict(context) if not isinstance(context, dict) else context, shared=True
                    )
                )
            )
        except EvaluationError:
            raise
        except TemplateError as exc:
            raise EvaluationError(str(exc)) from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise EvaluationError(f"{type(exc).__name__}: {exc}") from None

    return Template(source=source, render=render)
