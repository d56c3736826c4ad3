from __future__ import annotations

from pathlib import Path

import pytest

from worker.simulator.scenario import ScenarioError, Step, load_scenario, parse_scenario

GOOD = """
name: flapping
instances: [shop-bot]
steps:
  - at: 0.5
    emit: {instance: shop-bot, event: messages.upsert}
  - after: 1
    emit:
      instance: shop-bot
      event: connection.update
      set: {state: close, statusReason: 428}
  - after: 0.5
    fault: {close_sockets: {instance: shop-bot}}
  - at: 3
    fault: {refuse_handshakes: 2}
  - after: 0
    profile: {rate: 10, duration: 1}
"""


def test_good_scenario_resolves_times() -> None:
    scenario = parse_scenario(GOOD, "s.yaml")
    assert scenario.name == "flapping"
    assert scenario.instances == ("shop-bot",)
    assert [(s.at, s.action, s.line) for s in scenario.steps] == [
        (0.5, "emit", 5),
        (1.5, "emit", 7),
        (2.0, "fault", 12),
        (3.0, "fault", 14),
        (3.0, "profile", 16),
    ]
    assert scenario.steps[1] == Step(
        1.5,
        "emit",
        {
            "instance": "shop-bot",
            "event": "connection.update",
            "set": {"state": "close", "statusReason": 428},
        },
        7,
    )


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("steps: 3", ["s.yaml:1: steps must be a list"]),
        ("- a", ["s.yaml:1: a scenario is a mapping with 'steps'"]),
        ("stesp: []", [
            "s.yaml:1: unknown key 'stesp' (did you mean 'steps'?); expected one of: instances, steps, name",
            "s.yaml:1: steps must be a list",
        ]),
        ("steps:\n  - at: 1\n    emit: {instance: a, event: messages.upsert}\n    fault: restart\n",
         ["s.yaml:2: step 1: a step needs exactly one of: emit, fault, profile"]),
        ("steps:\n  - at: 2\n    fault: restart\n  - at: 1\n    fault: restart\n",
         ["s.yaml:4: step 2: at 1 s is before the previous step (2 s)"]),
        ("steps:\n  - at: soon\n    fault: restart\n",
         ["s.yaml:2: step 1: at/after must be a number of seconds, got 'soon'"]),
        ("steps:\n  - fault: {restrat: {}}\n",
         ["s.yaml:2: step 1: unknown key 'restrat' (did you mean 'restart'?); expected one of: "
          "close_sockets, refuse_handshakes, send_raw, send_large, answer_pings, restart"]),
        ("steps:\n  - fault: {send_raw: {instance: a, event: b}}\n",
         ["s.yaml:2: step 1: send_raw needs text or base64 (one of them)"]),
        ("steps:\n  - emit: {instance: a, event: messages.upsert, count: 0}\n",
         ["s.yaml:2: step 1: count must be a whole number of 1 or more"]),
        ("steps:\n  - profile: {rate: 10}\n",
         ["s.yaml:2: step 1: profile needs duration or count, or it would never end"]),
        ("steps: [\n", ["s.yaml:2: not valid YAML: expected the node content, but found '<stream end>'"]),
    ],
)  # fmt: skip
def test_problems_name_file_line_and_step(text: str, problems: list[str]) -> None:
    with pytest.raises(ScenarioError) as failed:
        parse_scenario(text, "s.yaml")
    assert failed.value.problems == problems


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as failed:
        load_scenario(tmp_path / "nope.yaml")
    assert failed.value.problems == [
        f"{tmp_path / 'nope.yaml'}: cannot read the scenario: No such file or directory "
        "(shipped scenarios: busy-shop, flapping)"
    ]


@pytest.mark.parametrize("name", ["flapping", "busy-shop"])
def test_shipped_scenarios_load_by_name(name: str) -> None:
    assert load_scenario(Path(name)).name == name
