from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.config import ConfigError, document_from_mapping
from worker.events import STREAMED_EVENTS
from worker.ingest.backoff import ReconnectPolicy
from worker.ingest.config import IngestConfig, ingest_config

ENV = {"SHOP_TOKEN": "tok-shop", "SUPPORT_TOKEN": "tok-support"}
VALID = ", ".join(STREAMED_EVENTS)


def load(data: dict[str, Any], environ: dict[str, str] | None = None) -> IngestConfig:
    document = document_from_mapping(
        data, Path("/etc/zapflow.yaml"), ENV if environ is None else environ
    )
    return ingest_config(document)


def minimal(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"instances": [{"name": "shop-bot", "token": "${env:SHOP_TOKEN}"}]}
    data.update(extra)
    return data


def error_of(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(data, environ)
    return str(info.value)


def test_defaults() -> None:
    config = load(minimal())
    assert config.gateway_url == "ws://localhost:8084/ws/events"
    assert config.gateway_host == "localhost:8084"
    assert config.instances[0].name == "shop-bot"
    assert config.instances[0].token.reveal() == "tok-shop"
    assert config.instances[0].events == STREAMED_EVENTS
    assert config.kafka.topic_prefix == "codechat."
    assert config.kafka.bootstrap_servers == "localhost:9092"
    assert config.kafka.producer.compression == "zstd"
    assert config.reconnect == ReconnectPolicy(5.0, 60.0, 2.0, 30.0)
    assert len(config.subscriptions()) == 14
    assert config.spool.path == Path("/etc/.zapflow/ingest-spool.sqlite")
    assert config.topics()[-1] == "codechat.invalid"
    assert len(config.topics()) == 15


def test_full_example() -> None:
    config = load(
        {
            "gateway": {"url": "wss://gw.example.com:8443/ws/events"},
            "instances": [
                {"name": "shop-bot", "token": "${env:SHOP_TOKEN}"},
                {"name": "support", "token": "${env:SUPPORT_TOKEN}", "events": ["call.upsert"]},
            ],
            "kafka": {
                "bootstrap_servers": "k1:9092,k2:9092",
                "topic_prefix": "wa.",
                "partitions": 12,
                "replication_factor": 3,
                "producer": {"linger_ms": 20, "max_batch_size": "512KiB", "compression": "none"},
            },
            "ingest": {
                "events": ["messages.upsert", "connection.update"],
                "reconnect": {"first_delay": "1s", "max_delay": "30s", "stable_after": "1m"},
                "ping_interval": "10s",
                "resubscribe_after_silence": "15m",
                "spool": {"path": "/var/lib/zapflow/spool.db", "max_bytes": "2GiB"},
            },
        }
    )
    assert config.gateway_host == "gw.example.com:8443"
    assert [(i.name, e) for i, e in config.subscriptions()] == [
        ("shop-bot", "messages.upsert"),
        ("shop-bot", "connection.update"),
        ("support", "call.upsert"),
    ]
    assert config.kafka.partitions == 12
    assert config.kafka.producer.max_batch_size == 512 * 1024
    assert config.reconnect == ReconnectPolicy(1.0, 30.0, 2.0, 60.0)
    assert config.resubscribe_after_silence == 900.0
    assert config.spool.max_bytes == 2 * 1024**3
    assert config.topics() == [
        "wa.call.upsert",
        "wa.connection.update",
        "wa.messages.upsert",
        "wa.invalid",
    ]


def test_environment_overrides_the_file() -> None:
    config = load(
        minimal(kafka={"partitions": 8}),
        {**ENV, "ZAPFLOW_KAFKA__PARTITIONS": "2", "ZAPFLOW_GATEWAY__URL": "ws://gw:1/ws/events"},
    )
    assert config.kafka.partitions == 2
    assert config.gateway_url == "ws://gw:1/ws/events"


def test_unknown_event_lists_the_valid_ones() -> None:
    data = minimal()
    data["instances"][0]["events"] = ["messages.upsert", "messages.upsrt"]
    assert error_of(data) == (
        "/etc/zapflow.yaml: instances[0].events[1]: unknown event 'messages.upsrt' "
        f"(did you mean 'messages.upsert'?); valid events: {VALID}"
    )


def test_messaging_history_set_is_refused() -> None:
    assert error_of(minimal(ingest={"events": ["messaging-history.set"]})) == (
        "/etc/zapflow.yaml: ingest.events[0]: 'messaging-history.set' is never sent over the "
        f"gateway's socket; remove it; valid events: {VALID}"
    )


def test_events_accepted_but_never_streamed_are_refused() -> None:
    assert error_of(minimal(ingest={"events": ["chats.delete"]})) == (
        "/etc/zapflow.yaml: ingest.events[0]: 'chats.delete' is accepted by the gateway but "
        f"never sent over its socket; remove it; valid events: {VALID}"
    )


def test_duplicate_event() -> None:
    assert error_of(minimal(ingest={"events": ["call.upsert", "call.upsert"]})) == (
        "/etc/zapflow.yaml: ingest.events: event 'call.upsert' is listed twice; "
        "list each event once"
    )


def test_no_instances() -> None:
    assert error_of({}) == (
        "/etc/zapflow.yaml: instances: no instances configured; add e.g. "
        "'- {name: shop-bot, token: ${env:SHOP_BOT_TOKEN}}' under instances:, "
        "or set gateway.discover: true with gateway.apikey"
    )


def test_duplicate_instance() -> None:
    data = {"instances": [{"name": "a", "token": "${env:SHOP_TOKEN}"}] * 2}
    assert error_of(data) == (
        "/etc/zapflow.yaml: instances[1].name: instance 'a' is listed twice; list it once"
    )


def test_token_must_be_a_reference() -> None:
    data = {"instances": [{"name": "a", "token": "eyJhbGc.secret"}]}
    message = error_of(data)
    assert message == (
        "/etc/zapflow.yaml: instances[0].token: secrets are not written in the file (found a "
        "literal value); write ${env:NAME} or ${file:PATH} and put the secret there"
    )


def test_token_variable_not_set() -> None:
    assert error_of(minimal(), {}) == (
        "/etc/zapflow.yaml: instances[0].token: environment variable SHOP_TOKEN is not set; "
        "export SHOP_TOKEN=... before starting zapflow"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://gw:8084/ws/events",
            "expected a ws:// or wss:// URL, found 'http://gw:8084/ws/events'; "
            "write e.g. ws://localhost:8084/ws/events",
        ),
        (
            "ws://gw:8084/ws/events/",
            "the gateway only serves /ws/events, found path '/ws/events/'; "
            "write e.g. ws://gw:8084/ws/events",
        ),
        (
            "ws://gw:8084/ws/events?event=x",
            "the URL must not carry a query; zapflow adds ?event=…&token=… itself; "
            "write e.g. ws://localhost:8084/ws/events",
        ),
    ],
)
def test_gateway_url(url: str, message: str) -> None:
    assert error_of(minimal(gateway={"url": url})) == f"/etc/zapflow.yaml: gateway.url: {message}"


