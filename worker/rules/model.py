"""The loaded, compiled form of a rule bundle (built by :mod:`worker.rules.loader`)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from worker.rules.expressions import Condition, condition_helpers
from worker.rules.intervals import TimeInterval

if TYPE_CHECKING:
    from worker.rules.prefilter import KeywordSearch, SearchIndex

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a rule file, located 1-based."""

    file: str
    line: int
    col: int
    rule_id: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}: "
        rule = f'rule "{self.rule_id}": ' if self.rule_id else ""
        level = "warning: " if self.severity == "warning" else ""
        return f"{where}{rule}{level}{self.message}"


class RuleLoadError(Exception):
    """The bundle has errors; ``diagnostics`` lists them (warnings included)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


# ---------------------------------------------------------------- conditions as trees


class CondNode:
    """A condition tree: ``test`` returns None when it holds, else the node that failed."""

    source: str

    def test(self, view: Mapping[str, Any]) -> CondNode | None:
        raise NotImplementedError

    def seen(self, view: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Leaf(CondNode):
    condition: Condition

    @functools.cached_property
    def source(self) -> str:  # type: ignore[override]
        return self.condition.source

    def test(self, view: Mapping[str, Any]) -> CondNode | None:
        return None if self.condition.fn(view) else self

    def seen(self, view: Mapping[str, Any]) -> dict[str, Any]:
        return self.condition.seen(view)


def _seen_in(items: tuple[CondNode, ...], view: Mapping[str, Any]) -> dict[str, Any]:
    """What the items of a group read from ``view``, for the explanation of a match."""
    out: dict[str, Any] = {}
    for item in items:
        out.update(item.seen(view))
    return out


@dataclass(frozen=True)
class AllOf(CondNode):
    items: tuple[CondNode, ...]

    @functools.cached_property
    def source(self) -> str:  # type: ignore[override]
        return "all of [" + ", ".join(i.source for i in self.items) + "]"

    def test(self, view: Mapping[str, Any]) -> CondNode | None:
        for item in self.items:
            failed = item.test(view)
            if failed is not None:
                return failed
        return None

    def seen(self, view: Mapping[str, Any]) -> dict[str, Any]:
        return _seen_in(self.items, view)


@dataclass(frozen=True)
class AnyOf(CondNode):
    items: tuple[CondNode, ...]

    @functools.cached_property
    def source(self) -> str:  # type: ignore[override]
        return "any of [" + ", ".join(i.source for i in self.items) + "]"

    def test(self, view: Mapping[str, Any]) -> CondNode | None:
        for item in self.items:
            if item.test(view) is None:
                return None
        return self

    def seen(self, view: Mapping[str, Any]) -> dict[str, Any]:
        return _seen_in(self.items, view)


@dataclass(frozen=True)
class NoneOf(CondNode):
    """``not:`` holds when none of its items holds."""

    items: tuple[CondNode, ...]

    @functools.cached_property
    def source(self) -> str:  # type: ignore[override]
        inner = ", ".join(i.source for i in self.items)
        return f"not ({inner})" if len(self.items) == 1 else f"none of [{inner}]"

    def test(self, view: Mapping[str, Any]) -> CondNode | None:
        for item in self.items:
            if item.test(view) is None:
                return self
        return None

    def seen(self, view: Mapping[str, Any]) -> dict[str, Any]:
        return _seen_in(self.items, view)


class Fused(CondNode):
    """A whole condition tree compiled into one Python function.

    ``test`` returns the same failing node the tree would, but runs the leaves' compiled
    expressions inline instead of one call per node: most rules do not match most events,
    so this is the engine's hottest path.
    """

    def __init__(self, tree: CondNode) -> None:
        self.tree = tree
        namespace: dict[str, object] = dict(condition_helpers())
        lines: list[str] = []
        _fuse_checks(tree, lines, namespace)
        source = (
            "def _test(C):\n" + "".join(f"    {line}\n" for line in lines) + "    return None\n"
        )
        exec(source, namespace)  # source built from compiled, whitelisted leaves only
        # ``test`` is the compiled function itself, set on the instance: no method call in
        # between on the hottest path.
        self.test = namespace["_test"]  # type: ignore[method-assign,assignment]

    @functools.cached_property
    def source(self) -> str:  # type: ignore[override]
        return self.tree.source

    def seen(self, view: Mapping[str, Any]) -> dict[str, Any]:
        return self.tree.seen(view)


def _fuse_holds(node: CondNode, namespace: dict[str, object]) -> str:
    if isinstance(node, Leaf):
        namespace.update(node.condition.namespace)
        return f"({node.condition.body})"
    if isinstance(node, AllOf):
        return "(" + " and ".join(_fuse_holds(i, namespace) for i in node.items) + ")"
    if isinstance(node, AnyOf):
        return "(" + " or ".join(_fuse_holds(i, namespace) for i in node.items) + ")"
    if isinstance(node, NoneOf):
        return "(not (" + " or ".join(_fuse_holds(i, namespace) for i in node.items) + "))"
    raise TypeError(f"cannot fuse {type(node).__name__}")


def _fuse_checks(node: CondNode, lines: list[str], namespace: dict[str, object]) -> None:
    if isinstance(node, AllOf):
        for item in node.items:
            _fuse_checks(item, lines, namespace)
        return
    name = f"_F{len(lines)}"
    namespace[name] = node
    lines.append(f"if not {_fuse_holds(node, namespace)}: return {name}")


# --------------------------------------------------------------------------- actions

#: A parameter tree: constants, compiled templates, and dicts/lists of them.
ParamTree = Any


@dataclass(frozen=True)
class Channel:
    """A named alert destination; ``url`` may hold a ``${env:NAME}`` reference."""

    name: str
    type: str
    url: str | None = None
    instance: str | None = None
    to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def as_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.url is not None:
            out["url"] = self.url
        if self.instance is not None:
            out["instance"] = self.instance
        if self.to is not None:
            out["to"] = self.to
        if self.headers:
            out["headers"] = dict(self.headers)
        return out


@dataclass(frozen=True)
class ActionSpec:
    """One action of a rule: its kind and its compiled parameters."""

    kind: str
    params: ParamTree
    channel: Channel | None = None


@dataclass(frozen=True)
class Throttle:
    period_s: float
    key: tuple[Condition, ...] | None
    backoff_factor: float | None = None
    backoff_max_s: float | None = None


@dataclass(frozen=True)
class Window:
    count: int
    within_s: float
    key: tuple[Condition, ...] | None


Mode = Literal["active", "shadow", "disabled"]


@dataclass(frozen=True)
class Rule:
    """One compiled rule."""

    id: str
    description: str
    on: tuple[str, ...]
    mode: Mode
    when: CondNode | None
    allow_from_me: bool
    key: tuple[Condition, ...]
    actions: tuple[ActionSpec, ...]
    throttle: Throttle | None = None
    window: Window | None = None
    for_s: float | None = None
    resolve_when: CondNode | None = None
    on_resolve: tuple[ActionSpec, ...] = ()
    active_during: tuple[TimeInterval, ...] = ()
    mute_during: tuple[TimeInterval, ...] = ()
    for_each: Condition | None = None
    inhibited_by: tuple[str, ...] = ()
    file: str = ""
    line: int = 0
    #: How :mod:`worker.rules.prefilter` indexes this rule (None: it does not). Set while
    #: the rule is built, like every attribute: one added later (a cached property) would
    #: turn the instance's attributes into a plain dict, and every ``rule.x`` the engine
    #: reads per event got slower with it (1.5-2 µs an event with 5 rules).
    keyword_search: KeywordSearch | None = field(
        init=False, default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        from worker.rules.prefilter import keyword_search

        object.__setattr__(self, "keyword_search", keyword_search(self))


@dataclass(frozen=True)
class RuleBundle:
    """Every rule of a directory, compiled; immutable so a reload is one swap."""

    rules: tuple[Rule, ...]
    version: str
    vars: Mapping[str, Any]
    channels: Mapping[str, Channel]
    intervals: Mapping[str, TimeInterval]
    warnings: tuple[Diagnostic, ...] = ()
    by_event: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    by_id: Mapping[str, Rule] = field(default_factory=dict)
    #: Per event, its rules and the index of its keyword rules if it has one
    #: (:mod:`worker.rules.prefilter`): what evaluating an event looks up. Set while the
    #: bundle is built (see ``Rule.keyword_search``).
    plans: Mapping[str, tuple[tuple[Rule, ...], SearchIndex | None]] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        from worker.rules.prefilter import search_index

        plans = {event: (rules, search_index(rules)) for event, rules in self.by_event.items()}
        object.__setattr__(self, "plans", plans)

    @property
    def events(self) -> frozenset[str]:
        """Event names some non-disabled rule listens to."""
        return frozenset(e for e, rules in self.by_event.items() if rules)

    def state_key_space(self, event: str) -> str:
        """What rules on ``event`` key their state by by default: chat, group or instance.

        It is the same split as the Kafka key (contract §1), so state lives on the
        partition of its events.
        """
        return key_space(event)


def key_space(event: str) -> str:
    if event.startswith(("messages.", "chats.")) or event in ("send.message", "presence.update"):
        return "chat"
    if event.startswith("group"):
        return "group"
    return "instance"
