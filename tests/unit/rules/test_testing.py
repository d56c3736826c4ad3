"""`zapflow rules test` and the CLI commands."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from worker.cli import main
from worker.rules import load_bundle
from worker.rules.normalise import sample_envelope
from worker.rules.testing import load_tests, run_test

SHIPPED = Path(__file__).parents[3] / "rules"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_rule_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert out.splitlines()[-1].startswith("12 passed, 0 failed")


def test_check_on_shipped_rules_passes_strictly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(SHIPPED), "--strict"]) == 0
    assert ", 6 rules, 0 errors, 0 warnings (bundle 2026.11.1@" in capsys.readouterr().out


def test_breaking_a_shipped_rule_fails_with_a_readable_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED, rules)
    text = (rules / "connection.yaml").read_text(encoding="utf-8")
    (rules / "connection.yaml").write_text(text.replace("for: 2m", "for: 3m"), encoding="utf-8")
    junit = tmp_path / "out.xml"
    assert main(["rules", "test", str(rules), "--run", "two minutes", "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert (
        "FAIL " in out and "down for more than two minutes alerts, then says when it is back" in out
    )
    assert (
        "  expected, not produced: at 2m  instance-down  phase=fire  "
        "text matching /^🔴 shop-bot está desconectado há 2 min/\n"
        "    at: expected 2m, got 3m\n"
        "    params.text: expected to match /^🔴 shop-bot está desconectado há 2 min/, "
        'got "🔴 shop-bot está desconectado há 3 min (motivo: connectionClosed)"\n'
    ) in out
    assert "  produced, not expected: at 3m  instance-down  notify  " in out
    assert "  timeline (what each rule decided):" in out
    assert "        instance-down: pending (for) until 2026-11-25T20:03:00.000Z" in out
    assert out.splitlines()[-1].startswith("0 passed, 1 failed")
    xml = junit.read_text(encoding="utf-8")
    assert '<testsuite name="zapflow rules" tests="1" failures="1"' in xml
    assert "<failure message=" in xml


RULES = """
rules:
  - id: r
    on: connection.update
    when: conn.state == "close"
    actions: [{log: {message: "closed {{ instance }}"}}]
"""


def run_yaml_tests(tmp_path: Path, tests: str) -> list[str]:
    write(tmp_path, "r.yaml", RULES)
    write(tmp_path / "tests", "t.yaml", tests)
    loaded, diagnostics = load_tests(tmp_path / "tests", display_root=tmp_path)
    if diagnostics:
        return [str(d) for d in diagnostics]
    bundle = load_bundle(tmp_path)
    return [f for test in loaded for f in run_test(bundle, test).failures]


def test_an_unexpected_action_fails(tmp_path: Path) -> None:
    failures = run_yaml_tests(
        tmp_path,
        """
        tests:
          - name: t
            events: [{at: 0s, event: connection.update, data: {state: close}}]
            expect_suppressed: [{rule: r}]
        """,
    )
    assert failures == [
        'produced, not expected: at 0s  r  log  {"level": "info", "message": "closed shop-bot"}',
        "expected suppression, did not happen: at any time  r  suppressed (any reason)",
        "  r was: matched → 1 action at 0s",
    ]


def test_a_test_without_expectations_is_an_error(tmp_path: Path) -> None:
    assert run_yaml_tests(
        tmp_path,
        """
        tests:
          - name: forgot
            events: [{at: 0s, event: connection.update, data: {state: close}}]
        """,
    ) == [
        "tests/t.yaml:3:5: test 'forgot' expects nothing; "
        "add expect, expect_suppressed, or expect_none: true"
    ]


def test_test_file_errors_are_located(tmp_path: Path) -> None:
    assert run_yaml_tests(
        tmp_path,
        """
        tests:
          - name: t
            events: [{at: soon, fixtur: x, event: connection.update}]
            expect: [{rule: r, action: log, colour: red}]
        """,
    ) == [
        "tests/t.yaml:4:19: 'at' is an offset from the start: "
        "expected a duration such as 30s, 10m, 12h or 1h30m, found 'soon'",
        "tests/t.yaml:4:25: unknown key 'fixtur' in an event (did you mean 'fixture'?)",
        "tests/t.yaml:5:37: unknown key 'colour' in an expected action",
    ]


def test_expect_none_and_repeat_and_fixture_files(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "open.json").write_text(
        json.dumps(sample_envelope("connection.update") | {"data": {"state": "open"}})
    )
    failures = run_yaml_tests(
        tmp_path,
        """
        fixtures:
          opened: {file: open.json}
        tests:
          - name: quiet
            events: [{at: 0s, fixture: opened, repeat: 3, every: 1m}]
            expect_none: true
          - name: three closes
            events: [{at: 0s, event: connection.update, data: {state: close}, repeat: 3, every: 1m}]
            expect:
              - {at: 0s, rule: r, params: {message: closed shop-bot}}
              - {at: 1m, rule: r, text_matches: closed}
              - {at: 2m, rule: r, action: log}
        """,
    )
    assert failures == []


def test_explain_prints_the_view_and_every_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = write(
        tmp_path,
        "e.json",
        json.dumps(
            sample_envelope("connection.update") | {"data": {"state": "close", "statusReason": 401}}
        ),
    )
    assert main(["rules", "explain", str(SHIPPED), "--event", str(event)]) == 0
    out = capsys.readouterr().out
    assert '"logged_out": true' in out
    assert "  instance-logged-out: matched → 1 action" in out
    assert (
        "  instance-flapping: not matched (condition): "
        'conn.state == "close" and not conn.logged_out' in out
    )
    assert "  group-welcome: not considered (listens to group-participants.update)" in out
    assert "  instance-logged-out notify: {" in out


def test_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        tmp_path / "warn",
        "r.yaml",
        "rules:\n  - id: r\n    on: messages.upsert\n"
        "    actions: [{whatsapp.send_text: {to: x, text: y}}]\n",
    )
    write(tmp_path / "bad", "r.yaml", "rules:\n  - id: r\n    on: nope\n")
    assert main(["rules", "check", str(tmp_path / "warn")]) == 0
    assert main(["rules", "check", str(tmp_path / "warn"), "--strict"]) == 2
    assert main(["rules", "check", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"{tmp_path / 'bad' / 'r.yaml'}:3:9: rule \"r\": unknown event 'nope'"


def test_explain_reads_the_envelope_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    envelope = sample_envelope("group-participants.update")
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(envelope)))
    assert main(["rules", "explain", str(SHIPPED), "--at", "2026-11-25T20:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "event group-participants.update on shop-bot at 2026-11-25T20:00:00+00:00"
    )
    assert "  group-welcome: matched [item 204586724851231@lid] → 1 action" in out


def test_explain_refuses_what_is_not_an_envelope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = write(tmp_path, "e.json", '{"state": "open"}')
    assert main(["rules", "explain", str(SHIPPED), "--event", str(event)]) == 1
    assert capsys.readouterr().err == (
        f"zapflow: error: {event}: expected an envelope with at least 'event', 'instance' and 'data'\n"
    )
