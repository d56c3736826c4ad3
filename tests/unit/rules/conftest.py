"""Fixtures for the rule engine's unit tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.rules import RuleBundle, load_bundle


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[[str], RuleBundle]:
    counter = {"n": 0}

    def make(text: str) -> RuleBundle:
        counter["n"] += 1
        folder = tmp_path / f"bundle{counter['n']}"
        folder.mkdir()
        (folder / "rules.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
        return load_bundle(folder)

    return make
