"""What ``zapflow rules check | test | explain`` do (imported only when they run)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from worker.cli import CommandError
from worker.rules.engine import evaluate
from worker.rules.expressions import ExpressionError, compile_regex
from worker.rules.loader import check_bundle, rule_files
from worker.rules.normalise import UnknownEvent
from worker.rules.testing import junit_xml, load_tests, run_test


def check(args: argparse.Namespace) -> int:
    path = Path(args.directory)
    bundle, diagnostics = check_bundle(path)
    for diagnostic in diagnostics:
        print(diagnostic, file=sys.stderr)
    errors = sum(d.severity == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    files = len(rule_files(path)) if path.exists() else 0
    rules = len(bundle.rules) if bundle else 0
    summary = f"{path}: {_count(files, 'file')}, {_count(rules, 'rule')}, "
    summary += f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"
    if bundle:
        summary += f" (bundle {bundle.version})"
    print(summary)
    if errors:
        return 1
    if warnings and args.strict:
        return 2
    return 0


def test(args: argparse.Namespace) -> int:
    path = Path(args.directory)
    bundle, diagnostics = check_bundle(path)
    errors = [d for d in diagnostics if d.severity == "error"]
    if bundle is None or errors:
        for diagnostic in errors:
            print(diagnostic, file=sys.stderr)
        return 1
    tests_path = Path(args.tests) if args.tests else path / "tests"
    if not tests_path.exists():
        raise CommandError(f"no tests at {tests_path}; put rule tests in {path / 'tests'}/*.yaml")
    tests, test_diags = load_tests(tests_path)
    if test_diags:
        for diagnostic in test_diags:
            print(diagnostic, file=sys.stderr)
        return 1
    if args.run:
        try:
            pattern = compile_regex(args.run)
        except ExpressionError as exc:
            raise CommandError(f"--run: {exc}") from None
        tests = [t for t in tests if pattern.found(t.name, 0)]
    if not tests:
        raise CommandError(f"no tests to run in {tests_path}")
    started = time.perf_counter()
    results = [run_test(bundle, test) for test in tests]
    elapsed = time.perf_counter() - started
    for result in results:
        if result.passed and args.verbose:
            print(result.report())
            print("\n".join("    " + line for line in result.timeline))
        else:
            print(result.report())
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed in {elapsed:.2f}s")
    if args.junit:
        Path(args.junit).write_text(junit_xml(results, elapsed), encoding="utf-8")
    return 1 if failed else 0


def explain(args: argparse.Namespace) -> int:
    path = Path(args.directory)
    bundle, diagnostics = check_bundle(path)
    if bundle is None:
        for diagnostic in diagnostics:
            print(diagnostic, file=sys.stderr)
        return 1
    raw = sys.stdin.read() if args.event == "-" else Path(args.event).read_text(encoding="utf-8")
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise CommandError(f"{args.event}: not JSON: {exc}") from None
    if not isinstance(envelope, dict) or "event" not in envelope or "data" not in envelope:
        raise CommandError(
            f"{args.event}: expected an envelope with at least 'event', 'instance' and 'data'"
        )
    envelope.setdefault("id", "explain")
    at = args.at or envelope.get("received_at")
    try:
        now = datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else datetime.now(UTC)
    except ValueError:
        raise CommandError(f"not an ISO 8601 time: {at!r}") from None
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        evaluation = evaluate(bundle, {}, envelope, now)
    except UnknownEvent as exc:
        raise CommandError(str(exc)) from None
    view = dict(evaluation.view or {})
    if not args.data:
        view.pop("data", None)
    print(f"event {envelope['event']} on {envelope.get('instance')} at {now.isoformat()}")
    print("normalised view:")
    for line in json.dumps(view, indent=2, ensure_ascii=False, default=str).splitlines():
        print("  " + line)
    print(f"rules (bundle {bundle.version}, empty state):")
    listening = {t.rule_id for t in evaluation.trace}
    for trace in evaluation.trace:
        print(f"  {trace.rule_id}: {trace.describe()}")
    for rule in bundle.rules:
        if rule.id in listening:
            continue
        why = "disabled" if rule.mode == "disabled" else f"listens to {', '.join(rule.on)}"
        print(f"  {rule.id}: not considered ({why})")
    if evaluation.actions:
        print("actions:")
        for record in evaluation.actions:
            params = json.dumps(record.params, ensure_ascii=False, sort_keys=True)
            print(f"  {record.rule_id} {record.kind}: {params}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
