from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from worker.rules import RuleLoadError, check_bundle, load_bundle

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
SHIPPED = HERE.parents[2] / "rules"


def diagnostics_for(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "r.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    _, diagnostics = check_bundle(tmp_path, display_root=tmp_path)
    return [str(d) for d in diagnostics]


def test_broken_files_produce_exactly_the_expected_diagnostics() -> None:
    _, diagnostics = check_bundle(BROKEN, display_root=BROKEN)
    expected = (HERE / "broken_expected.txt").read_text(encoding="utf-8").splitlines()
    assert [str(d) for d in diagnostics] == expected


def test_shipped_rules_load_without_warnings() -> None:
    bundle, diagnostics = check_bundle(SHIPPED)
    assert diagnostics == []
    assert bundle is not None
    assert {r.id for r in bundle.rules} == {
        "after-hours-reply",
        "escalate-keywords",
        "instance-logged-out",
        "instance-flapping",
        "instance-down",
        "group-welcome",
    }
    assert bundle.events == {"messages.upsert", "connection.update", "group-participants.update"}
    assert bundle.version.startswith("2026.11.1@")


RULE = """
rules:
  - id: r
    on: messages.upsert
{body}
    actions:
      - log: {{message: hi}}
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "    whenn: msg.from_me",
            "r.yaml:5:5: rule \"r\": unknown key 'whenn' (did you mean 'when'?)",
        ),
        (
            "    when: msg.txt",
            'r.yaml:5:11: rule "r": '
            "messages.upsert has no field 'msg.txt' (did you mean 'msg.text'?)",
        ),
        ("    when: mgs.text", "r.yaml:5:11: rule \"r\": unknown name 'mgs' (did you mean 'msg'?)"),
        (
            "    when: msg.text | uper",
            "r.yaml:5:11: rule \"r\": unknown filter 'uper' (did you mean 'upper'?)",
        ),
        (
            "    when: conn.state == 'x'",
            "r.yaml:5:11: rule \"r\": messages.upsert has no 'conn' (its fields are under 'msg')",
        ),
        (
            "    throttle: {once_within: 10}",
            'r.yaml:5:29: rule "r": expected a duration such as 30s, 10m, 12h or 1h30m, found 10',
        ),
        (
            "    throttle: {once_withn: 1h}",
            'r.yaml:5:16: rule "r": '
            "unknown key 'once_withn' in throttle (did you mean 'once_within'?)",
        ),
        (
            "    window: {count: 0, within: 1m}",
            'r.yaml:5:21: rule "r": window count must be a whole number of at least 1, found 0',
        ),
        (
            "    mode: on",
            "r.yaml:5:11: rule \"r\": mode must be one of active, shadow, disabled, found 'True'",
        ),
        (
            "    from_me: yes",
            'r.yaml:5:14: rule "r": '
            "from_me must be 'ignore' (the default) or 'allow', found True",
        ),
        (
            "    on_resolve: []",
            "r.yaml:5:17: rule \"r\": 'on_resolve' needs 'for' (only alerts that wait can resolve)",
        ),
        (
            "    when: {al: [msg.from_me]}",
            'r.yaml:5:11: rule "r": a condition mapping has exactly one key: '
            "all, any or not; found al (did you mean 'all'?)",
        ),
        (
            "    for_each: msg.mentions\n    key: [item]",
            "r.yaml:6:11: rule \"r\": unknown name 'item'",
        ),
        (
            "    for_each: msg.mentions\n    for: 1m",
            "r.yaml:6:10: rule \"r\": 'for' cannot be combined with 'for_each' "
            "(an alert is about one key, not one list element); split the rule",
        ),
    ],
)
def test_rule_validation_errors(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in diagnostics_for(tmp_path, RULE.format(body=body))


def test_template_referencing_a_field_the_event_lacks_is_caught_at_check_time(
    tmp_path: Path,
) -> None:
    text = """
    rules:
      - id: r
        on: [messages.upsert, connection.update]
        actions:
          - log:
              message: |
                first line
                {{ msg.text }}
    """
    assert diagnostics_for(tmp_path, text) == [
        "r.yaml:9:1: rule \"r\": connection.update has no 'msg' (its fields are under 'conn')"
    ]


def test_template_rendering_against_the_sample_catches_type_errors(tmp_path: Path) -> None:
    text = """
    rules:
      - id: r
        on: connection.update
        actions:
          - log: {message: "{{ conn.state | humanize }}"}
    """
    assert diagnostics_for(tmp_path, text) == [
        'r.yaml:6:24: rule "r": template fails on a sample connection.update event: '
        "expected a duration such as 30s, 10m, 12h or 1h30m, found 'close'"
    ]


def test_action_parameters_are_checked_per_kind(tmp_path: Path) -> None:
    text = """
    channels:
      ops: {type: slack, url: "${env:SLACK}"}
    rules:
      - id: r
        on: group-participants.update
        actions:
          - whatsapp.group_participants: {group: "{{ group.id }}", action: kick, participants: []}
          - notify: {channel: ops, text: hi, colour: red}
          - http: {url: "x", timeout_s: soon}
    """
    assert diagnostics_for(tmp_path, text) == [
        "r.yaml:8:72: rule \"r\": action must be one of add, remove, promote, demote, found 'kick'",
        "r.yaml:9:42: rule \"r\": unknown parameter 'colour' for notify",
        "r.yaml:10:37: rule \"r\": timeout_s must be a number of seconds, found 'soon'",
    ]


def test_warnings_for_risky_rules_and_strictness(tmp_path: Path) -> None:
    text = """
    rules:
      - id: auto-reply
        on: messages.upsert
        actions:
          - whatsapp.send_text: {to: "{{ msg.chat }}", text: hi}
    """
    (tmp_path / "r.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    bundle = load_bundle(tmp_path)  # warnings do not stop loading
    assert [str(w).split(": warning: ")[1][:34] for w in bundle.warnings] == [
        "auto-reply without a throttle: it "
    ]


def test_throttle_none_acknowledges_an_unthrottled_auto_reply(tmp_path: Path) -> None:
    text = """
    rules:
      - id: auto-reply
        on: messages.upsert
        throttle: none
        actions:
          - whatsapp.send_text: {to: "{{ msg.chat }}", text: hi}
    """
    assert diagnostics_for(tmp_path, text) == []


def test_load_error_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - id: x\n    on: nope\n    whenn: x\n    actions: []\n", encoding="utf-8"
    )
    with pytest.raises(RuleLoadError) as info:
        load_bundle(tmp_path)
    assert len(info.value.errors) == 2
    assert str(info.value).splitlines()[0].endswith("a.yaml:3:9: rule \"x\": unknown event 'nope'")


def test_vars_channels_and_intervals_are_shared_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "vars: {words: urgente}\nchannels: {ops: {type: webhook, url: 'http://x'}}\n",
        encoding="utf-8",
    )
    (tmp_path / "b.yaml").write_text(
        "rules:\n  - id: x\n    on: messages.upsert\n    when: msg.text is search(vars.words)\n"
        "    actions:\n      - notify: {channel: ops, text: hi}\n",
        encoding="utf-8",
    )
    bundle = load_bundle(tmp_path)
    assert bundle.by_id["x"].actions[0].channel is not None


def test_bundle_version_changes_with_content(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules: []\n", encoding="utf-8")
    first = load_bundle(tmp_path).version
    (tmp_path / "a.yaml").write_text("rules: []\n# changed\n", encoding="utf-8")
    assert load_bundle(tmp_path).version != first


def test_missing_directory_and_empty_directory(tmp_path: Path) -> None:
    assert [str(d) for d in check_bundle(tmp_path / "nope")[1]] == [
        f"{tmp_path / 'nope'}:1:1: no such file or directory"
    ]
    assert [str(d) for d in check_bundle(tmp_path)[1]] == [
        f"{tmp_path}:1:1: no rule files (*.yaml, *.yml) found"
    ]


def test_state_key_space_follows_the_kafka_key() -> None:
    bundle = load_bundle(SHIPPED)
    assert [
        bundle.state_key_space(e)
        for e in ("messages.upsert", "presence.update", "group-participants.update", "call.upsert")
    ] == ["chat", "chat", "group", "instance"]
    assert [p.source for p in bundle.by_id["after-hours-reply"].key] == ["instance", "msg.chat"]
    assert [p.source for p in bundle.by_id["group-welcome"].key] == ["instance", "group.id"]
    assert [p.source for p in bundle.by_id["instance-down"].key] == ["instance"]


def test_condition_that_cannot_run_on_a_sample_is_a_warning(tmp_path: Path) -> None:
    text = """
    rules:
      - id: r
        on: messages.upsert
        when: msg.text > 5
        actions: [{log: {message: hi}}]
    """
    assert diagnostics_for(tmp_path, text) == [
        'r.yaml:5:11: rule "r": warning: condition fails on a sample messages.upsert event: '
        "TypeError: '>' not supported between instances of 'str' and 'int'"
    ]
