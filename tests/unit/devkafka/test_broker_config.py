from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from worker.devkafka import broker
from worker.devkafka.broker import new_cluster_id, server_properties


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_server_properties_describe_one_combined_node_on_loopback() -> None:
    props = _props(server_properties(Path("/data/k"), 9092, 9093))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert props["log.dirs"] == "/data/k/data"


def test_server_properties_suit_a_single_node() -> None:
    props = _props(server_properties(Path("/d"), 1, 2))
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert int(props["offsets.topic.num.partitions"]) <= 8


def test_cluster_ids_have_kafkas_format_and_differ() -> None:
    first, second = new_cluster_id(), new_cluster_id()
    assert first != second
    assert len(first) == 22
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 in the first byte encodes as "-": the storage tool would read such an id as an option.
    ids = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=7)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(ids))
    cluster_id = new_cluster_id()
    assert not cluster_id.startswith("-")
    assert base64.urlsafe_b64decode(cluster_id + "==") == uuid.UUID(int=7).bytes


def test_with_users_the_client_port_speaks_sasl_plain_and_knows_exactly_them() -> None:
    props = _props(server_properties(Path("/d"), 9092, 9093, {"alice": "s3cret"}))
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092"
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    jaas = props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert 'user_alice="s3cret"' in jaas
    assert jaas.count("user_") == 2  # alice and the broker's own user
