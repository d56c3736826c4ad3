"""The rules of an event whose condition cannot hold, found with one search of its text.

Keyword rules (``not msg.from_me and msg.text is search('...')``) are most of a large
bundle, and most messages match none of them. The shared RE2 set of
:mod:`worker.rules.expressions` answers every pattern's search of a text in one pass, but
each rule still paid for its own visit: a call of its compiled condition, the search test
and the set lookup, about a microsecond a rule. :class:`SearchIndex` asks the set once,
before the rules are visited, and names the rules whose first check fails; the engine gives
each of them the trace entry its condition would have returned, without running it.

A rule is indexed when its compiled condition (:class:`~worker.rules.model.Fused`) starts
with a check that is one condition whose expression is an ``and`` of terms, one of them a
search of a field with its pattern in the set (``K(C['msg']['text'])``), and every term
before that one a field read, ``C[..][..]`` or ``not C[..][..]``. Such terms cannot raise
once their fields are in the view. So when the searched field holds text in which the
pattern does not occur, the check is false whatever the terms before it give, and
``Fused.test`` returns that check: the same result, found without the call.

Anything the index cannot vouch for leaves every rule to its own test: a field missing
from the view, a searched value that is not text, a set that cannot answer (a text over
its size limit, an automaton out of memory).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from worker.rules.expressions import search_hits
from worker.rules.model import AllOf, CondNode, Fused, Leaf, Rule

#: A field of the view as the compiled code reads it: ``C['msg']['text']`` is ('msg', 'text').
FieldPath = tuple[str, ...]

#: No rule is known to fail.
NONE_FAILING: Final[frozenset[int]] = frozenset()


@dataclass(frozen=True)
class _Searched:
    """One indexed rule: its position, the pattern's index in the set, the field searched,
    the fields read before the search, and the check its condition returns when it fails."""

    position: int
    slot: int
    field: FieldPath
    reads: tuple[FieldPath, ...]
    check: CondNode


class SearchIndex:
    """The indexed rules of one event's rule list (see the module documentation)."""

    def __init__(self, entries: Sequence[_Searched]) -> None:
        by_field: dict[FieldPath, list[_Searched]] = {}
        for entry in entries:
            by_field.setdefault(entry.field, []).append(entry)
        #: Per searched field: every indexed position, and the positions per pattern index.
        self._fields: tuple[tuple[FieldPath, frozenset[int], dict[int, frozenset[int]]], ...]
        self._fields = tuple(
            (field, frozenset(e.position for e in group), _positions_by_slot(group))
            for field, group in by_field.items()
        )
        self._reads: tuple[FieldPath, ...] = tuple(
            dict.fromkeys(path for e in entries for path in e.reads)
        )
        #: Position -> the check its condition returns when the index says it fails.
        self.checks: dict[int, CondNode] = {e.position: e.check for e in entries}

    def __len__(self) -> int:
        return len(self.checks)

    def failing(self, view: Mapping[str, Any]) -> frozenset[int]:
        """Positions of the rules whose condition fails on ``view``, as far as the set tells."""
        for path in self._reads:
            if _read(view, path) is _ABSENT:
                return NONE_FAILING
        failing = NONE_FAILING
        for field, positions, by_slot in self._fields:
            text = _read(view, field)
            if text.__class__ is not str:
                continue
            hits = search_hits(text)
            if hits is None:
                continue
            fails = positions
            for slot in hits:
                matched = by_slot.get(slot)
                if matched is not None:
                    fails = fails - matched
            failing = fails if not failing else failing | fails
        return failing


def search_index(rules: Sequence[Rule]) -> SearchIndex | None:
    """The index of ``rules`` (one event's list, in evaluation order); None if no rule in it
    can be indexed."""
    entries = []
    for position, rule in enumerate(rules):
        search = rule.keyword_search
        if search is not None:
            slot, field, reads, check = search
            entries.append(_Searched(position, slot, field, reads, check))
    return SearchIndex(entries) if entries else None


#: What indexes a rule: its pattern's index in the set, the field searched, the fields
#: read before the search, and the check its condition returns when the search fails.
KeywordSearch = tuple[int, FieldPath, tuple[FieldPath, ...], CondNode]


def _positions_by_slot(group: Sequence[_Searched]) -> dict[int, frozenset[int]]:
    slots: dict[int, set[int]] = {}
    for entry in group:
        slots.setdefault(entry.slot, set()).add(entry.position)
    return {slot: frozenset(positions) for slot, positions in slots.items()}


class _Absent:
    pass


_ABSENT: Final = _Absent()


def _read(view: Mapping[str, Any], path: FieldPath) -> Any:
    """``view[p0][p1]...`` as the compiled code reads it, or ``_ABSENT`` where it would raise."""
    value: Any = view
    try:
        for part in path:
            value = value[part]
    except (KeyError, TypeError, IndexError):
        return _ABSENT
    return value


def keyword_search(rule: Rule) -> KeywordSearch | None:
    """What indexes ``rule``, or None when it has the wrong shape (``Rule.keyword_search``
    keeps the answer: a bundle built for one routed event indexes its rules again)."""
    when = rule.when
    # The engine's fast path, the only one the index stands in for: a fused condition
    # tested alone (a ``for`` rule tracks its condition over time).
    if not isinstance(when, Fused) or rule.for_s is not None:
        return None
    check = next(_checks(when.tree), None)
    if not isinstance(check, Leaf):
        return None
    condition = check.condition
    try:
        tree = ast.parse(condition.body, mode="eval").body
    except SyntaxError:
        return None
    reads: list[FieldPath] = []
    for term in _conjuncts(tree):
        search = _search_of(term, condition.namespace)
        if search is not None:
            slot, field = search
            return slot, field, tuple(reads), check
        read = (
            term.operand if isinstance(term, ast.UnaryOp) and isinstance(term.op, ast.Not) else term
        )
        path = _field_of(read)
        if path is None:
            return None
        reads.append(path)
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
