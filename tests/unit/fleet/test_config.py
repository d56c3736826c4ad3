from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.config import ConfigError, document_from_mapping
from worker.fleet.config import OwnershipConfig
from worker.ingest.config import ingest_config

ENV = {"SHOP_TOKEN": "tok-shop"}


def ownership(ingest: dict[str, Any] | None = None, **env: str) -> OwnershipConfig:
    data: dict[str, Any] = {"instances": [{"name": "shop-bot", "token": "${env:SHOP_TOKEN}"}]}
    if ingest is not None:
        data["ingest"] = ingest
    document = document_from_mapping(data, Path("/etc/zapflow.yaml"), {**ENV, **env})
    return ingest_config(document).ownership


def error_of(ingest: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        ownership(ingest)
    return str(info.value)


def test_off_unless_configured() -> None:
    config = ownership()
    assert config == OwnershipConfig()
    assert not config.enabled


def test_short_form_turns_it_on_with_the_defaults() -> None:
    config = ownership({"ownership": "kafka"})
    assert config.enabled
    assert (config.partitions, config.grace, config.session_timeout) == (64, 10.0, 10.0)
    assert config.topic_name("codechat.") == "codechat.subscriptions"
    assert config.group_id("codechat.") == "codechat.ingest-owners"


def test_full_form() -> None:
    config = ownership(
        {
            "ownership": {
                "mode": "kafka",
                "partitions": 128,
                "topic": "ops.subs",
                "group": "ops.owners",
                "grace": "5s",
                "session_timeout": "8s",
                "heartbeat_interval": "500ms",
                "member_name": "ingest-a",
            }
        }
    )
    assert config == OwnershipConfig(
        "kafka", 128, "ops.subs", "ops.owners", 5.0, 8.0, 0.5, "ingest-a"
    )
    assert config.member() == "ingest-a"


def test_environment_turns_it_on() -> None:
    assert ownership(ZAPFLOW_INGEST__OWNERSHIP__MODE="kafka").enabled


def test_member_name_defaults_to_host_and_pid() -> None:
    name = ownership({"ownership": "kafka"}).member()
    host, pid = name.rsplit(":", 1)
    assert host and pid.isdigit()


def test_unknown_mode() -> None:
    assert error_of({"ownership": "zookeeper"}) == (
        "/etc/zapflow.yaml: ingest.ownership: unknown value 'zookeeper'; use one of: none, kafka"
    )


def test_unknown_key() -> None:
    assert error_of({"ownership": {"mode": "kafka", "graze": "5s"}}) == (
        "/etc/zapflow.yaml: ingest.ownership.graze: unknown key (did you mean 'grace'?); "
        "known keys here: mode, partitions, topic, group, grace, session_timeout, "
        "heartbeat_interval, member_name"
    )


def test_session_timeout_below_the_broker_minimum() -> None:
    assert error_of({"ownership": {"mode": "kafka", "session_timeout": "2s"}}) == (
        "/etc/zapflow.yaml: ingest.ownership.session_timeout: must be at least 6s, found '2s'; "
        "write a longer one"
    )


def test_heartbeat_must_fit_three_times_in_the_session() -> None:
    assert error_of({"ownership": {"mode": "kafka", "heartbeat_interval": "4s"}}) == (
        "/etc/zapflow.yaml: ingest.ownership.heartbeat_interval: 4s is more than a third of "
        "session_timeout 10s; use e.g. heartbeat_interval: 1s with session_timeout: 10s"
    )


def test_grace_must_be_shorter_than_the_silence_resubscribe() -> None:
    assert error_of(
        {"resubscribe_after_silence": "10s", "ownership": {"mode": "kafka", "grace": "10s"}}
    ) == (
        "/etc/zapflow.yaml: ingest.ownership.grace: 10s is not shorter than "
        "ingest.resubscribe_after_silence 10s, so a released socket could be renewed and take "
        "the subscription back from its new owner; make grace shorter than "
        "resubscribe_after_silence"
    )