def test_unknown_key_in_instances() -> None:
    data = {"instances": [{"name": "a", "token": "${env:SHOP_TOKEN}", "evnts": []}]}
    assert error_of(data) == (
        "/etc/zapflow.yaml: instances[0].evnts: unknown key (did you mean 'events'?); "
        "known keys here: name, token, events"
    )


def test_max_delay_shorter_than_first_delay() -> None:
    data = minimal(ingest={"reconnect": {"first_delay": "10s", "max_delay": "5s"}})
    assert error_of(data) == (
        "/etc/zapflow.yaml: ingest.reconnect.max_delay: 5s is shorter than first_delay 10s; "
        "make max_delay at least first_delay"
    )


def test_unknown_compression() -> None:
    data = minimal(kafka={"producer": {"compression": "gzipp"}})
    assert error_of(data) == (
        "/etc/zapflow.yaml: kafka.producer.compression: unknown value 'gzipp' (did you mean "
        "'gzip'?); use one of: gzip, lz4, zstd, snappy, none"
    )


def test_partitions_must_be_positive() -> None:
    assert error_of(minimal(kafka={"partitions": 0})) == (
        "/etc/zapflow.yaml: kafka.partitions: must be at least 1, found 0; write e.g. 8"
    )


def test_sasl_needs_a_mechanism() -> None:
    assert error_of(minimal(kafka={"security": {"protocol": "SASL_SSL"}})) == (
        "/etc/zapflow.yaml: kafka.security.sasl_mechanism: missing for protocol SASL_SSL; "
        "use one of: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
    )


def test_sasl_password_is_a_secret() -> None:
    config = load(
        minimal(
            kafka={
                "security": {
                    "protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "PLAIN",
                    "sasl_username": "zapflow",
                    "sasl_password": "${env:KAFKA_PASSWORD}",
                }
            }
        ),
        {**ENV, "KAFKA_PASSWORD": "pw"},
    )
    assert config.kafka.security.sasl_password is not None
    assert config.kafka.security.sasl_password.reveal() == "pw"
    assert "pw" not in repr(config)


def test_frame_limit_is_bounded_by_kafka_message_size() -> None:
    assert error_of(minimal(ingest={"max_frame_size": "1MiB"})) == (
        "/etc/zapflow.yaml: ingest.max_frame_size: must be at most 700KiB, found 1048576 "
        "bytes; Kafka's default message limit is 1MiB and invalid frames are kept in base64"
    )


def test_the_example_file_at_the_top_of_the_repository_loads() -> None:
    from worker.config import load_document

    example = Path(__file__).resolve().parents[3] / "zapflow.yaml"
    config = ingest_config(load_document(example, {"SHOP_BOT_TOKEN": "t"}))
    assert [i.name for i in config.instances] == ["shop-bot"]
    assert config.kafka.producer.compression == "zstd"
    assert config.resubscribe_after_silence == 600.0


def test_discovery_needs_the_apikey() -> None:
    assert error_of({"gateway": {"discover": True}}) == (
        "/etc/zapflow.yaml: gateway.apikey: missing; discovering instances needs the "
        "gateway's global apikey; add apikey: ${env:CODECHAT_APIKEY} under gateway:"
    )


def test_discovery_allows_an_empty_instance_list() -> None:
    config = load(
        {
            "gateway": {"discover": True, "apikey": "${env:APIKEY}"},
            "ingest": {"events": ["call.upsert"]},
        },
        {"APIKEY": "k"},
    )
    assert config.instances == ()
    assert config.discover
    assert config.apikey is not None
    assert config.default_events == ("call.upsert",)
