from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.unit.process.standin import StandInEngine, write_rules
from worker.process.reload import RulesWatcher, fingerprint, stale_rules

A = {"id": "a", "on": "messages.upsert"}
B = {"id": "b", "on": "connection.update"}


def touch_later(path: Path) -> None:
    """Move the mtime forward so a rewrite within the same clock tick is still seen."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))


def test_fingerprint_lists_top_level_rule_files_with_size_and_mtime(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.yaml").write_text("a: 1")
    (tmp_path / "x.yml").write_text("a: 1")
    (tmp_path / "y.yaml").write_text("b: 22")
    (tmp_path / "notes.txt").write_text("ignored")
    names = [(name, size) for name, size, _ in fingerprint(tmp_path)]
    assert names == [("x.yml", 4), ("y.yaml", 5)]
    assert fingerprint(tmp_path / "missing") == ()


def test_stale_rules_are_removed_or_changed_ones() -> None:
    old = {"a": "1", "b": "2", "c": "3"}
    assert stale_rules(old, {"a": "1", "b": "9", "d": "4"}) == {"b", "c"}


def test_unchanged_directory_is_not_reloaded(tmp_path: Path) -> None:
    write_rules(tmp_path, A)
    watcher = RulesWatcher.start(tmp_path, StandInEngine())
    assert watcher.check().status == "unchanged"


def test_changed_rules_are_swapped_and_changed_rule_state_scheduled_to_go(tmp_path: Path) -> None:
    write_rules(tmp_path, A, B)
    watcher = RulesWatcher.start(tmp_path, StandInEngine())
    old_version = watcher.current.bundle.version
    write_rules(tmp_path, A, {**B, "throttle_s": 5})
    touch_later(tmp_path / "rules.yaml")
    outcome = watcher.check()
    assert (outcome.status, outcome.stale) == ("swapped", {"b"})
    assert watcher.current.bundle.version != old_version
    assert watcher.check().status == "unchanged"


def test_broken_bundle_keeps_the_old_one_and_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_rules(tmp_path, A)
    watcher = RulesWatcher.start(tmp_path, StandInEngine())
    bundle = watcher.current.bundle
    (tmp_path / "rules.yaml").write_text("{not json")
    touch_later(tmp_path / "rules.yaml")
    with caplog.at_level(logging.ERROR):
        outcome = watcher.check()
    assert outcome.status == "failed"
    assert outcome.errors == (f"{tmp_path}/rules.yaml:1:1: cannot load: JSONDecodeError",)
    assert watcher.current.bundle is bundle
    assert f"{tmp_path}/rules.yaml:1:1: cannot load" in caplog.text
    assert watcher.check().status == "unchanged"  # not retried until the files change
    write_rules(tmp_path, A, B)
    touch_later(tmp_path / "rules.yaml")
    assert watcher.check().status == "swapped"
    assert watcher.current.bundle.events == {"messages.upsert", "connection.update"}


def test_forced_reload_of_identical_rules_keeps_the_bundle(tmp_path: Path) -> None:
    write_rules(tmp_path, A)
    watcher = RulesWatcher.start(tmp_path, StandInEngine())
    bundle = watcher.current.bundle
    assert watcher.check(force=True).status == "same-version"
    assert watcher.current.bundle is bundle
