from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli import main


def run(*argv: str) -> int:
    return main(["process", *argv])


def test_missing_rules_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("--rules", str(tmp_path / "nope")) == 1
    assert (
        capsys.readouterr().err
        == f"zapflow: error: rules directory {tmp_path}/nope does not exist\n"
    )


def test_bad_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text("kafka: {partitions: many}\n")
    assert run("--config", str(config), "--rules", str(tmp_path)) == 1
    assert capsys.readouterr().err == (
        f"zapflow: error: {config}: kafka.partitions: expected a whole number, found 'many'; "
        "write e.g. 8\n"
    )


def test_broken_rules_stop_the_start_with_their_diagnostics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.yaml").write_text("rules:\n  - id: a\n    on: messages.upsert\n    actons: []\n")
    assert run("--rules", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"zapflow: error: rules in {tmp_path} do not load:\n")
    assert (
        f"{tmp_path}/r.yaml:4:5: rule \"a\": unknown key 'actons' (did you mean 'actions'?)" in err
    )


def test_rules_that_listen_to_nothing_do_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - id: a\n    on: messages.upsert\n    mode: disabled\n"
        "    actions: [{log: {message: x}}]\n"
    )
    assert run("--rules", str(tmp_path)) == 1
    assert capsys.readouterr().err == (
        f"zapflow: error: rules in {tmp_path} listen to no event (none, or all disabled)\n"
    )
