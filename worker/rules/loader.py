"""Read a directory of rule files into a :class:`RuleBundle`, or say exactly what is wrong.

YAML is composed with PyYAML's composer so every value keeps its position; every key is
checked against the format (unknown keys are errors, with "did you mean"), every
condition, regex and template is compiled, every field a condition or template reads is
checked against the documented fields of the rule's events, and every template is
rendered against a sample event of each of them. Problems come back as
:class:`Diagnostic` lines ``file:line:col: rule "id": message``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from jinja2 import nodes

from worker.events import STREAMED_EVENTS
from worker.rules.durations import DurationError, parse_duration
from worker.rules.expressions import (
    Condition,
    EvaluationError,
    ExpressionError,
    Template,
    compile_condition,
    compile_template,
    is_template,
    parse_expression,
    references,
    suggest,
    template_tree,
)
from worker.rules.intervals import (
    IntervalError,
    Period,
    TimeInterval,
    parse_time_range,
    parse_weekdays,
)
from worker.rules.model import (
    ActionSpec,
    AllOf,
    AnyOf,
    Channel,
    CondNode,
    Diagnostic,
    Fused,
    Leaf,
    NoneOf,
    Rule,
    RuleBundle,
    RuleLoadError,
    Throttle,
    Window,
    key_space,
)
from worker.rules.normalise import (
    COMMON_FIELDS,
    NAMESPACES,
    PARTICIPANT_FIELDS,
    normalise,
    sample_envelope,
)

FILE_KEYS: Final = ("version", "vars", "channels", "time_intervals", "rules")
RULE_KEYS: Final = (
    "id",
    "description",
    "on",
    "mode",
    "when",
    "from_me",
    "key",
    "throttle",
    "window",
    "for",
    "resolve_when",
    "on_resolve",
    "active_during",
    "mute_during",
    "for_each",
    "inhibited_by",
    "actions",
)
MODES: Final = ("active", "shadow", "disabled")
CHANNEL_TYPES: Final = ("slack", "webhook", "whatsapp")
MESSAGE_EVENTS: Final = ("messages.upsert", "send.message")
GROUP_ACTIONS: Final = ("add", "remove", "promote", "demote")
LOG_LEVELS: Final = ("info", "warning", "error")

#: Per action kind: (required keys, optional keys).
ACTION_KEYS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "whatsapp.send_text": (("to", "text"), ("instance", "quote", "delay_ms")),
    "whatsapp.group_participants": (("group", "action", "participants"), ("instance",)),
    "notify": (("channel", "text"), ("fields",)),
    "http": (("url",), ("method", "headers", "json", "timeout_s")),
    "kafka.produce": (("topic", "value"), ("key",)),
    "log": (("message",), ("level",)),
}

_RULE_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

#: Names templates may use besides the event's, and their fields.
_TEMPLATE_EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "rule": ("id", "description"),
    "now": (),
    "window": ("count", "within", "within_s"),
    "alert": ("since", "fired_at", "duration", "phase"),
}

_Path = tuple[Any, ...]


@dataclass
class _Marks:
    """Positions (0-based line, col, scalar style) of each value and each mapping key."""

    values: dict[_Path, tuple[int, int, str | None]] = field(default_factory=dict)
    keys: dict[_Path, tuple[int, int]] = field(default_factory=dict)


@dataclass
class _Source:
    path: Path
    name: str
    text: str
    data: Any
    marks: _Marks


class _Diagnostics:
    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(
        self,
        src: _Source | str,
        line: int,
        col: int,
        rule_id: str | None,
        message: str,
        *,
        severity: str = "error",
    ) -> None:
        name = src if isinstance(src, str) else src.name
        self.items.append(Diagnostic(name, line, col, rule_id, message, severity))  # type: ignore[arg-type]

    def at(
        self,
        src: _Source,
        path: _Path,
        rule_id: str | None,
        message: str,
        *,
        key: bool = False,
        line_offset: int = 0,
        severity: str = "error",
    ) -> None:
        line, col = _position(src, path, key=key, line_offset=line_offset)
        self.add(src, line, col, rule_id, message, severity=severity)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)


def _position(
    src: _Source, path: _Path, *, key: bool = False, line_offset: int = 0
) -> tuple[int, int]:
    probe = path
    while True:
        if key and probe in src.marks.keys:
            line, col = src.marks.keys[probe]
            return line + 1, col + 1
        if probe in src.marks.values:
            line, col, style = src.marks.values[probe]
            if line_offset:
                # A block scalar's text starts on the line after its indicator.
                base = line + (1 if style in ("|", ">") else 0)
                return base + line_offset + 1, 1 if style in ("|", ">") else col + 1
            return line + 1, col + 1
        if not probe:
            return 1, 1
        probe = probe[:-1]
        key = False


# ----------------------------------------------------------------------- YAML reading


def _compose(src_name: str, text: str, diags: _Diagnostics) -> tuple[Any, _Marks] | None:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, _Marks()
        marks = _Marks()
        data = _convert(loader, node, (), marks, src_name, diags)
        return data, marks
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        diags.add(src_name, line, col, None, f"invalid YAML: {problem}")
        return None
    finally:
        loader.dispose()


def _convert(  # noqa: PLR0917 - the recursion carries its context
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: _Path,
    marks: _Marks,
    src_name: str,
    diags: _Diagnostics,
) -> Any:
    marks.values[path] = (
        node.start_mark.line,
        node.start_mark.column,
        getattr(node, "style", None),
    )
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            # Keys are read as written: YAML 1.1 would turn ``on:`` into True.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                diags.add(
                    src_name,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    None,
                    "mapping keys must be plain text",
                )
                continue
            if key in out:
                diags.add(
                    src_name,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    None,
                    f"duplicate key '{key}' (the earlier value would be silently lost)",
                )
            marks.keys[(*path, key)] = (key_node.start_mark.line, key_node.start_mark.column)
            out[key] = _convert(loader, value_node, (*path, key), marks, src_name, diags)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(loader, item, (*path, i), marks, src_name, diags)
            for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# --------------------------------------------------------------------------- loading


def rule_files(path: Path) -> list[Path]:
    """The rule files of a bundle: ``*.yaml``/``*.yml`` directly in ``path`` (or the file)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_bundle(path: Path) -> RuleBundle:
    """Load and compile every rule file in ``path``.

    Raises:
        RuleLoadError: when any file has an error; ``.diagnostics`` lists every problem.
    """
    bundle, diagnostics = check_bundle(path)
    if bundle is None:
        raise RuleLoadError(diagnostics)
    return bundle


