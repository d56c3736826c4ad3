"""Properties (hypothesis): throttle and window against reference models; odd payloads."""

from __future__ import annotations

from collections import deque
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.unit.rules.rules_helpers import T0, Runner, conn, envelope
from worker.rules import RuleBundle, evaluate, load_bundle
from worker.rules.normalise import NAMESPACES, normalise, sample_envelope
from worker.rules.schema import view_schema

SHIPPED_BUNDLE = load_bundle(Path(__file__).parents[3] / "rules")

gaps = st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=40)


def times_from(increments: list[int]) -> list[int]:
    out, now = [], 0
    for step in increments:
        now += step
        out.append(now)
    return out


def reference_throttle(
    times: list[int], period: int, factor: float | None, maximum: int
) -> list[int]:
    fired: list[int] = []
    until: float | None = None
    last_period = 0.0
    for t in times:
        if until is not None and t < until:
            continue
        current = float(period)
        if factor is not None and until is not None and t < until + last_period:
            current = min(last_period * factor, maximum)
        fired.append(t)
        until, last_period = t + current, current
    return fired


def reference_window(times: list[int], count: int, within: int) -> list[int]:
    fired: list[int] = []
    window: deque[int] = deque()
    for t in times:
        while window and window[0] <= t - within:
            window.popleft()
        window.append(t)
        if len(window) >= count:
            fired.append(t)
            window.clear()
    return fired


def bundle(folder: Path, body: str) -> RuleBundle:
    folder.mkdir()
    (folder / "r.yaml").write_text(
        "rules:\n  - id: r\n    on: connection.update\n"
        + body
        + "    actions: [{log: {message: x}}]\n",
        encoding="utf-8",
    )
    return load_bundle(folder)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleBundle]:
    root = tmp_path_factory.mktemp("props")
    return {
        "throttle": bundle(root / "t", "    throttle: {once_within: 5m}\n"),
        "backoff": bundle(
            root / "b", "    throttle: {once_within: 2m, backoff: {factor: 2, max: 15m}}\n"
        ),
        "window": bundle(root / "w", "    window: {count: 3, within: 10m}\n"),
        "window1": bundle(root / "w1", "    window: {count: 1, within: 1m}\n"),
    }


def fired_at(b: RuleBundle, times: list[int]) -> list[int]:
    run = Runner(b)
    return [t for t in times if run.send("connection.update", conn("close"), at=t).actions]


@settings(max_examples=150, deadline=None)
@given(increments=gaps)
def test_throttle_matches_reference(bundles: dict[str, RuleBundle], increments: list[int]) -> None:
    times = times_from(increments)
    assert fired_at(bundles["throttle"], times) == reference_throttle(times, 300, None, 300)


@settings(max_examples=150, deadline=None)
@given(increments=gaps)
def test_throttle_with_backoff_matches_reference(
    bundles: dict[str, RuleBundle], increments: list[int]
) -> None:
    times = times_from(increments)
    assert fired_at(bundles["backoff"], times) == reference_throttle(times, 120, 2.0, 900)


@settings(max_examples=150, deadline=None)
@given(increments=gaps)
def test_window_matches_reference(bundles: dict[str, RuleBundle], increments: list[int]) -> None:
    times = times_from(increments)
    assert fired_at(bundles["window"], times) == reference_window(times, 3, 600)
    assert fired_at(bundles["window1"], times) == times


@settings(max_examples=100, deadline=None)
@given(increments=gaps)
def test_throttle_never_fires_twice_within_its_period(
    bundles: dict[str, RuleBundle], increments: list[int]
) -> None:
    fired = fired_at(bundles["throttle"], times_from(increments))
    assert all(b - a >= 300 for a, b in pairwise(fired))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
payload_keys = st.sampled_from(
    [
        "keyId",
        "keyFromMe",
        "keyRemoteJid",
        "messageType",
        "content",
        "isGroup",
        "info",
        "state",
        "statusReason",
        "participants",
        "action",
        "id",
        "author",
        "presences",
        "remoteJid",
        "status",
    ]
)
payloads = st.dictionaries(payload_keys, json_values, max_size=8) | st.lists(
    st.dictionaries(payload_keys, json_values, max_size=5), max_size=2
)


@settings(max_examples=150, deadline=None)
@given(event=st.sampled_from(sorted(NAMESPACES)), data=payloads)
def test_any_payload_normalises_to_every_documented_field(event: str, data: object) -> None:
    view = normalise(envelope(event, data))
    namespace, fields = NAMESPACES[event]
    assert set(view[namespace]) == set(fields)


@settings(max_examples=100, deadline=None)
@given(event=st.sampled_from(sorted(NAMESPACES)), data=payloads)
def test_shipped_rules_never_raise_on_odd_payloads(event: str, data: object) -> None:
    ev = evaluate(SHIPPED_BUNDLE, {}, envelope(event, data), T0)
    for trace in ev.trace:
        assert trace.outcome in (
            "matched",
            "not_matched",
            "suppressed",
            "pending",
            "resolved",
            "error",
        )


VALIDATORS = {event: Draft202012Validator(view_schema(event)) for event in NAMESPACES}


@pytest.mark.parametrize("event", sorted(NAMESPACES))
def test_sample_views_match_their_json_schema(event: str) -> None:
    Draft202012Validator.check_schema(view_schema(event))
    errors = list(VALIDATORS[event].iter_errors(normalise(sample_envelope(event))))
    assert errors == []


@settings(max_examples=150, deadline=None)
@given(event=st.sampled_from(sorted(NAMESPACES)), data=payloads)
def test_views_of_any_payload_match_their_json_schema(event: str, data: object) -> None:
    errors = list(VALIDATORS[event].iter_errors(normalise(envelope(event, data))))
    assert [e.message for e in errors] == []
