from __future__ import annotations

from pathlib import Path

import pytest

from worker.config import (
    ConfigError,
    Secret,
    document_from_mapping,
    env_overrides,
    load_document,
    parse_duration,
    parse_size,
)


def section(data: dict, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return document_from_mapping(data, Path("/etc/zapflow.yaml"), environ or {}).root()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), (2.5, 2.5), ("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0)],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "-1s", "", "s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"), [(1024, 1024), ("64KiB", 65536), ("1GiB", 1024**3), ("10MB", 10**7)]
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_env_overrides_set_nested_keys_and_parse_yaml_scalars() -> None:
    data, origins = env_overrides(
        {"kafka": {"partitions": 8}},
        {
            "ZAPFLOW_KAFKA__PARTITIONS": "3",
            "ZAPFLOW_KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "ZAPFLOW_INGEST__RECONNECT__FIRST_DELAY": "1s",
            "ZAPFLOW_KAFKA__CREATE_TOPICS": "false",
            "OTHER": "x",
        },
    )
    assert data == {
        "kafka": {"partitions": 3, "bootstrap_servers": "k1:9092,k2:9092", "create_topics": False},
        "ingest": {"reconnect": {"first_delay": "1s"}},
    }
    assert origins["kafka.partitions"] == "environment ZAPFLOW_KAFKA__PARTITIONS"


def test_errors_about_overridden_values_name_the_variable() -> None:
    root = section({"kafka": {"partitions": 8}}, {"ZAPFLOW_KAFKA__PARTITIONS": "eight"})
    with pytest.raises(ConfigError) as info:
        root.section("kafka").integer("partitions", 8, minimum=1, example=8)
    assert str(info.value) == (
        "environment ZAPFLOW_KAFKA__PARTITIONS: kafka.partitions: expected a whole number, "
        "found 'eight'; write e.g. 8"
    )


def test_unknown_keys_are_refused_with_a_suggestion() -> None:
    root = section({"kafka": {"partitons": 3}})
    with pytest.raises(ConfigError) as info:
        root.section("kafka").check_keys(("bootstrap_servers", "partitions"))
    assert str(info.value) == (
        "/etc/zapflow.yaml: kafka.partitons: unknown key (did you mean 'partitions'?); "
        "known keys here: bootstrap_servers, partitions"
    )


def test_env_secret_reference_resolves_and_never_prints() -> None:
    root = section({"token": "${env:SHOP_TOKEN}"}, {"SHOP_TOKEN": "eyJ.secret.value"})
    secret = root.secret("token")
    assert secret == Secret("eyJ.secret.value", "${env:SHOP_TOKEN}")
    assert secret is not None
    assert secret.reveal() == "eyJ.secret.value"
    assert "eyJ" not in repr(secret)
    assert "eyJ" not in str(secret)
    assert "eyJ" not in f"{secret!r} {secret}"


def test_missing_environment_variable_is_named() -> None:
    root = section({"instances": [{"token": "${env:SHOP_TOKEN}"}]})
    with pytest.raises(ConfigError) as info:
        root.sections("instances")[0].secret("token")
    assert str(info.value) == (
        "/etc/zapflow.yaml: instances[0].token: environment variable SHOP_TOKEN is not set; "
        "export SHOP_TOKEN=... before starting zapflow"
    )


def test_literal_secrets_are_refused() -> None:
    root = section({"token": "eyJhbGciOiJIUzI1NiJ9.x.y"})
    with pytest.raises(ConfigError) as info:
        root.secret("token")
    assert str(info.value) == (
        "/etc/zapflow.yaml: token: secrets are not written in the file (found a literal "
        "value); write ${env:NAME} or ${file:PATH} and put the secret there"
    )
    assert "eyJ" not in str(info.value)


def test_file_secret_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "shop").write_text("tok-123\n")
    config = tmp_path / "zapflow.yaml"
    config.write_text("token: ${file:secrets/shop}\n")
    secret = load_document(config, {}).root().secret("token")
    assert secret is not None
    assert secret.reveal() == "tok-123"


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text("token: ${file:/nonexistent/tok}\n")
    with pytest.raises(ConfigError) as info:
        load_document(config, {}).root().secret("token")
    assert str(info.value) == (
        f"{config}: token: cannot read secret file /nonexistent/tok (No such file or "
        "directory); create the file or fix the path"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_document(tmp_path / "nope.yaml", {})
    assert (
        str(info.value)
        == f"{tmp_path}/nope.yaml: file not found; pass an existing file with --config"
    )


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text("kafka:\n  partitions: [1\n")
    with pytest.raises(ConfigError) as info:
        load_document(config, {})
    assert str(info.value).startswith(f"{config}:3:1: not valid YAML: ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "zapflow.yaml"
    config.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        load_document(config, {})
    assert str(info.value) == (
        f"{config}: expected a mapping of settings at the top, found a list; "
        "start the file with keys such as 'gateway:' and 'kafka:'"
    )


@pytest.mark.parametrize(
    ("method", "value", "message"),
    [
        ("boolean", "yes please",
         "x: expected true or false, found 'yes please'; write true or false"),
        ("duration", "soon",
         "x: expected a duration, found 'soon'; write e.g. 5s, 500ms, 2m or a number of seconds"),
        ("size", "big",
         "x: expected a size, found 'big'; write e.g. 512KiB, 1GiB or a number of bytes"),
        ("string_list", 3, "x: expected a list of text items, found 3; write [a, b]"),
        ("string", [1], "x: expected text, found a list; write it as text"),
    ],
)  # fmt: skip
def test_type_errors(method: str, value: object, message: str) -> None:
    root = section({"x": value})
    with pytest.raises(ConfigError) as info:
        getattr(root, method)("x")
    assert str(info.value) == f"/etc/zapflow.yaml: {message}"


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError) as info:
        section({}).string("name")
    assert str(info.value) == "/etc/zapflow.yaml: name: missing; add 'name:' to the section"
