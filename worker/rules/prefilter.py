"""The rules of an event whose condition cannot hold, found with one search of its text.

Keyword rules (``not msg.from_me and msg.text is search('...')``) are most of a large
bundle, and most messages match none of them. The shared RE2 set of
:mod:`worker.rules.expressions` answers every pattern's search of a text in one pass, but
each rule still paid for its own visit: a call of its compiled condition, the search test
and the set lookup, about a microsecond a rule. :class:`SearchIndex` asks the set once,
before the rules are visited, and names the rules whose condition fails; the engine gives
each of them the trace entry its condition would have returned, without running it.

A rule is indexed when its compiled condition (:class:`~worker.rules.model.Fused`) is a
list of checks (``all:``, or one condition) that are each an ``and`` of terms, and the
first term that is not a *plain term* is a search of a field with its pattern in the set
(``K(C['msg']['text'])``). Plain terms are field reads that cannot raise once their fields
are in the view: ``C[..][..]``, ``not C[..][..]``, and ``C[..][..] ==`` or ``!=`` a
constant. For each event the index evaluates the plain terms of its rules (each distinct
``and`` of them once) and, only if some rule's terms hold, asks the set. A rule whose
plain terms do not hold, or whose pattern does not occur in the text, fails; its condition
would not have raised on the way.

Which check ``Fused.test`` returns then is the first that fails. When the search is in the
first check, that is the first check. Otherwise the engine leaves a trace entry that runs
the test when the trace is read (explanations), which most evaluations never are.

Anything the index cannot vouch for leaves every rule to its own test: a field missing
from the view, a searched value that is not text, a set that cannot answer (a text over
its size limit, an automaton out of memory).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple

from worker.rules.expressions import search_hits
from worker.rules.model import AllOf, CondNode, Fused, Leaf, Rule

#: A field of the view as the compiled code reads it: ``C['msg']['text']`` is ('msg', 'text').
FieldPath = tuple[str, ...]

#: No rule is known to fail.
NONE_FAILING: Final[frozenset[str]] = frozenset()


class KeywordSearch(NamedTuple):
    """What indexes a rule (``Rule.keyword_search``)."""

    #: Its pattern's index in the shared set.
    slot: int
    #: The field it searches.
    field: FieldPath
    #: The plain terms before the search, as one Python expression over ``C`` (the view).
    prefix: str
    #: The check its condition returns when it fails (None: the first of its checks that
    #: fails, found when the trace is read).
    check: CondNode | None


class SearchIndex:
    """The indexed rules of one event's rule list (see the module documentation)."""

    def __init__(self, rules: Sequence[tuple[str, KeywordSearch]]) -> None:
        """``rules``: (rule id, what indexes it), the ids unique."""
        prefixes = list(dict.fromkeys(search.prefix for _, search in rules))
        fields = list(dict.fromkeys(search.field for _, search in rules))
        groups: dict[tuple[int, int], dict[int, set[str]]] = {}
        for rule_id, search in rules:
            key = (prefixes.index(search.prefix), fields.index(search.field))
            groups.setdefault(key, {}).setdefault(search.slot, set()).add(rule_id)
        #: Per (plain terms, searched field): the indexes of both in what ``_probe``
        #: returns, the ids of every rule of the group, and their ids per pattern index.
        self._groups = tuple(
            (
                prefix,
                field,
                frozenset().union(*by_slot.values()),
                {slot: frozenset(ids) for slot, ids in by_slot.items()},
            )
            for (prefix, field), by_slot in groups.items()
        )
        self._probe = _probe(prefixes, fields)
        #: Rule id -> the check its condition returns when the index says it fails (None:
        #: the engine leaves it to be found when the trace is read).
        self.checks: dict[str, CondNode | None] = {
            rule_id: search.check for rule_id, search in rules
        }

    def failing(self, view: Mapping[str, Any]) -> frozenset[str]:
        """Ids of the rules whose condition fails on ``view``, as far as the index can
        tell: their plain terms do not hold, or their pattern is not in the text."""
        probed = self._probe(view)
        if probed is None:
            return NONE_FAILING
        holds, texts = probed
        failing = NONE_FAILING
        for prefix, field, ids, by_slot in self._groups:
            fails = ids
            if holds[prefix]:
                # The search decides: the set is asked only when some rule gets to it.
                text = texts[field]
                if text.__class__ is not str:
                    continue
                hits = search_hits(text)
                if hits is None:
                    continue
                for slot in hits:
                    matched = by_slot.get(slot)
                    if matched is not None:
                        fails = fails - matched
            failing = fails if not failing else failing | fails
        return failing


