"""``zapflow actions``: configuration errors are one line, with no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli import main


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "actions:\n  concurrency: 0\n",
            "actions.concurrency: expected a positive integer, found 0",
        ),
        (
            "actions:\n  gateway: {auth: token}\n",
            "actions.gateway.auth: expected 'bearer' or 'apikey', found 'token'",
        ),
        ("- a list\n", "expected a mapping at the top level"),
        (
            "kafka:\n  security: {protocol: SASL_SSL}\n",
            "kafka.security: zapflow actions alone connects without credentials; run the "
            "executor as `zapflow run --only actions`, which applies kafka.security",
        ),
    ],
)
def test_bad_config_is_reported_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text(text)
    assert main(["actions", "--config", str(config)]) == 1
    assert capsys.readouterr().err == f"zapflow: error: {config}: {message}\n"


def test_missing_config_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "nope.yaml"
    assert main(["actions", "--config", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"zapflow: error: {config}: cannot read the config file: No such file or directory\n"
    )
