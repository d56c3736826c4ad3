"""``zapflow rules test``: rule unit tests in YAML, run on a virtual clock.

A test file (``rules/tests/*.yaml``) holds named fixtures and tests. Each test has a start
time, a timeline of input events at offsets from it, and what must come out: actions
(``expect``), suppressions (``expect_suppressed``), or explicitly nothing
(``expect_none: true``). Every action produced must be expected; a test that expects
nothing at all is an error (promtool's empty ``exp_alerts`` passing silently is a known
pitfall). Timers (``for:``) fire at their exact deadlines between events, through the same
``fire_due`` the worker calls.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape, quoteattr

from worker.rules.durations import DurationError, parse_duration
from worker.rules.engine import evaluate, fire_due
from worker.rules.expressions import ExpressionError, compile_regex, suggest
from worker.rules.loader import _compose, _Diagnostics, _position, _Source, _type_name
from worker.rules.model import Diagnostic, RuleBundle
from worker.rules.normalise import NAMESPACES, UnknownEvent
from worker.rules.records import ActionRecord, Evaluation, RuleTrace

TEST_FILE_KEYS: Final = ("fixtures", "tests")
TEST_KEYS: Final = (
    "name",
    "start",
    "events",
    "until",
    "expect",
    "expect_suppressed",
    "expect_none",
)
EVENT_KEYS: Final = ("at", "fixture", "event", "instance", "data", "set", "id", "repeat", "every")
FIXTURE_KEYS: Final = ("event", "instance", "data", "file")
EXPECT_KEYS: Final = ("at", "rule", "action", "phase", "params", "text_matches", "item")
SUPPRESSED_KEYS: Final = ("at", "rule", "reason", "item")
REASONS: Final = (
    "throttle",
    "window",
    "quiet_hours",
    "inhibited",
    "shadow",
    "pending",
    "firing",
)


def format_offset(seconds: float) -> str:
    """``0s``, ``5m``, ``2m10s``, ``13h``: an offset from the test's start."""
    total = round(seconds)
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        value, total = divmod(total, size)
        if value:
            parts.append(f"{value}{unit}")
    return sign + "".join(parts)


@dataclass
class _InputEvent:
    at: float
    envelope: dict[str, Any]


@dataclass
class _Expect:
    at: float | None
    rule: str
    action: str | None
    phase: str | None
    params: Mapping[str, Any]
    text_matches: str | None
    item: str | None
    line: int

    def describe(self) -> str:
        parts = [
            f"at {format_offset(self.at)}" if self.at is not None else "at any time",
            self.rule,
        ]
        if self.action:
            parts.append(self.action)
        if self.phase:
            parts.append(f"phase={self.phase}")
        if self.item:
            parts.append(f"item={self.item}")
        text = "  ".join(parts)
        if self.params:
            text += "  " + json.dumps(self.params, ensure_ascii=False, sort_keys=True)
        if self.text_matches:
            text += f"  text matching /{self.text_matches}/"
        return text


@dataclass
class _ExpectSuppressed:
    at: float | None
    rule: str
    reason: str | None
    item: str | None
    line: int

    def describe(self) -> str:
        at = f"at {format_offset(self.at)}" if self.at is not None else "at any time"
        return f"{at}  {self.rule}  suppressed ({self.reason or 'any reason'})"


@dataclass
class RuleTest:
    name: str
    file: str
    line: int
    start: datetime
    events: list[_InputEvent]
    until: float | None
    expect: list[_Expect]
    expect_suppressed: list[_ExpectSuppressed]
    expect_none: bool


