"""Fixtures shared by every test: the Kafka broker the suite runs against.

The integration tests need a real Apache Kafka broker. The suite starts one itself (the
embedded single-node broker of ``worker.devkafka``), once per run and only when a test asks
for it; with ``KAFKA_BOOTSTRAP_SERVERS`` set it uses that cluster instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from worker.devkafka.broker import KafkaBroker
from worker.devkafka.jars import KAFKA_VERSION, DevKafkaError

_broker_note: list[str] = []


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the broker this test run uses."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        _broker_note.append(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={external}")
        yield external
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except DevKafkaError as exc:
        pytest.fail(
            f"the test suite could not start its Kafka broker: {exc}\n"
            "Fix: install Java 17+ and Maven (the jars come from Maven Central), "
            "or set KAFKA_BOOTSTRAP_SERVERS to a running cluster.",
            pytrace=False,
        )
    _broker_note.append(
        f"Kafka: the suite started Apache Kafka {KAFKA_VERSION} at {broker.bootstrap_servers} "
        f"(pid {broker.pid}) and stopped it at the end"
    )
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test uses, such as ``t-3f9a2c1b.``."""
    return f"t-{uuid.uuid4().hex[:8]}."


MakeTopic = Callable[..., Awaitable[str]]


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> MakeTopic:
    """``await make_topic("hint", partitions=1)`` creates a uniquely named topic and returns it."""

    async def create(name_hint: str = "t", partitions: int = 1) -> str:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        name = f"{name_hint}-{uuid.uuid4().hex[:10]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()
        return name

    return create


@pytest.fixture
def private_broker_factory() -> Iterator[Callable[[Path], KafkaBroker]]:
    """A broker of the test's own, for tests that stop and restart Kafka.

    Start and stop it with ``await asyncio.to_thread(broker.start)`` inside async tests so
    the event loop keeps running meanwhile. Every broker made here is stopped at teardown.
    """
    brokers: list[KafkaBroker] = []

    def make(data_dir: Path) -> KafkaBroker:
        broker = KafkaBroker(data_dir)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for note in _broker_note:
        terminalreporter.write_line(note)
