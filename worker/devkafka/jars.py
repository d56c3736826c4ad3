"""Fetch the Apache Kafka broker jars from Maven Central, once, into a cache directory.

Maven resolves ``pom.xml`` beside this file and copies the runtime classpath of
``kafka_2.13`` into ``<cache>/kafka-<version>/libs``. The directory is only used once a
marker file says the copy finished, so an interrupted fetch is simply redone.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.1.2"
MIN_JAVA = 17
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_COMPLETE = ".complete"


class DevKafkaError(Exception):
    """The embedded broker cannot be fetched or run; the message says what to do."""


def cache_root() -> Path:
    """Where fetched jars live.

    ``$ZAPFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/zapflow``, else ``~/.cache/zapflow``.
    """
    explicit = os.environ.get("ZAPFLOW_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zapflow"


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "libs"


def java_executable() -> str:
    """The ``java`` to run the broker with, checked to be version 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise DevKafkaError(
            "Java 17 or newer is needed to run the embedded Kafka broker: install a JDK 17+ "
            "(e.g. apt-get install openjdk-17-jdk-headless) or set KAFKA_BOOTSTRAP_SERVERS "
            "to use an existing Kafka cluster"
        )
    version = java_major_version(candidate)
    if version < MIN_JAVA:
        raise DevKafkaError(
            f"Java {version} found at {candidate}, but the embedded Kafka broker needs Java "
            f"{MIN_JAVA} or newer: install a JDK 17+ or point JAVA_HOME at one"
        )
    return candidate


def java_major_version(java: str) -> int:
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    return parse_java_version(proc.stderr + proc.stdout)


def parse_java_version(text: str) -> int:
    """Major version from ``java -version`` output (``"17.0.15"`` -> 17, ``"1.8.0_392"`` -> 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return 0
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def _maven_executable() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise DevKafkaError(
            "Maven is needed once to fetch the Kafka broker jars from Maven Central: install it "
            "(e.g. apt-get install maven) or set KAFKA_BOOTSTRAP_SERVERS to use an existing cluster"
        )
    return mvn


def fetch_jars(version: str = KAFKA_VERSION, *, quiet: bool = True) -> Path:
    """Return the directory of broker jars, downloading them first if they are not cached.

    Safe to call from several processes at once: a file lock serialises the download.
    """
    target = libs_dir(version)
    if (target / _COMPLETE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _COMPLETE).exists():
            return target
        mvn = _maven_executable()
        java_executable()
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target.parent))
        pom = resources.files("worker.devkafka").joinpath("pom.xml")
        with resources.as_file(pom) as pom_path:
            cmd = [
                mvn,
                "-B",
                *(["-q"] if quiet else []),
                "-f",
                str(pom_path),
                f"-Dkafka.version={version}",
                f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise DevKafkaError(
                f"Maven could not fetch Apache Kafka {version} from Maven Central "
                f"(exit {proc.returncode}); check network access to the Maven registry:\n{tail}"
            )
        (staging / _COMPLETE).write_text(version + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target


def default_bootstrap() -> str:
    """Where tools look for Kafka when told nothing.

    ``KAFKA_BOOTSTRAP_SERVERS``, else the broker of ``zapflow kafka start`` or ``zapflow dev``
    if one is running, else ``localhost:9092``.
    """
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if explicit:
        return explicit
    for name in ("dev", "kafka"):
        address = cache_root() / "run" / name / "bootstrap"
        pid_file = address.parent / "broker.pid"
        if address.exists() and pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 0)
            except (OSError, ValueError):
                continue
            return address.read_text().strip()
    return "localhost:9092"