@dataclass
class TestResult:
    test: RuleTest
    failures: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def report(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        head = f"{status} {self.test.file}:{self.test.line}: {self.test.name}"
        if self.passed:
            return head
        lines = [head, *("  " + f for f in self.failures), "  timeline (what each rule decided):"]
        lines += ["    " + t for t in self.timeline]
        return "\n".join(lines)


# ----------------------------------------------------------------------- parsing


def load_tests(
    path: Path, display_root: Path | None = None
) -> tuple[list[RuleTest], list[Diagnostic]]:
    """Read every ``*.yaml`` under ``path`` (a tests directory or one file)."""
    diags = _Diagnostics()
    files = [path] if path.is_file() else sorted(p for p in path.glob("*.y*ml") if p.is_file())
    tests: list[RuleTest] = []
    for file in files:
        name = (
            str(file.relative_to(display_root))
            if display_root and file.is_relative_to(display_root)
            else str(file)
        )
        text = file.read_text(encoding="utf-8")
        composed = _compose(name, text, diags)
        if composed is None:
            continue
        data, marks = composed
        src = _Source(file, name, text, data, marks)
        tests.extend(_TestFileReader(src, diags).read())
    diags.items.sort(key=lambda d: (d.file, d.line, d.col))
    return tests, diags.items


class _TestFileReader:
    def __init__(self, src: _Source, diags: _Diagnostics) -> None:
        self.src = src
        self.diags = diags
        self.fixtures: dict[str, dict[str, Any]] = {}
        self.ok = True

    def error(self, path: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        self.ok = False
        self.diags.at(self.src, path, None, message, key=key)

    def keys(
        self, path: tuple[Any, ...], value: Mapping[str, Any], allowed: tuple[str, ...], what: str
    ) -> None:
        for key in value:
            if key not in allowed:
                self.error(
                    (*path, key),
                    f"unknown key '{key}' in {what}{suggest(str(key), allowed)}",
                    key=True,
                )

    def read(self) -> list[RuleTest]:
        data = self.src.data
        if not isinstance(data, dict):
            self.error((), f"a test file must be a mapping with 'tests:', found {_type_name(data)}")
            return []
        self.keys((), data, TEST_FILE_KEYS, "a test file")
        fixtures = data.get("fixtures", {})
        if not isinstance(fixtures, dict):
            self.error(("fixtures",), "'fixtures' must be a mapping of names to events")
        else:
            for name, spec in fixtures.items():
                fixture = self.read_fixture(("fixtures", name), spec)
                if fixture is not None:
                    self.fixtures[name] = fixture
        tests_raw = data.get("tests")
        if not isinstance(tests_raw, list) or not tests_raw:
            self.error(
                ("tests",) if "tests" in data else (),
                "a test file needs 'tests:', a non-empty list",
            )
            return []
        out = []
        for index, raw in enumerate(tests_raw):
            test = self.read_test(("tests", index), raw)
            if test is not None:
                out.append(test)
        return out

    def read_fixture(self, path: tuple[Any, ...], spec: object) -> dict[str, Any] | None:
        if not isinstance(spec, dict):
            self.error(path, "a fixture is a mapping with event, instance and data (or file)")
            return None
        self.keys(path, spec, FIXTURE_KEYS, "a fixture")
        if "file" in spec:
            file = self.src.path.parent / str(spec["file"])
            try:
                loaded = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self.error((*path, "file"), f"cannot read fixture file {spec['file']}: {exc}")
                return None
            if isinstance(loaded, dict) and "event" in loaded and "data" in loaded:
                return {**loaded, **{k: v for k, v in spec.items() if k != "file"}}
            return {"data": loaded, **{k: v for k, v in spec.items() if k != "file"}}
        return dict(spec)

    def at(self, path: tuple[Any, ...], value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return 0.0
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.error(path, f"'at' is an offset from the start: {exc}")
            return None

    def read_test(self, path: tuple[Any, ...], raw: object) -> RuleTest | None:
        if not isinstance(raw, dict):
            self.error(path, "a test is a mapping with name, start, events and expectations")
            return None
        self.ok = True
        self.keys(path, raw, TEST_KEYS, "a test")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            self.error(path, "a test needs a 'name'")
            name = "?"
        start_raw = raw.get("start", "2026-01-05T12:00:00+00:00")
        start = None
        try:
            start = datetime.fromisoformat(str(start_raw))
            if start.tzinfo is None:
                raise ValueError("no time zone")
        except ValueError:
            self.error(
                (*path, "start"),
                "'start' must be an ISO time with a zone, e.g. 2026-11-25T22:00:00-03:00, "
                f"found {start_raw!r}",
            )
        events: list[_InputEvent] = []
        raw_events = raw.get("events")
        if not isinstance(raw_events, list) or not raw_events:
            self.error(path, "a test needs 'events', a non-empty list")
        else:
            for index, spec in enumerate(raw_events):
                events.extend(self.read_event((*path, "events", index), spec, len(events)))
        until = self.at((*path, "until"), raw.get("until")) if "until" in raw else None
        expect = [
            self.read_expect((*path, "expect", i), e) for i, e in enumerate(raw.get("expect") or [])
        ]
        suppressed = [
            self.read_suppressed((*path, "expect_suppressed", i), e)
            for i, e in enumerate(raw.get("expect_suppressed") or [])
        ]
        expect_none = raw.get("expect_none", False) is True
        if not expect and not suppressed and not expect_none:
            self.error(
                path,
                f"test '{name}' expects nothing; "
                "add expect, expect_suppressed, or expect_none: true",
            )
        if expect_none and expect:
            self.error(
                (*path, "expect_none"),
                f"test '{name}' has both expect_none: true and expected actions",
            )
        if not self.ok or start is None:
            return None
        events.sort(key=lambda e: e.at)
        line = _position(self.src, path)[0]
        return RuleTest(
            name=name,
            file=self.src.name,
            line=line,
            start=start,
            events=events,
            until=until,
            expect=[e for e in expect if e is not None],
            expect_suppressed=[e for e in suppressed if e is not None],
            expect_none=expect_none,
        )

    def read_event(self, path: tuple[Any, ...], spec: object, count: int) -> list[_InputEvent]:
        if not isinstance(spec, dict):
            self.error(path, "an event is a mapping with at and fixture (or event, instance, data)")
            return []
        self.keys(path, spec, EVENT_KEYS, "an event")
        base: dict[str, Any] = {}
        if "fixture" in spec:
            fixture_name = str(spec["fixture"])
            fixture = self.fixtures.get(fixture_name)
            if fixture is None:
                self.error(
                    (*path, "fixture"),
                    f"unknown fixture '{fixture_name}'{suggest(fixture_name, self.fixtures)}",
                )
                return []
            base = copy.deepcopy(fixture)
        for key in ("event", "instance", "data", "id"):
            if key in spec:
                base[key] = copy.deepcopy(spec[key])
        event = base.get("event")
        if event not in NAMESPACES:
            self.error(
                path,
                f"unknown event {event!r}{suggest(str(event), NAMESPACES)}"
                if event
                else "an event needs 'event' (or a fixture)",
            )
            return []
        sets = spec.get("set", {})
        if not isinstance(sets, dict):
            self.error((*path, "set"), "'set' maps dotted paths in data to new values")
            return []
        data = base.get("data", {})
        for dotted, value in sets.items():
            data = _set_path(data, str(dotted).split("."), value)
        at = self.at((*path, "at"), spec.get("at", 0))
        repeat = spec.get("repeat", 1)
        every = self.at((*path, "every"), spec.get("every", "1s")) or 0.0
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            self.error(
                (*path, "repeat"),
                f"'repeat' must be a whole number of at least 1, found {repeat!r}",
            )
            return []
        out = []
        for n in range(repeat):
            envelope = {
                "id": base.get("id")
                if repeat == 1 and base.get("id")
                else f"evt-{count + n + 1:04d}",
                "instance": base.get("instance", "shop-bot"),
                "event": event,
                "received_at": None,
                "source": {"gateway": "test", "connection": "test", "seq": count + n + 1},
                "data": copy.deepcopy(data),
            }
            out.append(_InputEvent((at or 0.0) + n * every, envelope))
        return out

    def read_expect(self, path: tuple[Any, ...], spec: object) -> _Expect | None:
        if not isinstance(spec, dict) or "rule" not in spec:
            self.error(path, "an expected action is a mapping with at least 'rule'")
            return None
        self.keys(path, spec, EXPECT_KEYS, "an expected action")
        params = spec.get("params", {})
        if not isinstance(params, dict):
            self.error((*path, "params"), "'params' maps parameter names to expected values")
            params = {}
        pattern = spec.get("text_matches")
        if pattern is not None:
            try:
                compile_regex(str(pattern))
            except ExpressionError as exc:
                self.error((*path, "text_matches"), exc.message)
        phase = spec.get("phase")
        if phase not in (None, "fire", "resolve"):
            self.error((*path, "phase"), f"phase must be fire or resolve, found {phase!r}")
        return _Expect(
            at=self.at((*path, "at"), spec.get("at")),
            rule=str(spec["rule"]),
            action=spec.get("action"),
            phase=phase,
            params=params,
            text_matches=str(pattern) if pattern is not None else None,
            item=spec.get("item"),
            line=_position(self.src, path)[0],
        )

    def read_suppressed(self, path: tuple[Any, ...], spec: object) -> _ExpectSuppressed | None:
        if not isinstance(spec, dict) or "rule" not in spec:
            self.error(path, "an expected suppression is a mapping with at least 'rule'")
            return None
        self.keys(path, spec, SUPPRESSED_KEYS, "an expected suppression")
        reason = spec.get("reason")
        if reason is not None and reason not in REASONS:
            self.error(
                (*path, "reason"), f"unknown reason '{reason}'{suggest(str(reason), REASONS)}"
            )
        return _ExpectSuppressed(
            at=self.at((*path, "at"), spec.get("at")),
            rule=str(spec["rule"]),
            reason=reason,
            item=spec.get("item"),
            line=_position(self.src, path)[0],
        )


def _set_path(data: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(data, list) and head.isdigit():
        data[int(head)] = _set_path(data[int(head)], rest, value)
        return data
    if not isinstance(data, dict):
        data = {}
    data[head] = _set_path(data.get(head, {}), rest, value)
    return data


# ----------------------------------------------------------------------- running


@dataclass
class _Produced:
    at: float
    record: ActionRecord


def run_test(bundle: RuleBundle, test: RuleTest) -> TestResult:
    """Run one test on a virtual clock and compare what came out with what it expects."""
    result = TestResult(test)
    state: dict[str, Any] = {}
    produced: list[_Produced] = []
    traces: list[tuple[float, RuleTrace]] = []

    def apply(offset: float, evaluation: Evaluation, label: str) -> None:
        for key, value in evaluation.changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        produced.extend(_Produced(offset, r) for r in evaluation.actions)
        if evaluation.trace or evaluation.actions:
            result.timeline.append(f"at {format_offset(offset)}  {label}")
        for trace in evaluation.trace:
            traces.append((offset, trace))
            result.timeline.append(f"    {trace.rule_id}: {trace.describe()}")

    def run_timers(up_to: float) -> None:
        while True:
            dues = [
                v["due"]
                for k, v in state.items()
                if "|a|" in k and isinstance(v, dict) and v.get("phase") == "pending"
            ]
            start_ts = test.start.timestamp()
            due = min((d for d in dues if d - start_ts <= up_to), default=None)
            if due is None:
                return
            offset = due - start_ts
            now = test.start + timedelta(seconds=offset)
            apply(offset, fire_due(bundle, state, now), "timer")

    for item in test.events:
        run_timers(item.at)
        now = test.start + timedelta(seconds=item.at)
        envelope = dict(item.envelope)
        envelope["received_at"] = now.isoformat()
        try:
            evaluation = evaluate(bundle, state, envelope, now)
        except UnknownEvent as exc:
            result.failures.append(str(exc))
            return result
        label = f"{envelope['event']} {envelope['instance']} (event {envelope['id']})"
        apply(item.at, evaluation, label)
    last = test.events[-1].at if test.events else 0.0
    longest = max((r.for_s or 0.0 for r in bundle.rules), default=0.0)
    run_timers(test.until if test.until is not None else last + longest + 1)
    _compare(bundle, test, produced, traces, result)
    return result


def _compare(
    bundle: RuleBundle,
    test: RuleTest,
    produced: list[_Produced],
    traces: list[tuple[float, RuleTrace]],
    result: TestResult,
) -> None:
    for rule_id in {e.rule for e in test.expect} | {e.rule for e in test.expect_suppressed}:
        if rule_id not in bundle.by_id:
            result.failures.append(
                f"unknown rule '{rule_id}' in expectations{suggest(rule_id, bundle.by_id)}"
            )
    remaining = list(produced)
    missing: list[_Expect] = []
    for expect in test.expect:
        match = next((p for p in remaining if _matches(expect, p)), None)
        if match is None:
            missing.append(expect)
        else:
            remaining.remove(match)
    for expect in missing:
        result.failures.append(f"expected, not produced: {expect.describe()}")
        close = [
            p
            for p in remaining
            if p.record.rule_id == expect.rule and (expect.action in (None, p.record.kind))
        ]
        for candidate in close[:1]:
            result.failures.extend("  " + d for d in _differences(expect, candidate))
    for extra in remaining:
        result.failures.append(f"produced, not expected: {_describe_produced(extra)}")
    for want in test.expect_suppressed:
        found = any(
            trace.rule_id == want.rule
            and trace.outcome == "suppressed"
            and (want.reason is None or trace.reason == want.reason)
            and (want.at is None or abs(offset - want.at) < 0.001)
            and (want.item is None or trace.item == want.item)
            for offset, trace in traces
        )
        if not found:
            seen = [
                f"{t.describe()} at {format_offset(o)}"
                for o, t in traces
                if t.rule_id == want.rule and (want.at is None or abs(o - want.at) < 0.001)
            ]
            result.failures.append(f"expected suppression, did not happen: {want.describe()}")
            result.failures.extend(f"  {want.rule} was: {s}" for s in seen[:3])


def _matches(expect: _Expect, produced: _Produced) -> bool:
    record = produced.record
    if record.rule_id != expect.rule:
        return False
    if expect.action is not None and record.kind != expect.action:
        return False
    if expect.phase is not None and record.phase != expect.phase:
        return False
    if expect.item is not None and record.item != expect.item:
        return False
    if expect.at is not None and abs(produced.at - expect.at) >= 0.001:
        return False
    return not _differences(expect, produced)


def _differences(expect: _Expect, produced: _Produced) -> list[str]:
    out = []
    record = produced.record
    if expect.at is not None and abs(produced.at - expect.at) >= 0.001:
        out.append(f"at: expected {format_offset(expect.at)}, got {format_offset(produced.at)}")
    if expect.phase is not None and record.phase != expect.phase:
        out.append(f"phase: expected {expect.phase}, got {record.phase}")
    for path, want, got in _param_diffs("params", expect.params, record.params):
        out.append(f"{path}: expected {_json(want)}, got {_json(got)}")
    if expect.text_matches is not None:
        text = record.params.get("text") or record.params.get("message") or ""
        if not compile_regex(expect.text_matches).found(str(text), 0):
            out.append(f"params.text: expected to match /{expect.text_matches}/, got {_json(text)}")
    return out


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _param_diffs(path: str, want: object, got: object) -> list[tuple[str, object, object]]:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [(path, want, got)]
        out: list[tuple[str, object, object]] = []
        for key, value in want.items():
            out.extend(
                _param_diffs(
                    f"{path}.{key}", value, got.get(key, None) if key in got else "<absent>"
                )
            )
        return out
    return [] if want == got else [(path, want, got)]


def _describe_produced(produced: _Produced) -> str:
    record = produced.record
    item = f"  item={record.item}" if record.item else ""
    phase = "  phase=resolve" if record.phase == "resolve" else ""
    params = json.dumps(record.params, ensure_ascii=False, sort_keys=True)
    return (
        f"at {format_offset(produced.at)}  {record.rule_id}  {record.kind}{phase}{item}  {params}"
    )


def junit_xml(results: list[TestResult], seconds: float) -> str:
    """The results as a JUnit XML document (one testcase per test)."""
    failures = sum(not r.passed for r in results)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name="zapflow rules" tests="{len(results)}" failures="{failures}"'
        f' time="{seconds:.3f}">',
    ]
    for r in results:
        attrs = f"classname={quoteattr(r.test.file)} name={quoteattr(r.test.name)}"
        if r.passed:
            lines.append(f"  <testcase {attrs}/>")
        else:
            message = quoteattr(r.failures[0])
            lines.append(f"  <testcase {attrs}>")
            lines.append(f"    <failure message={message}>{escape(r.report())}</failure>")
            lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"
