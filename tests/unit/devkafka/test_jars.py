from __future__ import annotations

import pytest

from worker.devkafka import jars
from worker.devkafka.jars import DevKafkaError, parse_java_version


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21.0.2-ea" 2024-01-16', 21),
        ("no version here", 0),
    ],
)
def test_parse_java_version_reads_the_major_version(output: str, major: int) -> None:
    assert parse_java_version(output) == major


def test_missing_java_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DevKafkaError) as err:
        jars.java_executable()
    assert str(err.value) == (
        "Java 17 or newer is needed to run the embedded Kafka broker: install a JDK 17+ "
        "(e.g. apt-get install openjdk-17-jdk-headless) or set KAFKA_BOOTSTRAP_SERVERS "
        "to use an existing Kafka cluster"
    )
    assert "\n" not in str(err.value)


def test_old_java_is_refused_with_its_version(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(DevKafkaError) as err:
        jars.java_executable()
    assert str(err.value) == (
        f"Java 8 found at {fake}, but the embedded Kafka broker needs Java 17 or newer: "
        "install a JDK 17+ or point JAVA_HOME at one"
    )


def test_missing_maven_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ZAPFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DevKafkaError) as err:
        jars.fetch_jars("0.0.0-test")
    assert str(err.value) == (
        "Maven is needed once to fetch the Kafka broker jars from Maven Central: install it "
        "(e.g. apt-get install maven) or set KAFKA_BOOTSTRAP_SERVERS to use an existing cluster"
    )


def test_cached_jars_are_not_fetched_again(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ZAPFLOW_CACHE_DIR", str(tmp_path))
    libs = jars.libs_dir("9.9.9")
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("9.9.9\n")
    # No Maven and no Java on PATH: a cache hit must not need either.
    monkeypatch.setenv("PATH", "/nonexistent")
    assert jars.fetch_jars("9.9.9") == libs


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("ZAPFLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jars.cache_root() == tmp_path / "zapflow"
    monkeypatch.setenv("ZAPFLOW_CACHE_DIR", str(tmp_path / "x"))
    assert jars.libs_dir("4.1.2") == tmp_path / "x" / "kafka-4.1.2" / "libs"
