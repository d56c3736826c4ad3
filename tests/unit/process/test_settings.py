from __future__ import annotations

from pathlib import Path

import pytest

from worker.process.settings import ProcessSettings, SettingsError, load_settings


def test_defaults_without_a_config_file() -> None:
    assert load_settings(None, environ={}) == ProcessSettings()


def test_sections_are_read_and_other_keys_ignored(tmp_path: Path) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text(
        "kafka: {bootstrap_servers: 'h:1', partitions: 3, producer: {linger_ms: 5}}\n"
        "process: {app_id: p, store: 'memory://', dedupe_ttl_s: 60, data_dir: d,\n"
        "          faust: {broker_session_timeout: 10}}\n"
        "ingest: {whatever: 1}\n"
    )
    settings = load_settings(config, environ={})
    assert settings.bootstrap_servers == "h:1"
    assert settings.partitions == 3
    assert settings.app_id == "p"
    assert settings.dedupe_ttl_s == 60.0
    assert settings.data_dir == Path("d")
    assert settings.faust == {"broker_session_timeout": 10}


def test_bootstrap_servers_from_the_environment_win(tmp_path: Path) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text("kafka: {bootstrap_servers: 'h:1'}\n")
    assert (
        load_settings(config, environ={"KAFKA_BOOTSTRAP_SERVERS": "e:2"}).bootstrap_servers == "e:2"
    )


def test_durations_and_overrides_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text("process: {dedupe_ttl_s: 10m, tick_interval_s: 500ms}\n")
    settings = load_settings(config, environ={"ZAPFLOW_PROCESS__APP_ID": "p2"})
    assert (settings.dedupe_ttl_s, settings.tick_interval_s) == (600.0, 0.5)
    assert settings.app_id == "p2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kafka: {partitions: eight}\n",
            "{path}: kafka.partitions: expected a whole number, found 'eight'; write e.g. 8",
        ),
        (
            "process: {dedupe_ttl_s: true}\n",
            "{path}: process.dedupe_ttl_s: expected a duration, found 'true'; "
            "write e.g. 5s, 500ms, 2m or a number of seconds",
        ),
        (
            "process: [1]\n",
            "{path}: process: expected a mapping, found a list; write it as 'key: value' lines",
        ),
        (
            "process: {tick_intervall_s: 1}\n",
            "{path}: process.tick_intervall_s: unknown key (did you mean 'tick_interval_s'?); "
            "known keys here: app_id, store, data_dir, dedupe_ttl_s, reload_interval_s, "
            "tick_interval_s, http_port, faust",
        ),
        (
            "process: {store: 'redis://'}\n",
            "{path}: process.store: unknown value 'redis://'; use one of: rocksdb://, memory://",
        ),
    ],
)
def test_wrong_values_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError) as raised:
        load_settings(config, environ={})
    assert str(raised.value) == message.format(path=config)


def test_missing_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path / "nope.yaml", environ={})
    assert str(raised.value) == (
        f"{tmp_path}/nope.yaml: file not found; pass an existing file with --config"
    )


def test_kafka_security_is_refused_with_the_command_that_applies_it(tmp_path: Path) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text("kafka: {security: {protocol: SASL_SSL, sasl_mechanism: PLAIN}}\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(config, environ={}, alone=True)
    message = str(refused.value)
    assert "kafka.security" in message
    assert "zapflow process alone connects without credentials" in message
    assert "zapflow run --only process" in message
    # Under zapflow run the same file is fine: run applies the security settings.
    assert load_settings(config, environ={}) == ProcessSettings()
    config.write_text("kafka: {security: {protocol: PLAINTEXT}}\n")
    assert load_settings(config, environ={}, alone=True) == ProcessSettings()