def _probe(
    prefixes: Sequence[str], fields: Sequence[FieldPath]
) -> Callable[[Mapping[str, Any]], tuple[tuple[Any, ...], tuple[Any, ...]] | None]:
    """One function that evaluates each ``and`` of plain terms in ``prefixes`` and reads
    ``fields``; None where the compiled conditions could raise reading them."""
    values = "".join(f"{_source(path)}, " for path in fields)
    source = (
        "def _probe(C):\n"
        "    try:\n"
        f"        return ({''.join(f'({p}), ' for p in prefixes)}), ({values})\n"
        "    except (KeyError, TypeError, IndexError):\n"
        "        return None\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # field names and constants as Python literals (repr) only
    probe: Callable[[Mapping[str, Any]], tuple[tuple[Any, ...], tuple[Any, ...]] | None]
    probe = namespace["_probe"]
    return probe


#: Fewer indexable rules than this on one event are left to their own tests. An index
#: costs a few microseconds an event and saves 0.3-1 µs a rule: with the 11 indexable rules
#: of the 30 on messages.upsert in bench/bench_rules.py's mix it changed nothing measurable
#: (47.9 and 48.2 µs an event with it, 47.9 and 50.5 without), with 50 keyword rules it
#: took 47 µs to 31. Building one compiles a function, which the one-event bundles of
#: :func:`worker.rules.routing.evaluate_only` would pay on every call.
MIN_INDEXED: Final = 16


def search_index(rules: Sequence[Rule]) -> SearchIndex | None:
    """The index of ``rules`` (one event's list; their ids are unique); None if fewer than
    :data:`MIN_INDEXED` of them can be indexed."""
    indexed = [(rule.id, rule.keyword_search) for rule in rules if rule.keyword_search]
    return SearchIndex(indexed) if indexed and len(indexed) >= MIN_INDEXED else None


def keyword_search(rule: Rule) -> KeywordSearch | None:
    """What indexes ``rule``, or None when it has the wrong shape (worked out once per
    rule, when it is built: ``Rule.keyword_search``)."""
    when = rule.when
    # The engine's fast path, the only one the index stands in for: a fused condition
    # tested alone (a ``for`` rule tracks its condition over time).
    if not isinstance(when, Fused) or rule.for_s is not None:
        return None
    terms: list[str] = []
    for position, check in enumerate(_checks(when.tree)):
        if not isinstance(check, Leaf):
            return None
        condition = check.condition
        try:
            tree = ast.parse(condition.body, mode="eval").body
        except SyntaxError:
            return None
        for term in _conjuncts(tree):
            search = _search_of(term, condition.namespace)
            if search is not None:
                slot, field = search
                prefix = " and ".join(dict.fromkeys(terms)) or "True"
                return KeywordSearch(slot, field, prefix, check if position == 0 else None)
            plain = _plain_term(term, condition.namespace)
            if plain is None:
                return None
            terms.append(plain)
    return None


def _checks(node: CondNode) -> Iterator[CondNode]:
    """The checks of a fused condition, in the order ``Fused`` tests them."""
    if isinstance(node, AllOf):
        for item in node.items:
            yield from _checks(item)
    else:
        yield node


def _conjuncts(node: ast.expr) -> Iterator[ast.expr]:
    """The terms of an ``and`` chain (nested ones flattened), left to right."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        for value in node.values:
            yield from _conjuncts(value)
    else:
        yield node


def _plain_term(node: ast.expr, namespace: Mapping[str, object]) -> str | None:
    """A plain term as Python source with its constants written out: ``C[..]``,
    ``not C[..]``, ``C[..] == / != <constant>``; None for any other term."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        path = _field_of(node.operand)
        return None if path is None else f"(not {_source(path)})"
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq | ast.NotEq):
            return None
        path = _field_of(node.left)
        other = node.comparators[0]
        # The compiler hoists constants into the condition's namespace.
        if isinstance(other, ast.Name):
            value = namespace.get(other.id, _NOT_PLAIN)
        else:
            value = other.value if isinstance(other, ast.Constant) else _NOT_PLAIN
        if path is None or not _plain_constant(value):
            return None
        operator = "==" if isinstance(node.ops[0], ast.Eq) else "!="
        return f"({_source(path)} {operator} {value!r})"
    path = _field_of(node)
    return None if path is None else _source(path)


_NOT_PLAIN: Final = object()


def _plain_constant(value: object) -> bool:
    """A constant ``==`` cannot raise with, and whose ``repr`` is the Python literal."""
    if value is None or isinstance(value, bool | int | str):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _source(path: FieldPath) -> str:
    return "C" + "".join(f"[{part!r}]" for part in path)


def _field_of(node: ast.expr) -> FieldPath | None:
    """``C['a']['b']`` -> ('a', 'b'); None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Subscript):
        key = node.slice
        if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
            return None
        parts.append(key.value)
        node = node.value
    if not (isinstance(node, ast.Name) and node.id == "C") or not parts:
        return None
    return tuple(reversed(parts))


def _search_of(node: ast.expr, namespace: Mapping[str, object]) -> tuple[int, FieldPath] | None:
    """``K(C[..])`` where ``K`` is a search test with its pattern in the shared set."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and len(node.args) == 1
        and not node.keywords
    ):
        return None
    slot = getattr(namespace.get(node.func.id), "search_slot", None)
    field = _field_of(node.args[0])
    if not isinstance(slot, int) or field is None:
        return None
    return slot, field