def check_bundle(
    path: Path, display_root: Path | None = None
) -> tuple[RuleBundle | None, list[Diagnostic]]:
    """Load ``path`` and return the bundle (None on errors) with every diagnostic."""
    diags = _Diagnostics()
    if not path.exists():
        diags.add(str(path), 1, 1, None, "no such file or directory")
        return None, diags.items
    files = rule_files(path)
    if not files:
        diags.add(str(path), 1, 1, None, "no rule files (*.yaml, *.yml) found")
        return None, diags.items
    sources: list[_Source] = []
    for file in files:
        text = file.read_text(encoding="utf-8")
        name = _display_name(file, display_root)
        composed = _compose(name, text, diags)
        if composed is None:
            continue
        data, marks = composed
        sources.append(_Source(file, name, text, data, marks))
    builder = _BundleBuilder(diags)
    bundle = builder.build(sources)
    diags.items.sort(key=lambda d: (d.file, d.line, d.col))
    if diags.has_errors:
        return None, diags.items
    assert bundle is not None
    return bundle, diags.items


def _display_name(file: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(file.relative_to(root))
        except ValueError:
            pass
    return str(file)


@dataclass
class _RuleDraft:
    src: _Source
    path: _Path
    rule: Rule


class _BundleBuilder:
    def __init__(self, diags: _Diagnostics) -> None:
        self.diags = diags
        self.vars: dict[str, Any] = {}
        self.channels: dict[str, Channel] = {}
        self.intervals: dict[str, TimeInterval] = {}
        self.versions: list[str] = []

    # ---------------------------------------------------------------- bundle level

    def build(self, sources: list[_Source]) -> RuleBundle | None:
        valid: list[_Source] = []
        for src in sources:
            if not isinstance(src.data, dict):
                self.diags.at(
                    src,
                    (),
                    None,
                    f"a rule file must be a mapping with 'rules:', found {_type_name(src.data)}",
                )
                continue
            for key in src.data:
                if key not in FILE_KEYS:
                    self.diags.at(
                        src,
                        (key,),
                        None,
                        f"unknown key '{key}'{suggest(str(key), FILE_KEYS)}",
                        key=True,
                    )
            valid.append(src)
        for src in valid:
            self.read_version(src)
            self.read_vars(src)
        for src in valid:
            self.read_channels(src)
            self.read_intervals(src)
        drafts: list[_RuleDraft] = []
        seen_ids: dict[str, tuple[_Source, _Path]] = {}
        for src in valid:
            rules = src.data.get("rules", [])
            if not isinstance(rules, list):
                self.diags.at(
                    src,
                    ("rules",),
                    None,
                    f"'rules' must be a list of rules, found {_type_name(rules)}",
                )
                continue
            for index, raw in enumerate(rules):
                path: _Path = ("rules", index)
                compiler = _RuleCompiler(self, src, path, raw)
                rule = compiler.compile()
                rule_id = compiler.rule_id
                if rule_id is not None and rule_id in seen_ids:
                    other_src, other_path = seen_ids[rule_id]
                    line, _ = _position(other_src, (*other_path, "id"))
                    self.diags.at(
                        src,
                        (*path, "id"),
                        rule_id,
                        f"duplicate rule id (also defined at {other_src.name}:{line})",
                    )
                    continue
                if rule_id is not None:
                    seen_ids[rule_id] = (src, path)
                if rule is not None:
                    drafts.append(_RuleDraft(src, path, rule))
        ids = list(seen_ids)
        for draft in drafts:
            for index, other in enumerate(draft.rule.inhibited_by):
                where = (*draft.path, "inhibited_by", index)
                if other == draft.rule.id:
                    self.diags.at(draft.src, where, other, "a rule cannot inhibit itself")
                elif other not in ids:
                    self.diags.at(
                        draft.src,
                        where,
                        draft.rule.id,
                        f"unknown rule '{other}' in inhibited_by{suggest(other, ids)}",
                    )
        if self.diags.has_errors:
            return None
        rules = tuple(d.rule for d in drafts)
        digest = hashlib.sha256()
        for src in sources:
            digest.update(src.name.encode() + b"\0" + src.text.encode() + b"\0")
        version = digest.hexdigest()[:12]
        if self.versions:
            version = "+".join(dict.fromkeys(self.versions)) + "@" + version
        by_event: dict[str, tuple[Rule, ...]] = {
            event: tuple(r for r in rules if event in r.on and r.mode != "disabled")
            for event in STREAMED_EVENTS
        }
        return RuleBundle(
            rules=rules,
            version=version,
            vars=self.vars,
            channels=self.channels,
            intervals=self.intervals,
            warnings=tuple(d for d in self.diags.items if d.severity == "warning"),
            by_event={e: rs for e, rs in by_event.items() if rs},
            by_id={r.id: r for r in rules},
        )

    def read_version(self, src: _Source) -> None:
        if "version" not in src.data:
            return
        value = src.data["version"]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.diags.at(
                src,
                ("version",),
                None,
                f"'version' must be text or a number, found {_type_name(value)}",
            )
            return
        self.versions.append(str(value))

    def read_vars(self, src: _Source) -> None:
        values = src.data.get("vars", {})
        if not isinstance(values, dict):
            self.diags.at(
                src, ("vars",), None, f"'vars' must be a mapping, found {_type_name(values)}"
            )
            return
        for name, value in values.items():
            if name in self.vars:
                self.diags.at(src, ("vars", name), None, f"var '{name}' is defined twice", key=True)
            self.vars[name] = value

    def read_channels(self, src: _Source) -> None:
        channels = src.data.get("channels", {})
        if not isinstance(channels, dict):
            self.diags.at(
                src,
                ("channels",),
                None,
                f"'channels' must be a mapping, found {_type_name(channels)}",
            )
            return
        for name, spec in channels.items():
            path: _Path = ("channels", name)
            if name in self.channels:
                self.diags.at(src, path, None, f"channel '{name}' is defined twice", key=True)
                continue
            if not isinstance(spec, dict):
                self.diags.at(
                    src, path, None, f"channel '{name}' must be a mapping, found {_type_name(spec)}"
                )
                continue
            kind = spec.get("type")
            allowed = {
                "slack": ("type", "url"),
                "webhook": ("type", "url", "headers"),
                "whatsapp": ("type", "instance", "to"),
            }
            if kind not in CHANNEL_TYPES:
                self.diags.at(
                    src,
                    (*path, "type") if "type" in spec else path,
                    None,
                    f"channel '{name}': type must be one of {', '.join(CHANNEL_TYPES)}"
                    + (
                        f", found '{kind}'{suggest(str(kind), CHANNEL_TYPES)}"
                        if kind is not None
                        else ""
                    ),
                )
                continue
            ok = True
            for key in spec:
                if key not in allowed[kind]:
                    self.diags.at(
                        src,
                        (*path, key),
                        None,
                        f"channel '{name}': unknown key '{key}' for a {kind} "
                        f"channel{suggest(str(key), allowed[kind])}",
                        key=True,
                    )
                    ok = False
            for key in allowed[kind]:
                if key == "headers":
                    continue
                if key not in spec:
                    self.diags.at(src, path, None, f"channel '{name}': missing '{key}'")
                    ok = False
                elif not isinstance(spec[key], str):
                    self.diags.at(
                        src,
                        (*path, key),
                        None,
                        f"channel '{name}': '{key}' must be text, found {_type_name(spec[key])}",
                    )
                    ok = False
            headers = spec.get("headers", {})
            if not isinstance(headers, dict) or not all(
                isinstance(v, str) for v in headers.values()
            ):
                self.diags.at(
                    src,
                    (*path, "headers"),
                    None,
                    f"channel '{name}': 'headers' must map names to text",
                )
                ok = False
            if ok:
                self.channels[name] = Channel(
                    name=name,
                    type=kind,
                    url=spec.get("url"),
                    instance=spec.get("instance"),
                    to=spec.get("to"),
                    headers=dict(headers),
                )

    def read_intervals(self, src: _Source) -> None:
        intervals = src.data.get("time_intervals", {})
        if not isinstance(intervals, dict):
            self.diags.at(
                src,
                ("time_intervals",),
                None,
                f"'time_intervals' must be a mapping, found {_type_name(intervals)}",
            )
            return
        for name, spec in intervals.items():
            path: _Path = ("time_intervals", name)
            if name in self.intervals:
                self.diags.at(src, path, None, f"time interval '{name}' is defined twice", key=True)
                continue
            if not isinstance(spec, dict):
                self.diags.at(
                    src,
                    path,
                    None,
                    f"time interval '{name}' must be a mapping with location and periods",
                )
                continue
            ok = True
            for key in spec:
                if key not in ("location", "periods"):
                    self.diags.at(
                        src,
                        (*path, key),
                        None,
                        f"time interval '{name}': unknown key "
                        f"'{key}'{suggest(str(key), ('location', 'periods'))}",
                        key=True,
                    )
                    ok = False
            location = spec.get("location")
            if not isinstance(location, str):
                self.diags.at(
                    src,
                    path,
                    None,
                    f"time interval '{name}': missing 'location' (a time zone such as "
                    f"America/Sao_Paulo)",
                )
                ok = False
            else:
                try:
                    ZoneInfo(location)
                except (ZoneInfoNotFoundError, ValueError):
                    self.diags.at(
                        src,
                        (*path, "location"),
                        None,
                        f"time interval '{name}': unknown time zone '{location}'",
                    )
                    ok = False
            periods_raw = spec.get("periods")
            periods: list[Period] = []
            if not isinstance(periods_raw, list) or not periods_raw:
                self.diags.at(
                    src, path, None, f"time interval '{name}': 'periods' must be a non-empty list"
                )
                ok = False
            else:
                for index, raw in enumerate(periods_raw):
                    period = self.read_period(src, (*path, "periods", index), name, raw)
                    if period is None:
                        ok = False
                    else:
                        periods.append(period)
            if ok and isinstance(location, str):
                self.intervals[name] = TimeInterval(name, location, tuple(periods))

    def read_period(self, src: _Source, path: _Path, name: str, raw: object) -> Period | None:
        if not isinstance(raw, dict):
            self.diags.at(
                src,
                path,
                None,
                f"time interval '{name}': a period is a mapping with weekdays and times",
            )
            return None
        ok = True
        for key in raw:
            if key not in ("weekdays", "times"):
                self.diags.at(
                    src,
                    (*path, key),
                    None,
                    f"time interval '{name}': unknown key "
                    f"'{key}'{suggest(str(key), ('weekdays', 'times'))}",
                    key=True,
                )
                ok = False
        days: set[int] = set()
        weekdays = raw.get("weekdays", ["monday:sunday"])
        if not isinstance(weekdays, list):
            weekdays = [weekdays]
        for index, spec in enumerate(weekdays):
            try:
                days |= parse_weekdays(str(spec))
            except IntervalError as exc:
                self.diags.at(
                    src, (*path, "weekdays", index), None, f"time interval '{name}': {exc}"
                )
                ok = False
        times: list[tuple[int, int]] = []
        times_raw = raw.get("times", [])
        if not isinstance(times_raw, list):
            times_raw = [times_raw]
        for index, spec in enumerate(times_raw):
            try:
                times.append(parse_time_range(str(spec)))
            except IntervalError as exc:
                self.diags.at(src, (*path, "times", index), None, f"time interval '{name}': {exc}")
                ok = False
        return Period(frozenset(days), tuple(times)) if ok else None


# ------------------------------------------------------------------------ one rule


_SAMPLE_CACHE: dict[str, dict[str, Any]] = {}


def _sample_view(event: str) -> dict[str, Any]:
    if event not in _SAMPLE_CACHE:
        _SAMPLE_CACHE[event] = normalise(sample_envelope(event))
    return _SAMPLE_CACHE[event]


class _RuleCompiler:
    """Validates and compiles one rule mapping; every problem goes to the diagnostics."""

    def __init__(self, bundle: _BundleBuilder, src: _Source, path: _Path, raw: object) -> None:
        self.bundle = bundle
        self.diags = bundle.diags
        self.src = src
        self.path = path
        self.raw = raw
        self.rule_id: str | None = None
        self.events: tuple[str, ...] = ()
        self.ok = True
        self.item_kind: str | None = None  # "participant", "other" or None

    def error(self, sub: _Path, message: str, *, key: bool = False, line_offset: int = 0) -> None:
        self.ok = False
        self.diags.at(
            self.src, (*self.path, *sub), self.rule_id, message, key=key, line_offset=line_offset
        )

    def warn(self, sub: _Path, message: str) -> None:
        self.diags.at(self.src, (*self.path, *sub), self.rule_id, message, severity="warning")

    # ---------------------------------------------------------------- top level

    def compile(self) -> Rule | None:
        raw = self.raw
        if not isinstance(raw, dict):
            self.error((), f"a rule must be a mapping, found {_type_name(raw)}")
            return None
        rule_id = raw.get("id")
        if isinstance(rule_id, str) and rule_id:
            self.rule_id = rule_id
            if not _RULE_ID.match(rule_id):
                self.error(
                    ("id",),
                    f"rule id '{rule_id}' must be kebab-case: lower-case letters, digits and "
                    f"single dashes",
                )
        else:
            self.error(
                () if "id" not in raw else ("id",),
                "missing 'id' (a stable kebab-case name)"
                if "id" not in raw
                else f"'id' must be text, found {_type_name(rule_id)}",
            )
        for key in raw:
            if key not in RULE_KEYS:
                self.error((key,), f"unknown key '{key}'{suggest(str(key), RULE_KEYS)}", key=True)
        description = raw.get("description", "")
        if not isinstance(description, str):
            self.error(
                ("description",), f"'description' must be text, found {_type_name(description)}"
            )
            description = ""
        self.events = self.read_on(raw.get("on"))
        mode = raw.get("mode", "active")
        if mode not in MODES:
            self.error(
                ("mode",),
                f"mode must be one of active, shadow, disabled, found "
                f"'{mode}'{suggest(str(mode), MODES)}",
            )
            mode = "active"
        from_me = raw.get("from_me", "ignore")
        if from_me not in ("ignore", "allow"):
            self.error(
                ("from_me",),
                f"from_me must be 'ignore' (the default) or 'allow', found {from_me!r}",
            )
        allow_from_me = from_me == "allow"
        if not self.events:
            return None
        when = self.read_condition(("when",), raw["when"]) if "when" in raw else None
        if when is not None:
            when = Fused(when)
            self.try_on_samples(("when",), when)
        key = self.read_key(("key",), raw.get("key")) if "key" in raw else self.default_key()
        for_each = None
        if "for_each" in raw:
            for_each = self.read_for_each(raw["for_each"])
        throttle = self.read_throttle(raw["throttle"]) if "throttle" in raw else None
        window = self.read_window(raw["window"]) if "window" in raw else None
        for_s = None
        if "for" in raw:
            for_s = self.read_duration(("for",), raw["for"])
            if "for_each" in raw:
                self.error(
                    ("for",),
                    "'for' cannot be combined with 'for_each' (an alert is about one key, "
                    "not one list element); split the rule",
                )
        resolve_when = None
        if "resolve_when" in raw:
            if "for" not in raw:
                self.error(
                    ("resolve_when",),
                    "'resolve_when' needs 'for' (an alert that waits, then resolves)",
                )
            resolve_when = self.read_condition(("resolve_when",), raw["resolve_when"])
            if resolve_when is not None:
                resolve_when = Fused(resolve_when)
        active = self.read_interval_names("active_during", raw.get("active_during"))
        mute = self.read_interval_names("mute_during", raw.get("mute_during"))
        inhibited = raw.get("inhibited_by", [])
        if isinstance(inhibited, str):
            inhibited = [inhibited]
        if not isinstance(inhibited, list) or not all(isinstance(i, str) for i in inhibited):
            self.error(("inhibited_by",), "'inhibited_by' must be a rule id or a list of rule ids")
            inhibited = []
        extras = {"window"} if window else set()
        if for_s is not None:
            extras.add("alert")
        if "actions" not in raw:
            self.error((), "missing 'actions' (a list of actions)")
            actions: tuple[ActionSpec, ...] = ()
        else:
            actions = self.read_actions(("actions",), raw["actions"], extras)
        on_resolve: tuple[ActionSpec, ...] = ()
        if "on_resolve" in raw:
            if "for" not in raw:
                self.error(
                    ("on_resolve",), "'on_resolve' needs 'for' (only alerts that wait can resolve)"
                )
            on_resolve = self.read_actions(("on_resolve",), raw["on_resolve"], extras | {"alert"})
        if not self.ok or self.rule_id is None:
            return None
        rule = Rule(
            id=self.rule_id,
            description=description,
            on=self.events,
            mode=mode,
            when=when,
            allow_from_me=allow_from_me,
            key=key,
            actions=actions,
            throttle=throttle,
            window=window,
            for_s=for_s,
            resolve_when=resolve_when,
            on_resolve=on_resolve,
            active_during=active,
            mute_during=mute,
            for_each=for_each,
            inhibited_by=tuple(inhibited),
            file=self.src.name,
            line=_position(self.src, self.path)[0],
        )
        self.risk_warnings(rule, raw)
        return rule

    def try_on_samples(self, sub: _Path, condition: CondNode) -> None:
        """Warn when a condition cannot even run on a sample of its events.

        A missing ``data`` field is normal (samples do not have every optional field);
        comparing text with a number is not, and would fail on every real event too.
        """
        for event in self.events:
            try:
                condition.test(_sample_view(event))
            except EvaluationError:
                continue
            except (TypeError, ValueError, ArithmeticError) as exc:
                self.warn(
                    sub,
                    f"condition fails on a sample {event} event: {type(exc).__name__}: {exc}",
                )
                return

    def risk_warnings(self, rule: Rule, raw: Mapping[str, Any]) -> None:
        sends = any(a.kind == "whatsapp.send_text" for a in rule.actions)
        on_messages = any(e in MESSAGE_EVENTS for e in rule.on)
        if sends and on_messages and "throttle" not in raw and rule.window is None:
            self.warn(
                ("actions",),
                "auto-reply without a throttle: it answers every matching message; "
                "add 'throttle: {once_within: 12h, key: [instance, msg.chat]}' "
                "(or 'throttle: none' to accept)",
            )
        if rule.allow_from_me and sends:
            self.warn(
                ("from_me",),
                "answers messages sent by this number (from_me: allow) and can loop on its own "
                "replies",
            )
        if "send.message" in rule.on and not rule.allow_from_me:
            self.warn(
                ("on",),
                "never matches send.message: every such event is from_me; add 'from_me: allow'",
            )
        if rule.throttle and rule.window and rule.throttle.period_s < rule.window.within_s:
            self.warn(
                ("throttle",),
                "throttle period is shorter than the window, so one burst can alert twice",
            )

    # ------------------------------------------------------------------ pieces

    def read_on(self, value: object) -> tuple[str, ...]:
        if value is None:
            self.error((), "missing 'on' (the event or events the rule listens to)")
            return ()
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.error(
                ("on",), f"'on' must be an event name or a list of them, found {_type_name(value)}"
            )
            return ()
        events: list[str] = []
        for index, name in enumerate(names):
            sub: _Path = ("on",) if isinstance(value, str) else ("on", index)
            if name not in NAMESPACES:
                self.error(sub, f"unknown event '{name}'{suggest(name, NAMESPACES)}")
            elif name in events:
                self.error(sub, f"event '{name}' is listed twice")
            else:
                events.append(name)
        return tuple(events) if len(events) == len(names) else ()

    def default_key(self) -> tuple[Condition, ...]:
        spaces = {key_space(e) for e in self.events}
        parts = ["instance"]
        if spaces == {"chat"} and all(e in NAMESPACES for e in self.events):
            chat_field = {
                "msg": "msg.chat",
                "chat": "chat.id",
                "presence": "presence.chat",
            }
            fields = {chat_field.get(NAMESPACES[e][0]) for e in self.events}
            if len(fields) == 1 and None not in fields:
                parts.append(next(iter(fields)))  # type: ignore[arg-type]
        elif spaces == {"group"}:
            parts.append("group.id")
        return tuple(compile_condition(p, self.bundle.vars) for p in parts)

    def present_fields(self) -> frozenset[tuple[str, str]]:
        """(namespace, field) pairs every view of the rule's events has."""
        sets = [{(NAMESPACES[e][0], f) for f in NAMESPACES[e][1]} for e in self.events]
        return frozenset(set.intersection(*sets)) if sets else frozenset()

    def names_for(self, extras: Iterable[str]) -> set[str]:
        names = set(COMMON_FIELDS) | {"vars"} | set(extras)
        names |= {NAMESPACES[e][0] for e in self.events}
        return names

    def check_refs(
        self,
        sub: _Path,
        refs: list[tuple[tuple[str, ...], int]],
        extras: Iterable[str],
        offset_base: int = 0,
    ) -> bool:
        names = self.names_for(extras)
        ok = True
        for path, line in refs:
            message = self.ref_problem(path, names)
            if message is not None:
                self.error(sub, message, line_offset=line - 1 if line > 1 else offset_base)
                ok = False
        return ok

    def ref_problem(self, path: tuple[str, ...], names: set[str]) -> str | None:
        hidden = [part for part in path if part.startswith("_")]
        if hidden:
            return f"'{hidden[0]}': names starting with '_' are not allowed"
        top = path[0]
        if top not in names:
            namespaces = {ns for ns, _ in NAMESPACES.values()}
            if top in namespaces:
                owners = [e for e in self.events if NAMESPACES[e][0] != top]
                if owners:
                    own = NAMESPACES[owners[0]][0]
                    return f"{owners[0]} has no '{top}' (its fields are under '{own}')"
            return f"unknown name '{top}'{suggest(top, names)}"
        if len(path) < 2:
            return None
        if top == "vars":
            if path[1] not in self.bundle.vars:
                return f"unknown var '{path[1]}'{suggest(path[1], self.bundle.vars)}"
            return None
        if top == "item" and self.item_kind == "participant":
            if path[1] not in PARTICIPANT_FIELDS:
                return (
                    f"a participant has no field '{path[1]}'{suggest(path[1], PARTICIPANT_FIELDS)}"
                )
            return None
        if _TEMPLATE_EXTRAS.get(top):
            if path[1] not in _TEMPLATE_EXTRAS[top]:
                return f"'{top}' has no field '{path[1]}'{suggest(path[1], _TEMPLATE_EXTRAS[top])}"
            return None
        for event in self.events:
            namespace, fields = NAMESPACES[event]
            if top != namespace:
                if (
                    top not in COMMON_FIELDS
                    and top not in ("vars", "item")
                    and top not in _TEMPLATE_EXTRAS
                ):
                    return f"{event} has no '{top}' (its fields are under '{namespace}')"
                continue
            if path[1] not in fields:
                hint = suggest(f"{top}.{path[1]}", [f"{top}.{f}" for f in fields])
                return f"{event} has no field '{top}.{path[1]}'{hint}"
            if path[1] == "participants" and len(path) > 3 and path[3] not in PARTICIPANT_FIELDS:
                return (
                    f"a participant has no field '{path[3]}'{suggest(path[3], PARTICIPANT_FIELDS)}"
                )
        return None

    def expression(
        self, sub: _Path, source: object, extras: Iterable[str] = ()
    ) -> Condition | None:
        if isinstance(source, bool):
            source = "true" if source else "false"
        if not isinstance(source, str) or not source.strip():
            self.error(sub, f"expected an expression, found {_type_name(source)}")
            return None
        try:
            tree = parse_expression(source)
        except ExpressionError as exc:
            self.error(sub, exc.message, line_offset=exc.line - 1)
            return None
        if not self.check_refs(sub, references(tree), extras):
            return None
        try:
            return compile_condition(source, self.bundle.vars, present=self.present_fields())
        except ExpressionError as exc:
            self.error(sub, exc.message, line_offset=exc.line - 1)
            return None

    def read_condition(self, sub: _Path, value: object) -> CondNode | None:
        if isinstance(value, str | bool):
            condition = self.expression(sub, value)
            return Leaf(condition) if condition is not None else None
        if isinstance(value, list):
            items = [self.read_condition((*sub, i), v) for i, v in enumerate(value)]
            return AllOf(tuple(i for i in items if i is not None)) if all(items) else None
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in ("all", "any", "not"):
                keys = list(value)
                hint = suggest(str(keys[0]), ("all", "any", "not")) if len(keys) == 1 else ""
                self.error(
                    sub,
                    f"a condition mapping has exactly one key: all, any or not; found "
                    f"{', '.join(map(str, keys))}{hint}",
                )
                return None
            op, inner = next(iter(value.items()))
            inner_list = inner if isinstance(inner, list) else [inner]
            base: _Path = (*sub, op)
            if isinstance(inner, list) and not inner:
                self.error(base, f"'{op}' needs at least one condition")
                return None
            items = [
                self.read_condition((*base, i) if isinstance(inner, list) else base, v)
                for i, v in enumerate(inner_list)
            ]
            if not all(items):
                return None
            parts = tuple(i for i in items if i is not None)
            if op == "all":
                return AllOf(parts)
            if op == "any":
                return AnyOf(parts)
            return NoneOf(parts)
        self.error(sub, f"expected an expression or all/any/not, found {_type_name(value)}")
        return None

    def read_key(
        self, sub: _Path, value: object, extras: Iterable[str] = ()
    ) -> tuple[Condition, ...]:
        parts = [value] if isinstance(value, str) else value
        if not isinstance(parts, list) or not parts:
            self.error(
                sub,
                f"a key is a list of expressions such as [instance, msg.chat], found "
                f"{_type_name(value)}",
            )
            return ()
        out = []
        for index, part in enumerate(parts):
            condition = self.expression(
                (*sub, index) if isinstance(value, list) else sub, part, extras
            )
            if condition is not None:
                out.append(condition)
        return tuple(out)

    def read_duration(self, sub: _Path, value: object) -> float | None:
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            self.error(sub, str(exc))
            return None
        if seconds <= 0:
            self.error(sub, "a duration must be longer than zero")
            return None
        return seconds

    def read_for_each(self, value: object) -> Condition | None:
        condition = self.expression(("for_each",), value)
        if condition is None:
            return None
        self.item_kind = (
            "participant" if condition.source.strip().endswith("participants") else "other"
        )
        return condition

    def read_throttle(self, value: object) -> Throttle | None:
        if value == "none" or value is None:
            return None
        if isinstance(value, str):
            seconds = self.read_duration(("throttle",), value)
            return Throttle(seconds, None) if seconds else None
        if not isinstance(value, dict):
            self.error(
                ("throttle",),
                f"throttle must be a duration or a mapping with once_within, found "
                f"{_type_name(value)}",
            )
            return None
        allowed = ("once_within", "key", "backoff")
        for key in value:
            if key not in allowed:
                self.error(
                    ("throttle", key),
                    f"unknown key '{key}' in throttle{suggest(str(key), allowed)}",
                    key=True,
                )
        if "once_within" not in value:
            self.error(("throttle",), "throttle needs 'once_within' (e.g. 12h)")
            return None
        period = self.read_duration(("throttle", "once_within"), value["once_within"])
        extras = ("item",) if "for_each" in self.raw else ()  # type: ignore[operator]
        key = self.read_key(("throttle", "key"), value["key"], extras) if "key" in value else None
        factor = maximum = None
        if "backoff" in value:
            backoff = value["backoff"]
            if not isinstance(backoff, dict):
                self.error(
                    ("throttle", "backoff"),
                    "backoff must be a mapping such as {factor: 2, max: 4h}",
                )
            else:
                for key_name in backoff:
                    if key_name not in ("factor", "max"):
                        self.error(
                            ("throttle", "backoff", key_name),
                            f"unknown key '{key_name}' in "
                            f"backoff{suggest(str(key_name), ('factor', 'max'))}",
                            key=True,
                        )
                raw_factor = backoff.get("factor", 2)
                if (
                    isinstance(raw_factor, bool)
                    or not isinstance(raw_factor, int | float)
                    or raw_factor <= 1
                ):
                    self.error(
                        ("throttle", "backoff", "factor"),
                        f"backoff factor must be a number above 1, found {raw_factor!r}",
                    )
                else:
                    factor = float(raw_factor)
                if "max" not in backoff:
                    self.error(
                        ("throttle", "backoff"), "backoff needs 'max' (the longest period, e.g. 4h)"
                    )
                else:
                    maximum = self.read_duration(("throttle", "backoff", "max"), backoff["max"])
        if period is None:
            return None
        return Throttle(period, key, factor, maximum)

    def read_window(self, value: object) -> Window | None:
        if not isinstance(value, dict):
            self.error(
                ("window",),
                f"window must be a mapping such as {{count: 3, within: 10m}}, found "
                f"{_type_name(value)}",
            )
            return None
        allowed = ("count", "within", "key")
        for key in value:
            if key not in allowed:
                self.error(
                    ("window", key),
                    f"unknown key '{key}' in window{suggest(str(key), allowed)}",
                    key=True,
                )
        count = value.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            self.error(
                ("window", "count") if "count" in value else ("window",),
                f"window count must be a whole number of at least 1, found {count!r}",
            )
            count = None
        if "within" not in value:
            self.error(("window",), "window needs 'within' (e.g. 10m)")
            return None
        within = self.read_duration(("window", "within"), value["within"])
        extras = ("item",) if "for_each" in self.raw else ()  # type: ignore[operator]
        key = self.read_key(("window", "key"), value["key"], extras) if "key" in value else None
        if count is None or within is None:
            return None
        return Window(count, within, key)

    def read_interval_names(self, name: str, value: object) -> tuple[TimeInterval, ...]:
        if value is None:
            return ()
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.error((name,), f"'{name}' must be a time interval name or a list of them")
            return ()
        out = []
        for index, interval in enumerate(names):
            if interval not in self.bundle.intervals:
                self.error(
                    (name,) if isinstance(value, str) else (name, index),
                    f"unknown time interval '{interval}'{suggest(interval, self.bundle.intervals)}",
                )
            else:
                out.append(self.bundle.intervals[interval])
        return tuple(out)

    # ------------------------------------------------------------------ actions

    def read_actions(self, sub: _Path, value: object, extras: set[str]) -> tuple[ActionSpec, ...]:
        if not isinstance(value, list) or not value:
            self.error(
                sub, f"'{sub[-1]}' must be a non-empty list of actions, found {_type_name(value)}"
            )
            return ()
        extras = extras | {"rule", "now"}
        if self.item_kind is not None:
            extras = extras | {"item"}
        out = []
        for index, raw in enumerate(value):
            action = self.read_action((*sub, index), raw, extras)
            if action is not None:
                out.append(action)
        return tuple(out)

    def read_action(self, sub: _Path, raw: object, extras: set[str]) -> ActionSpec | None:
        if not isinstance(raw, dict) or len(raw) != 1:
            self.error(
                sub,
                "an action is a mapping with one key, the action kind, e.g. '- notify: "
                "{channel: ops, text: ...}'",
            )
            return None
        kind, params = next(iter(raw.items()))
        if kind not in ACTION_KEYS:
            self.error(sub, f"unknown action '{kind}'{suggest(str(kind), ACTION_KEYS)}", key=True)
            return None
        psub: _Path = (*sub, kind)
        if not isinstance(params, dict):
            self.error(psub, f"{kind} needs a mapping of parameters, found {_type_name(params)}")
            return None
        required, optional = ACTION_KEYS[kind]
        ok = True
        for key in params:
            if key not in required and key not in optional:
                self.error(
                    (*psub, key),
                    f"unknown parameter '{key}' for "
                    f"{kind}{suggest(str(key), (*required, *optional))}",
                    key=True,
                )
                ok = False
        for key in required:
            if key not in params:
                self.error(psub, f"{kind} needs '{key}'")
                ok = False
        if not ok:
            return None
        channel = None
        compiled: dict[str, Any] = {}
        if kind == "notify":
            name = params["channel"]
            if not isinstance(name, str) or name not in self.bundle.channels:
                self.error(
                    (*psub, "channel"),
                    f"unknown channel '{name}'{suggest(str(name), self.bundle.channels)}",
                )
                return None
            channel = self.bundle.channels[name]
        if kind == "whatsapp.send_text":
            quote = params.get("quote", False)
            if not isinstance(quote, bool):
                self.error(
                    (*psub, "quote"), "quote must be true (reply quoting the message) or false"
                )
                return None
            if quote and not all(e in MESSAGE_EVENTS for e in self.events):
                self.error((*psub, "quote"), "quote: true needs a message event (messages.upsert)")
                return None
            delay = params.get("delay_ms")
            if delay is not None and (
                isinstance(delay, bool) or not isinstance(delay, int) or delay < 0
            ):
                self.error(
                    (*psub, "delay_ms"),
                    f"delay_ms must be a whole number of milliseconds, found {delay!r}",
                )
                return None
        if kind == "whatsapp.group_participants":
            action = params["action"]
            if isinstance(action, str) and not is_template(action) and action not in GROUP_ACTIONS:
                self.error(
                    (*psub, "action"),
                    f"action must be one of {', '.join(GROUP_ACTIONS)}, found "
                    f"'{action}'{suggest(action, GROUP_ACTIONS)}",
                )
                return None
            if not isinstance(params["participants"], list | str):
                self.error((*psub, "participants"), "participants must be a list of JIDs")
                return None
        if kind == "log":
            level = params.get("level", "info")
            if level not in LOG_LEVELS:
                self.error(
                    (*psub, "level"),
                    f"level must be one of {', '.join(LOG_LEVELS)}, found {level!r}",
                )
                return None
        if kind == "http":
            timeout = params.get("timeout_s")
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, int | float)
            ):
                self.error(
                    (*psub, "timeout_s"),
                    f"timeout_s must be a number of seconds, found {timeout!r}",
                )
                return None
        for key, value in params.items():
            if key in ("channel", "quote", "delay_ms", "timeout_s"):
                compiled[key] = value
                continue
            if key in (
                "to",
                "text",
                "instance",
                "group",
                "url",
                "topic",
                "message",
                "method",
            ) and not isinstance(value, str):
                self.error((*psub, key), f"'{key}' must be text, found {_type_name(value)}")
                ok = False
                continue
            compiled[key] = self.params((*psub, key), value, extras)
        if not ok or not self.ok:
            return None
        return ActionSpec(kind=kind, params=compiled, channel=channel)

    def params(self, sub: _Path, value: object, extras: set[str]) -> Any:
        if isinstance(value, str):
            return self.template(sub, value, extras) if is_template(value) else value
        if isinstance(value, dict):
            return {str(k): self.params((*sub, k), v, extras) for k, v in value.items()}
        if isinstance(value, list):
            return [self.params((*sub, i), v, extras) for i, v in enumerate(value)]
        return value

    def template(self, sub: _Path, source: str, extras: set[str]) -> Template | None:
        try:
            tree = template_tree(source)
        except ExpressionError as exc:
            self.error(sub, exc.message, line_offset=exc.line - 1)
            return None
        if not self.check_refs(sub, _template_refs(tree), extras):
            return None
        try:
            template = compile_template(source)
        except ExpressionError as exc:
            self.error(sub, exc.message, line_offset=exc.line - 1)
            return None
        for event in self.events:
            context = self.sample_context(event, extras)
            try:
                template.render(context)
            except EvaluationError as exc:
                self.error(sub, f"template fails on a sample {event} event: {exc}")
                return None
        return template

    def sample_context(self, event: str, extras: set[str]) -> dict[str, Any]:
        view = dict(_sample_view(event))
        view["vars"] = self.bundle.vars
        view["rule"] = {"id": self.rule_id or "", "description": ""}
        view["now"] = "2026-05-15T13:20:40.000Z"
        if "window" in extras:
            view["window"] = {"count": 3, "within": "10 min", "within_s": 600.0}
        if "alert" in extras:
            view["alert"] = {
                "since": "2026-05-15T13:18:40.000Z",
                "fired_at": "2026-05-15T13:20:40.000Z",
                "duration": 120.0,
                "phase": "fire",
            }
        if "item" in extras:
            if self.item_kind == "participant":
                view["item"] = {
                    "id": "204586724851231@lid",
                    "jid": "5511987654321@s.whatsapp.net",
                    "phone": "5511987654321",
                    "lid": "204586724851231@lid",
                    "admin": None,
                    "is_admin": False,
                }
            else:
                view["item"] = "5511987654321@s.whatsapp.net"
        return view


def _template_refs(tree: Any) -> list[tuple[tuple[str, ...], int]]:
    """References in a template, leaving out names the template itself binds."""
    bound: set[str] = set()
    for node in tree.find_all((nodes.For, nodes.Assign)):
        target = node.target
        for name in target.find_all(nodes.Name) if not isinstance(target, nodes.Name) else [target]:
            bound.add(name.name)
    if bound:
        bound.add("loop")
    refs: list[tuple[tuple[str, ...], int]] = []
    for output in tree.body:
        refs.extend(references(output))
    return [r for r in refs if r[0][0] not in bound]
