from __future__ import annotations

import argparse

import pytest

from worker.cli import build_parser
from worker.simulator.cli import _mix, _rate


@pytest.mark.parametrize(("text", "rate"), [("0", 0.0), ("2000", 2000.0), ("max", None)])
def test_rate_is_a_number_or_max(text: str, rate: float | None) -> None:
    assert _rate(text) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [("-1", "must be 0 or more events/s, got -1"), ("fast", "not a number or 'max': 'fast'")],
)
def test_bad_rates_say_why(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as bad:
        _rate(text)
    assert str(bad.value) == message


def test_mix_parses_weights_and_defaults_to_one() -> None:
    assert _mix("messages.upsert=60, messages.update=20,call.upsert") == {
        "messages.upsert": 60.0,
        "messages.update": 20.0,
        "call.upsert": 1.0,
    }


def test_bad_mix_weight_says_which() -> None:
    with pytest.raises(argparse.ArgumentTypeError) as bad:
        _mix("messages.upsert=lots")
    assert str(bad.value) == "weight of 'messages.upsert' is not a number: 'lots'"


def test_simulate_defaults_match_upstream() -> None:
    args = build_parser().parse_args(["simulate"])
    assert (args.port, args.jwt_expires_in, args.participants, args.rate) == (8084, "0", "v7", 0.0)
